"""Partition DDL for ``meeting_page``: create partitions ahead, moving rows out of DEFAULT, and list them.

It lives beside the migration runner because ``python -m gateway migrate`` creates the current period's
partition right after the schema, and the server must not depend on the operators' tools for that; the
maintenance commands in ``ops.maintenance`` build on these same helpers.

Partitions are ranges of ``meeting_date`` whose width (``month`` or ``year``) is recorded in
``partition_policy``. A date with no partition lands in ``meeting_page_default``; creating the partition for
that range first moves such rows out of DEFAULT, in the same transaction, because PostgreSQL refuses to
create a partition whose range the DEFAULT partition already holds rows for.

Every function here takes a psycopg connection to the primary in autocommit mode and manages its own
transactions, so that each partition is created (and its rows moved) atomically and locks are held briefly.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterator
from typing import Any, Literal

import psycopg
from psycopg import sql

Width = Literal["month", "year"]
PARENT = "meeting_page"
DEFAULT_PARTITION = "meeting_page_default"
_BOUND_RE = re.compile(r"FOR VALUES FROM \('(\d{4}-\d{2}-\d{2})'\) TO \('(\d{4}-\d{2}-\d{2})'\)")
# Columns a partition row is copied by; search_vector is left out: the trigger of migration 0011 recomputes it
# on insert.
PAGE_COLUMNS = (
    "id",
    "meeting_date",
    "document_id",
    "municipality_id",
    "document_type",
    "page_number",
    "text",
    "page_image",
)

Conn = psycopg.Connection[Any]


@dataclasses.dataclass(frozen=True)
class PartitionInfo:
    """One partition of ``meeting_page`` (``start``/``end`` are None for DEFAULT)."""

    name: str
    start: dt.date | None
    end: dt.date | None
    rows: int
    bytes: int


def period_start(day: dt.date, width: Width) -> dt.date:
    return dt.date(day.year, 1, 1) if width == "year" else dt.date(day.year, day.month, 1)


def period_end(start: dt.date, width: Width) -> dt.date:
    if width == "year":
        return dt.date(start.year + 1, 1, 1)
    return dt.date(start.year + (start.month == 12), start.month % 12 + 1, 1)


def partition_name(start: dt.date, width: Width) -> str:
    return f"{PARENT}_y{start.year}" if width == "year" else f"{PARENT}_y{start.year}m{start.month:02d}"


def periods(first: dt.date, last: dt.date, width: Width) -> Iterator[tuple[dt.date, dt.date]]:
    """The [start, end) periods that cover first..last inclusive."""
    start = period_start(first, width)
    while start <= last:
        end = period_end(start, width)
        yield start, end
        start = end


def get_width(conn: Conn) -> Width:
    row = conn.execute("SELECT width FROM public.partition_policy").fetchone()
    width = str(row[0]) if row else "year"
    return "month" if width == "month" else "year"


def set_width(conn: Conn, width: Width) -> None:
    """Record the width for partitions created from now on (existing partitions keep theirs)."""
    conn.execute("UPDATE public.partition_policy SET width = %s", [width])


def list_partitions(conn: Conn, *, exact: bool = False) -> list[PartitionInfo]:
    """Every partition with its bounds, row count (estimated unless ``exact``) and size on disk."""
    rows = conn.execute(
        """
        SELECT c.relname, pg_get_expr(c.relpartbound, c.oid), c.reltuples::bigint,
               pg_total_relation_size(c.oid)
          FROM pg_inherits i
          JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'public.meeting_page'::regclass
         ORDER BY 1
        """
    ).fetchall()
    result = []
    for name, bound, reltuples, size in rows:
        match = _BOUND_RE.search(str(bound))
        start = dt.date.fromisoformat(match.group(1)) if match else None
        end = dt.date.fromisoformat(match.group(2)) if match else None
        count = int(reltuples)
        if exact or count < 0:
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(str(name)))
            got = conn.execute(query).fetchone()
            count = int(got[0]) if got else 0
        result.append(PartitionInfo(str(name), start, end, count, int(size)))
    return sorted(result, key=lambda p: (p.start is None, p.start or dt.date.min))


def _covered(parts: list[PartitionInfo], start: dt.date, end: dt.date) -> bool:
    return any(p.start is not None and p.end is not None and p.start < end and start < p.end for p in parts)


def ensure_partition(conn: Conn, start: dt.date, end: dt.date, name: str) -> bool:
    """Create one partition for [start, end), moving any rows for that range out of DEFAULT.

    Returns False when a partition already covers (part of) the range. One transaction: either the partition
    exists with its rows, or nothing changed.
    """
    if _covered(list_partitions(conn), start, end):
        return False
    ident = sql.Identifier(name)
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in PAGE_COLUMNS)
    with conn.transaction():
        # Short lock timeout: creating a partition needs a brief exclusive lock on the parent; never queue
        # behind a long transaction while blocking every search behind us.
        conn.execute("SET LOCAL lock_timeout = '5s'")
        moved = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM public.meeting_page_default WHERE meeting_date >= %s AND meeting_date < %s)",
            [start, end],
        ).fetchone()
        if moved and moved[0]:
            conn.execute(
                sql.SQL(
                    "CREATE TEMP TABLE civic_moved ON COMMIT DROP AS "
                    "WITH gone AS (DELETE FROM public.meeting_page_default "
                    "WHERE meeting_date >= %s AND meeting_date < %s RETURNING {cols}) SELECT * FROM gone"
                ).format(cols=cols),
                [start, end],
            )
        conn.execute(
            sql.SQL(
                "CREATE TABLE public.{} PARTITION OF public.meeting_page FOR VALUES FROM ({}) TO ({})"
            ).format(ident, sql.Literal(start), sql.Literal(end))
        )
        if moved and moved[0]:
            conn.execute(
                sql.SQL("INSERT INTO public.meeting_page ({cols}) SELECT {cols} FROM civic_moved").format(
                    cols=cols
                )
            )
    return True


def ensure_range(conn: Conn, first: dt.date, last: dt.date) -> list[str]:
    """Make sure partitions cover first..last at the policy width; returns the names created."""
    width = get_width(conn)
    created = []
    for start, end in periods(first, last, width):
        name = partition_name(start, width)
        if ensure_partition(conn, start, end, name):
            created.append(name)
    return created


def ensure_ahead(conn: Conn, ahead: int, *, today: dt.date | None = None) -> list[str]:
    """Create the current period's partition and ``ahead`` more after it."""
    width = get_width(conn)
    start = period_start(today or dt.date.today(), width)
    last = start
    for _ in range(ahead):
        last = period_end(last, width)
    return ensure_range(conn, start, last)
