"""Upkeep of the persisted-query table: what it holds, and pruning documents registered long ago.

The gateway stops registering documents when the table reaches ``GATEWAY_APQ_MAX_TOTAL_BYTES`` (the requests
still run; only registration stops). Pruning old documents makes room again: a client whose document was
pruned is answered ``PersistedQueryNotFound`` once and re-registers it by sending the text, as the APQ protocol
does. The usage account is recomputed from the table in the same transaction as the delete, so it never
drifts (registrations racing on one hash can count a document twice until then).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, TextIO

import psycopg

_USAGE = "SELECT bytes, entries FROM public.persisted_query_usage"
_DELETE = "DELETE FROM public.persisted_query WHERE created_at < %s"
_RECOUNT = """
UPDATE public.persisted_query_usage u
   SET bytes = t.bytes, entries = t.entries
  FROM (SELECT coalesce(sum(bytes), 0) AS bytes, count(*) AS entries FROM public.persisted_query) t
"""
_CLIENTS = "SELECT count(DISTINCT client) FROM public.persisted_query"


def show(conn: psycopg.Connection[Any], *, out: TextIO) -> tuple[int, int]:
    """Print and return the bytes and documents the table holds."""
    row = conn.execute(_USAGE).fetchone()
    clients = conn.execute(_CLIENTS).fetchone()
    bytes_, entries = (int(row[0]), int(row[1])) if row else (0, 0)
    out.write(f"persisted queries: {entries} documents, {bytes_} bytes, {clients[0] if clients else 0} clients\n")
    return bytes_, entries


def prune(conn: psycopg.Connection[Any], *, before: dt.datetime, out: TextIO) -> int:
    """Delete documents registered before ``before`` and recount the usage account; the number deleted."""
    with conn.transaction():
        deleted = conn.execute(_DELETE, (before,)).rowcount
        conn.execute(_RECOUNT)
    out.write(f"pruned {deleted} persisted queries registered before {before.isoformat()}\n")
    show(conn, out=out)
    return deleted
