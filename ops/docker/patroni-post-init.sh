#!/bin/sh
# Run by Patroni once, after initdb on the first leader; $1 is a connection string to it.
# The roles the gateway needs (and their passwords) come from the migrations and GATEWAY_DB_PASSWORD.
set -e
psql -X -q -v ON_ERROR_STOP=1 -d "$1" -c 'CREATE DATABASE civic'
psql -X -q -v ON_ERROR_STOP=1 -d "$1" \
  -c "DO \$\$ BEGIN CREATE ROLE gateway LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END \$\$" \
  -c "ALTER ROLE gateway PASSWORD '${GATEWAY_DB_PASSWORD:-civic}'"
