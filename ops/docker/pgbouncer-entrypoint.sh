#!/bin/sh
# Entrypoint of the compose stack's pgbouncer service (edoburu/pgbouncer image, runs as a non-root user).
# pgbouncer.ini is mounted read-only; the auth file is written here from the environment so that no password
# lives in the repository. Plain-text entries let PgBouncer speak SCRAM to clients and to the servers.
set -eu

: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
: "${GATEWAY_DB_PASSWORD:?GATEWAY_DB_PASSWORD must be set}"

# userlist.txt quotes with double quotes; a double quote inside a value is written twice.
quote() { printf '"%s"' "$(printf '%s' "$1" | sed 's/"/""/g')"; }

umask 077
mkdir -p /tmp/pgbouncer
{
    printf '%s %s\n' "$(quote postgres)" "$(quote "$POSTGRES_PASSWORD")"
    printf '%s %s\n' "$(quote gateway)" "$(quote "$GATEWAY_DB_PASSWORD")"
} >/tmp/pgbouncer/userlist.txt

exec pgbouncer "${PGBOUNCER_INI:-/etc/civic/pgbouncer.ini}"
