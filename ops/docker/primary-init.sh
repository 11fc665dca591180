#!/bin/bash
# Runs once, from /docker-entrypoint-initdb.d of the official postgres image, when pg-primary's data volume
# is initialised, while a socket-only temporary server is up: plain psql over the local socket reaches it as
# $POSTGRES_USER. The entrypoint *sources* a non-executable .sh (set -Eeo pipefail in effect), so this file
# sets no shell options of its own: 'set -u' would leak into the rest of docker-entrypoint.sh.
#
# Creates the two login roles the compose stack needs and lets the replication role connect from the
# compose network. The gateway role is created here only so that it has a password: migration
# 0003_gateway_role.sql finds it and just applies its ALTER ROLE / GRANT statements.
: "${REPLICATION_PASSWORD:?REPLICATION_PASSWORD must be set for pg-primary}"
: "${GATEWAY_DB_PASSWORD:?GATEWAY_DB_PASSWORD must be set for pg-primary}"

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v repl_password="$REPLICATION_PASSWORD" -v gateway_password="$GATEWAY_DB_PASSWORD" <<'SQL'
-- Replicas clone with pg_basebackup -C -S <slot> and drop their stale slot over a normal connection:
-- the REPLICATION attribute allows both; no superuser needed.
CREATE ROLE replicator WITH LOGIN REPLICATION PASSWORD :'repl_password';
CREATE ROLE gateway WITH LOGIN PASSWORD :'gateway_password';
SQL

# The image's own line ('host all all all scram-sha-256') does not cover replication connections.
cat >>"$PGDATA/pg_hba.conf" <<'HBA'

# compose stack: streaming replicas (pg-replica1, pg-replica2) clone and stream as 'replicator'
host replication replicator all scram-sha-256
HBA
