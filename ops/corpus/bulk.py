"""Loading a corpus into an empty ``meeting_page``: each period's rows into a table of its own, indexed after.

A partition created with ``PARTITION OF`` carries every index of the parent while it is loaded, and the RUM
full-text index is very slow to maintain row by row: the 50,000-page demo loaded at about 300 pages/s that way,
against several thousand for the same COPY with the index built once at the end. So when the table is empty,
the corpus goes through the same path as ``python -m ops ingest`` into new ranges
(:mod:`ops.ingest.newparts`):

1. every period the corpus covers gets a standalone *pending* table (``LIKE meeting_page``, marked pending in
   the database itself); a partition of that period that already exists, empty (the migrations create the
   current year's and the next), is dropped first so its pending table can take its place under the same name;
2. the workers COPY each document's pages straight into its period's table;
3. the parent's indexes are built on each table, spread over the workers' connections, and the tables are
   attached (``ATTACH`` adopts the matching indexes and builds nothing).

A period that only partly overlaps an existing partition (the partition width changed) is loaded through the
parent, as ``ops ingest`` does. An interrupted load leaves pending tables, which the next ``ops ingest`` run
attaches; ``ops corpus`` itself refuses to load into a database that holds pages, as before.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import functools
import time
from collections.abc import Sequence

import psycopg
from psycopg import sql

from migrations import partitions
from migrations.partitions import Conn
from ops.ingest import finish, newparts


@dataclasses.dataclass(frozen=True)
class Targets:
    """Which table each date's pages are COPYed into: sorted, non-overlapping [start, end) ranges."""

    starts: tuple[dt.date, ...]
    ends: tuple[dt.date, ...]
    tables: tuple[str, ...]
    pending: tuple[newparts.PendingPartition, ...]

    def table(self, day: dt.date) -> str:
        """The table for ``day``: its period's table, else the parent (which routes it)."""
        i = bisect.bisect_right(self.starts, day) - 1
        if i >= 0 and day < self.ends[i]:
            return self.tables[i]
        return partitions.PARENT


def prepare(conn: Conn, first: dt.date, last: dt.date) -> Targets:
    """Create the pending tables for first..last (``meeting_page`` must be empty); ``conn`` is autocommit."""
    width = partitions.get_width(conn)
    wanted = list(partitions.periods(first, last, width))
    for part in partitions.list_partitions(conn):
        if part.start is not None and (part.start, part.end) in wanted:
            # Empty, as the whole table is: the pending table made next takes its place and its name. The lock
            # timeout: dropping a partition locks the parent, which must never queue behind a long transaction.
            with conn.transaction():
                conn.execute("SET LOCAL lock_timeout = '10s'")
                conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier("public", part.name)))
    router = newparts.Router(conn, width)
    ranges = []
    for start, end in wanted:
        table = router.target(start)
        if table != partitions.PARENT:
            ranges.append((start, end, table))
    return Targets(
        starts=tuple(r[0] for r in ranges),
        ends=tuple(r[1] for r in ranges),
        tables=tuple(r[2] for r in ranges),
        pending=tuple(sorted(router.pending.values(), key=lambda p: p.start)),
    )


def _connect(dsn: str) -> Conn:
    conn = psycopg.connect(dsn, prepare_threshold=None, autocommit=True)
    # Index builds sort in memory up to this; RUM and B-tree builds of a year's pages fit.
    conn.execute("SET maintenance_work_mem = '256MB'")
    return conn


def _execute(statement: sql.Composed, conn: Conn) -> None:
    conn.execute(statement)


def index_and_attach(dsn: str, conn: Conn, targets: Targets, workers: int) -> float:
    """Build the parent's indexes on every pending table over ``workers`` connections, then attach each one.

    Returns the seconds it took.
    """
    began = time.perf_counter()
    statements: Sequence[sql.Composed] = [
        s for p in targets.pending for s in newparts.index_statements(conn, p.name)
    ]
    conns = [_connect(dsn) for _ in range(max(1, workers))]
    try:
        finish.parallel(conns, [functools.partial(_execute, s) for s in statements])
    finally:
        for c in conns:
            c.close()
    for pending in targets.pending:
        newparts.attach(conn, pending)
    return time.perf_counter() - began
