"""pg_stat_statements sampling: per-statement deltas per node, for /metrics and OpenTelemetry metrics.

Every ``interval_s`` (15 s by default) each healthy node is asked for its statement statistics. The collector
keeps the previous sample, turns the counters into deltas, and exports the top-K statements of each interval
by execution time, labelled by node, role, queryid and (for the gateway's own templates) the statement's name.
Counters are cumulative since the gateway started, as Prometheus expects; a node whose statistics were reset
(counters going down) starts again from its new values.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import psycopg
from opentelemetry import metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from routing import Router
from schema.queryids import QueryIds

log = logging.getLogger("gateway.pgss")
FIELDS = ("calls", "total_exec_ms", "rows", "shared_blks_hit", "shared_blks_read")

SAMPLE_SQL = """
SELECT queryid, sum(calls)::bigint, sum(total_exec_time), sum(rows)::bigint,
       sum(shared_blks_hit)::bigint, sum(shared_blks_read)::bigint
  FROM pg_stat_statements
 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND queryid IS NOT NULL
 GROUP BY queryid
 ORDER BY 3 DESC
 LIMIT 500
"""


@dataclasses.dataclass
class Sample:
    calls: int = 0
    total_exec_ms: float = 0.0
    rows: int = 0
    shared_blks_hit: int = 0
    shared_blks_read: int = 0


class StatementStats:
    """Previous samples, cumulative deltas, and the last interval's top-K, per (node, queryid)."""

    def __init__(self, *, queryids: QueryIds, top_k: int = 20, meter: metrics.Meter | None = None) -> None:
        self.queryids = queryids
        self.top_k = top_k
        self._previous: dict[tuple[str, int], Sample] = {}
        self._totals: dict[tuple[str, str, int], Sample] = {}
        self._last_mean_ms: dict[tuple[str, str, int], float] = {}
        self.samples_taken = 0
        meter = meter or metrics.get_meter("civic.gateway", meter_provider=metrics.NoOpMeterProvider())
        self._otel = {
            "calls": meter.create_counter("civic.pgss.calls", description="Statement calls (delta)"),
            "total_exec_ms": meter.create_counter("civic.pgss.exec_time", unit="ms", description="Execution time"),
            "rows": meter.create_counter("civic.pgss.rows", description="Rows returned or affected"),
            "shared_blks_hit": meter.create_counter("civic.pgss.shared_blks_hit", description="Buffer hits"),
            "shared_blks_read": meter.create_counter("civic.pgss.shared_blks_read", description="Blocks read"),
        }

    def update(self, node: str, role: str, rows: list[tuple[Any, ...]]) -> list[tuple[int, Sample]]:
        """Fold one node's sample in; returns the interval's top-K deltas (queryid, delta)."""
        deltas: list[tuple[int, Sample]] = []
        for queryid, calls, total_ms, nrows, hit, read in rows:
            key = (node, int(queryid))
            now = Sample(int(calls), float(total_ms), int(nrows), int(hit), int(read))
            before = self._previous.get(key)
            self._previous[key] = now
            if before is None or now.calls < before.calls:
                continue  # first sight (no interval yet) or a reset: nothing to attribute to this interval
            delta = Sample(*(getattr(now, f) - getattr(before, f) for f in FIELDS))
            if delta.calls > 0:
                deltas.append((int(queryid), delta))
        deltas.sort(key=lambda d: d[1].total_exec_ms, reverse=True)
        top = deltas[: self.top_k]
        for queryid, delta in top:
            tkey = (node, role, queryid)
            total = self._totals.setdefault(tkey, Sample())
            for f in FIELDS:
                setattr(total, f, getattr(total, f) + getattr(delta, f))
            self._last_mean_ms[tkey] = delta.total_exec_ms / delta.calls
            attrs = {"node": node, "role": role, "queryid": str(queryid)}
            for f in FIELDS:
                self._otel[f].add(getattr(delta, f), attrs)
        self.samples_taken += 1
        return top

    def metric_families(self) -> Iterator[Any]:
        labels = ["node", "role", "queryid", "statement"]
        names = self.queryids.labels()
        fams = {
            "calls": CounterMetricFamily("civic_pgss_calls", "pg_stat_statements calls (top-K deltas).", labels=labels),
            "total_exec_ms": CounterMetricFamily(
                "civic_pgss_exec_seconds", "pg_stat_statements execution time.", labels=labels
            ),
            "rows": CounterMetricFamily("civic_pgss_rows", "pg_stat_statements rows.", labels=labels),
            "shared_blks_hit": CounterMetricFamily(
                "civic_pgss_shared_blks_hit", "Shared buffer hits.", labels=labels
            ),
            "shared_blks_read": CounterMetricFamily(
                "civic_pgss_shared_blks_read", "Shared blocks read.", labels=labels
            ),
        }
        mean = GaugeMetricFamily(
            "civic_pgss_mean_exec_seconds", "Mean execution time over the last sampling interval.", labels=labels
        )
        for (node, role, queryid), total in sorted(self._totals.items()):
            values = [node, role, str(queryid), names.get(queryid, "")]
            for f, fam in fams.items():
                value = getattr(total, f)
                fam.add_metric(values, value / 1000.0 if f == "total_exec_ms" else value)
            mean.add_metric(values, self._last_mean_ms.get((node, role, queryid), 0.0) / 1000.0)
        yield from fams.values()
        yield mean


async def _sample(conn: psycopg.AsyncConnection[Any]) -> list[tuple[Any, ...]]:
    cur = await conn.execute(SAMPLE_SQL)
    return await cur.fetchall()


async def sample_once(router: Router, stats: StatementStats) -> None:
    """Sample every healthy node once (concurrently; a failing node is skipped)."""

    async def one(name: str, role: str) -> None:
        try:
            rows = await router.on_node(name, _sample)
        except Exception as exc:  # a node that fails is the monitor's business; try again next interval
            log.info("pg_stat_statements sample of %s failed: %s", name, type(exc).__name__)
            return
        stats.update(name, role, rows)

    await asyncio.gather(*(one(n.name, n.role) for n in router.nodes() if n.healthy))


async def run_collector(
    router: Router,
    stats: StatementStats,
    *,
    interval_s: float = 15.0,
    also: Callable[[Router], Awaitable[None]] | None = None,
) -> None:
    """Sample forever; cancelled by the app's lifespan. ``also``: another once-per-host sample, same pace."""
    while True:
        with contextlib.suppress(Exception):
            await sample_once(router, stats)
        if also is not None:
            with contextlib.suppress(Exception):
                await also(router)
        await asyncio.sleep(interval_s)
