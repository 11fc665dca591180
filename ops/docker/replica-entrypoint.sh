#!/bin/bash
# Entrypoint of pg-replica1/pg-replica2 (official postgres image). On first start, while the data volume is
# empty, it clones the primary with pg_basebackup -R -C -S "$REPLICATION_SLOT" (standby.signal plus
# primary_conninfo/primary_slot_name in postgresql.auto.conf), then hands over to the image's own
# docker-entrypoint.sh, which sees an existing cluster, skips initdb and runs "$@" (postgres -c ...) as postgres.
# This mirrors clone_replica() in ops/stack/nodes.py, including dropping an inactive slot left by an earlier clone.
set -euo pipefail

: "${PRIMARY_HOST:?PRIMARY_HOST must be set}"
: "${REPLICATION_SLOT:?REPLICATION_SLOT must be set}"
: "${REPLICATION_PASSWORD:?REPLICATION_PASSWORD must be set}"
PRIMARY_PORT="${PRIMARY_PORT:-5432}"
REPLICATION_USER="${REPLICATION_USER:-replicator}"
PGDATA="${PGDATA:-/var/lib/postgresql/data}"

if [[ ! "$REPLICATION_SLOT" =~ ^[a-z0-9_]{1,63}$ ]]; then
    echo "replica-entrypoint: REPLICATION_SLOT '$REPLICATION_SLOT' is not a valid slot name ([a-z0-9_])" >&2
    exit 1
fi

if [ -s "$PGDATA/PG_VERSION" ]; then
    echo "replica-entrypoint: $PGDATA already holds a cluster; starting it"
elif [ -n "$(ls -A "$PGDATA" 2>/dev/null)" ]; then
    echo "replica-entrypoint: $PGDATA is neither empty nor a cluster; remove the volume to re-clone" >&2
    exit 1
else
    mkdir -p "$PGDATA"
    chown postgres:postgres "$PGDATA"
    chmod 700 "$PGDATA"
    export PGPASSWORD="$REPLICATION_PASSWORD"

    echo "replica-entrypoint: waiting for $PRIMARY_HOST:$PRIMARY_PORT"
    until pg_isready -q -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U "$REPLICATION_USER" -d postgres; do
        sleep 1
    done

    # A slot left behind by an earlier clone of this replica (volume removed, primary kept) makes -C fail.
    gosu postgres psql -X -q -v ON_ERROR_STOP=1 -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U "$REPLICATION_USER" \
        -d postgres -v slot="$REPLICATION_SLOT" <<'SQL'
SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = :'slot' AND NOT active;
SQL

    echo "replica-entrypoint: cloning $PRIMARY_HOST into $PGDATA with slot $REPLICATION_SLOT"
    gosu postgres pg_basebackup -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U "$REPLICATION_USER" -D "$PGDATA" \
        -R -C -S "$REPLICATION_SLOT" -X stream -c fast
fi

exec docker-entrypoint.sh "$@"
