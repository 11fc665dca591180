"""Database figures for alerts and the dashboard: sizes, bloat, partition headroom, WAL kept by slots.

None of this is on the request path. The once-per-host job that samples pg_stat_statements calls
:meth:`DatabaseStats.sample` after each of its samples; the figures are kept here and read by
``GatewayCollector`` when Prometheus scrapes. Sizes and estimates change over hours, so only every ``every``-th
call reads the databases (every minute with the default 15 s ``GATEWAY_PGSS_INTERVAL_S``), and each query is a
catalog read of a few milliseconds.

What comes from where:

- the primary: table, index and partition sizes, a heap bloat estimate and dead tuples per table, the headroom of
  the newest ``meeting_page`` partition, and the WAL each replication slot holds back (``pg_current_wal_lsn()`` is
  only defined on a primary);
- every healthy node: the size of the database and of its WAL folder (each node has its own disk).

A figure whose query failed keeps its last value; ``civic_dbstats_sample_timestamp_seconds`` says how old it is.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from prometheus_client.core import GaugeMetricFamily

from routing import Router

log = logging.getLogger("gateway.dbstats")

#: The partitioned table whose newest partition's headroom is watched.
PARTITIONED = "meeting_page"

# Every ordinary table and partition of the public schema with its heap (table + TOAST) and index sizes, and
# the parent it is a partition of. Partitioned parents are left out: they hold no data of their own.
SIZES_SQL = """
SELECT c.relname, coalesce(p.relname, ''), pg_table_size(c.oid), pg_indexes_size(c.oid)
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_inherits i ON i.inhrelid = c.oid
  LEFT JOIN pg_class p ON p.oid = i.inhparent
 WHERE n.nspname = 'public' AND c.relkind = 'r'
"""

# Heap bloat, estimated as check_postgres and the PostgreSQL wiki's queries do: the pages the live rows would
# fill (row header 24 bytes + line pointer 4 + the columns' average stored width from pg_stats, at the table's
# fillfactor) against the pages the heap has. Only analyzed tables have pg_stats, so only they are estimated.
# TOAST is not counted: relpages is the main fork, and pg_stats widths of out-of-line values are their pointers.
BLOAT_SQL = """
WITH widths AS (
  SELECT tablename, sum((1 - null_frac) * avg_width) AS width
    FROM pg_stats WHERE schemaname = 'public' GROUP BY tablename
), tables AS (
  SELECT c.relname, c.relpages::bigint AS pages, greatest(c.reltuples, 0) AS tuples,
         coalesce((SELECT substring(o FROM 'fillfactor=(\\d+)')::int
                     FROM unnest(c.reloptions) o WHERE o LIKE 'fillfactor=%'), 100) AS fillfactor,
         current_setting('block_size')::int AS bs, w.width
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN widths w ON w.tablename = c.relname
   WHERE n.nspname = 'public' AND c.relkind = 'r'
)
SELECT t.relname,
       greatest(t.pages - ceil(t.tuples * (28 + t.width) / ((t.bs - 24) * t.fillfactor / 100.0)), 0)::bigint * t.bs,
       coalesce(s.n_dead_tup, 0)
  FROM tables t LEFT JOIN pg_stat_user_tables s ON s.relname = t.relname AND s.schemaname = 'public'
"""

# The upper bound of the newest partition of meeting_page, as seconds from now (negative: already passed).
# The DEFAULT partition has no bound (pg_get_expr says DEFAULT) and drops out of the regexp.
HEADROOM_SQL = """
SELECT extract(epoch FROM max(
         (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \\(''([0-9-]+)''\\)'))[1]::date::timestamptz
       ) - now())
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
 WHERE i.inhparent = %s::regclass
"""

# WAL each slot keeps on the primary: from the slot's restart_lsn to the current write position.
SLOTS_SQL = """
SELECT slot_name, slot_type, active, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint
  FROM pg_replication_slots WHERE restart_lsn IS NOT NULL
"""

# pg_ls_waldir() needs pg_monitor, which the gateway's role has (migration 0003).
NODE_SQL = """
SELECT pg_database_size(current_database()), (SELECT coalesce(sum(size), 0)::bigint FROM pg_ls_waldir())
"""


@dataclasses.dataclass
class PrimaryFigures:
    """What one sample of the primary found."""

    node: str
    tables: dict[str, tuple[int, int]]  # top-level table -> (heap bytes, index bytes), partitions summed in
    partitions: dict[tuple[str, str], int]  # (parent, partition) -> total bytes
    bloat: dict[str, int]  # table or partition -> estimated heap bloat bytes
    dead: dict[str, int]  # table or partition -> dead tuples
    headroom_s: float | None  # None: the table has no bounded partition
    slots: list[tuple[str, str, bool, int]]  # (slot, type, active, retained bytes)


class DatabaseStats:
    """The last sample of database-wide figures, and their Prometheus families."""

    def __init__(self, *, every: int = 4, clock: Callable[[], float] = time.time) -> None:
        self._every = every
        self._calls = 0
        self._clock = clock
        self.primary: PrimaryFigures | None = None
        self.nodes: dict[str, tuple[int, int]] = {}  # node -> (database bytes, WAL folder bytes)
        self.sampled_at: float | None = None

    async def sample(self, router: Router) -> None:
        """Every ``every``-th call: read the primary's figures and every healthy node's sizes.

        A failing node is skipped this time.
        """
        self._calls += 1
        if (self._calls - 1) % self._every:
            return
        primary = router.primary
        if primary is not None:
            try:
                self.primary = await router.on_node(primary, lambda conn: _primary_figures(conn, primary))
            except Exception as exc:  # the monitor deals with failing nodes; keep the last figures until then
                log.info("database stats of %s failed: %s", primary, type(exc).__name__)
        seen: dict[str, tuple[int, int]] = {}
        for node in router.nodes():
            if not node.healthy:
                continue
            try:
                seen[node.name] = await router.on_node(node.name, _node_figures)
            except Exception as exc:
                log.info("database size of %s failed: %s", node.name, type(exc).__name__)
        # Nodes not seen this time drop out rather than show a size that may be hours old.
        self.nodes = seen
        self.sampled_at = self._clock()

    def metric_families(self) -> Iterator[GaugeMetricFamily]:
        """Gauges of the last sample (nothing before the first one)."""
        if self.sampled_at is None:
            return
        stamp = GaugeMetricFamily(
            "civic_dbstats_sample_timestamp_seconds", "When the database figures were last sampled (Unix time)."
        )
        stamp.add_metric([], self.sampled_at)
        yield stamp
        database = GaugeMetricFamily("civic_database_size_bytes", "pg_database_size() on each node.", labels=["node"])
        wal = GaugeMetricFamily("civic_wal_size_bytes", "Size of each node's WAL folder.", labels=["node"])
        for name, (db_bytes, wal_bytes) in sorted(self.nodes.items()):
            database.add_metric([name], float(db_bytes))
            wal.add_metric([name], float(wal_bytes))
        yield database
        yield wal
        if self.primary is not None:
            yield from _primary_families(self.primary)


def _primary_families(p: PrimaryFigures) -> Iterator[GaugeMetricFamily]:
    heap = GaugeMetricFamily(
        "civic_table_size_bytes", "Heap and TOAST size of each table, its partitions summed.", labels=["table"]
    )
    index = GaugeMetricFamily(
        "civic_index_size_bytes", "Size of each table's indexes, its partitions summed.", labels=["table"]
    )
    for table, (heap_bytes, index_bytes) in sorted(p.tables.items()):
        heap.add_metric([table], float(heap_bytes))
        index.add_metric([table], float(index_bytes))
    part = GaugeMetricFamily(
        "civic_partition_size_bytes", "Total size (heap, TOAST, indexes) of each partition.",
        labels=["table", "partition"],
    )
    for (parent, name), size in sorted(p.partitions.items()):
        part.add_metric([parent, name], float(size))
    bloat = GaugeMetricFamily(
        "civic_table_bloat_bytes", "Estimated heap bloat of each table or partition (analyzed ones).",
        labels=["table"],
    )
    for name, size in sorted(p.bloat.items()):
        bloat.add_metric([name], float(size))
    dead = GaugeMetricFamily("civic_table_dead_tuples", "Dead tuples of each table or partition.", labels=["table"])
    for name, count in sorted(p.dead.items()):
        dead.add_metric([name], float(count))
    headroom = GaugeMetricFamily(
        "civic_partition_headroom_days", "Days until the upper bound of the table's newest partition.",
        labels=["table"],
    )
    if p.headroom_s is not None:
        headroom.add_metric([PARTITIONED], p.headroom_s / 86400.0)
    retained = GaugeMetricFamily(
        "civic_replication_slot_retained_wal_bytes", "WAL the primary keeps for each replication slot.",
        labels=["slot", "slot_type", "active"],
    )
    for slot, kind, active, size in p.slots:
        retained.add_metric([slot, kind, "true" if active else "false"], float(size))
    primary = GaugeMetricFamily("civic_dbstats_primary_info", "The node the table figures were read on.",
                                labels=["node"])
    primary.add_metric([p.node], 1.0)
    yield from (heap, index, part, bloat, dead, headroom, retained, primary)


async def _rows(conn: psycopg.AsyncConnection[Any], query: str, params: Any = None) -> list[tuple[Any, ...]]:
    cur = await conn.execute(query, params)
    return await cur.fetchall()


async def _primary_figures(conn: psycopg.AsyncConnection[Any], node: str) -> PrimaryFigures:
    tables: dict[str, tuple[int, int]] = {}
    partitions: dict[tuple[str, str], int] = {}
    for name, parent, heap_bytes, index_bytes in await _rows(conn, SIZES_SQL):
        top = parent or name
        before = tables.get(top, (0, 0))
        tables[top] = (before[0] + int(heap_bytes), before[1] + int(index_bytes))
        if parent:
            partitions[(parent, name)] = int(heap_bytes) + int(index_bytes)
    bloat: dict[str, int] = {}
    dead: dict[str, int] = {}
    for name, bloat_bytes, dead_tuples in await _rows(conn, BLOAT_SQL):
        bloat[name] = int(bloat_bytes)
        dead[name] = int(dead_tuples)
    slots = [(str(s), str(k), bool(a), int(b)) for s, k, a, b in await _rows(conn, SLOTS_SQL)]
    headroom_s: float | None = None
    # Last: on a database not migrated yet the regclass cast fails, and nothing may run after it.
    try:
        rows = await _rows(conn, HEADROOM_SQL, [PARTITIONED])
    except psycopg.errors.UndefinedTable:
        rows = []
    if rows and rows[0][0] is not None:
        headroom_s = float(rows[0][0])
    return PrimaryFigures(node, tables, partitions, bloat, dead, headroom_s, slots)


async def _node_figures(conn: psycopg.AsyncConnection[Any]) -> tuple[int, int]:
    rows = await _rows(conn, NODE_SQL)
    return int(rows[0][0]), int(rows[0][1])
