"""Prometheus metrics on ``/metrics`` (text format), and the slow-request log.

Request-path figures are recorded as they happen; everything the router, the cache and the
pg_stat_statements collector already count is read at scrape time by one custom collector, so nothing is
counted twice and nothing is pushed on the hot path.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from gateway.cache import ResultCache
from gateway.dbstats import DatabaseStats
from gateway.persisted import PersistedQueries
from gateway.pgss import StatementStats
from routing import Router

slow_log = logging.getLogger("gateway.slow")
SLOW_SECONDS = 1.0
MANY_STATEMENTS = 10
MAX_OPERATION_LABELS = 100
#: Gauges of things each worker has its own of: with several workers they add up.
PER_WORKER_GAUGES = frozenset({"civic_node_in_flight", "civic_pool_connections", "civic_pool_requests_waiting"})
#: psycopg_pool's get_stats() keys, sorted into one family per kind and unit (the keys keep their meaning).
POOL_CONNECTIONS = {"pool_min": "min", "pool_max": "max", "pool_size": "open", "pool_available": "idle"}
POOL_EVENTS = {
    "requests_num": "requests", "requests_queued": "requests_queued", "requests_errors": "requests_errors",
    "returns_bad": "returns_bad", "connections_num": "connections_opened",
    "connections_errors": "connections_errors", "connections_lost": "connections_lost",
}
POOL_MILLISECONDS = {"requests_wait_ms": "requests_wait", "connections_ms": "connections_open", "usage_ms": "usage"}


class GatewayCollector(Collector):
    """Router, pool, lag, cache and pg_stat_statements figures, read when Prometheus scrapes."""

    def __init__(
        self,
        router: Callable[[], Router | None],
        cache: ResultCache,
        statements: StatementStats,
        database: DatabaseStats | None = None,
        persisted: PersistedQueries | None = None,
    ) -> None:
        self._router = router
        self._cache = cache
        self._persisted = persisted
        self._statements = statements
        self._database = database

    def collect(self) -> Iterator[Any]:
        """Every family, from the live router and cache and the last samples of the databases."""
        router = self._router()
        primary = GaugeMetricFamily("civic_primary_known", "1 when the gateway knows a primary to write to.")
        primary.add_metric([], 1.0 if router is not None and router.primary is not None else 0.0)
        yield primary
        if router is not None:
            yield from self._router_metrics(router)
        stats = self._cache.stats
        cache = CounterMetricFamily("civic_cache_operations", "Search cache outcomes.", labels=["outcome"])
        for outcome, value in stats.as_dict().items():
            cache.add_metric([outcome], value)
        yield cache
        if self._persisted is not None:
            yield from self._persisted_metrics(self._persisted)
        yield from self._statements.metric_families()
        if self._database is not None:
            yield from self._database.metric_families()

    @staticmethod
    def _persisted_metrics(persisted: PersistedQueries) -> Iterator[Any]:
        registrations = CounterMetricFamily(
            "civic_apq_registrations", "Persisted-query registrations by outcome (quota and bound refusals).",
            labels=["outcome"],
        )
        for outcome, value in persisted.stats.registrations.items():
            registrations.add_metric([outcome], value)
        lookups = CounterMetricFamily(
            "civic_apq_lookups", "Persisted-query lookups in the database by result.", labels=["result"]
        )
        lookups.add_metric(["found"], persisted.stats.lookups_found)
        lookups.add_metric(["missing"], persisted.stats.lookups_missing)
        lookups.add_metric(["failed"], persisted.stats.lookups_failed)
        yield from (registrations, lookups)

    def _router_metrics(self, router: Router) -> Iterator[Any]:
        nodes = router.nodes()
        up = GaugeMetricFamily("civic_node_healthy", "1 when the node answers health checks.", labels=["node", "role"])
        lag = GaugeMetricFamily("civic_replica_lag_seconds", "Replay lag of each replica.", labels=["node"])
        in_flight = GaugeMetricFamily("civic_node_in_flight", "Requests running on each node.", labels=["node"])
        # One family per kind and unit, so that sum() and rate() over a family always make sense.
        connections = GaugeMetricFamily(
            "civic_pool_connections", "Connections of each node's request pool: min, max, open, idle.",
            labels=["node", "state"],
        )
        waiting = GaugeMetricFamily(
            "civic_pool_requests_waiting", "Requests queued for a connection of each node's pool.", labels=["node"]
        )
        pool_events = CounterMetricFamily(
            "civic_pool_events", "Counted events of each node's pool (psycopg_pool get_stats()).",
            labels=["node", "event"],
        )
        pool_time = CounterMetricFamily(
            "civic_pool_time_seconds", "Time spent waiting for, opening and using connections of each node's pool.",
            labels=["node", "stat"],
        )
        for n in nodes:
            up.add_metric([n.name, n.role], 1.0 if n.healthy else 0.0)
            if n.role == "replica" and n.lag_s is not None:
                lag.add_metric([n.name], n.lag_s)
            in_flight.add_metric([n.name], n.in_flight)
            for key, state in POOL_CONNECTIONS.items():
                connections.add_metric([n.name, state], float(n.pool.get(key, 0)))
            waiting.add_metric([n.name], float(n.pool.get("requests_waiting", 0)))
            # psycopg_pool leaves a counter out of get_stats() until it first moves: absent means 0.
            for key, event in POOL_EVENTS.items():
                pool_events.add_metric([n.name, event], float(n.pool.get(key, 0)))
            for key, stat in POOL_MILLISECONDS.items():
                pool_time.add_metric([n.name, stat], n.pool.get(key, 0) / 1000.0)
        yield from (up, lag, in_flight, connections, waiting, pool_events, pool_time)
        events = router.events.as_dict()
        decisions = CounterMetricFamily(
            "civic_routing_decisions", "Where reads went: replica, primary, fallback; waited for a token.",
            labels=["decision"],
        )
        for key, name in (("reads_replica", "replica"), ("reads_primary", "primary"),
                          ("reads_fallback", "fallback"), ("waited", "waited")):
            decisions.add_metric([name], events.get(key, 0))
        yield decisions
        retries = CounterMetricFamily("civic_read_retries", "Reads retried on another node after a node failed.")
        retries.add_metric([], events.get("retries", 0))
        yield retries
        refused = CounterMetricFamily(
            "civic_writes_refused_split_brain", "Writes refused to a primary on a lower timeline."
        )
        refused.add_metric([], events.get("writes_refused_split_brain", 0))
        yield refused
        health = CounterMetricFamily("civic_node_events", "Ejections and readmissions of nodes.", labels=["event"])
        health.add_metric(["ejection"], events.get("ejections", 0))
        health.add_metric(["readmission"], events.get("readmissions", 0))
        yield health


class Metrics:
    """The registry behind /metrics and the request-path instruments."""

    def __init__(
        self,
        router: Callable[[], Router | None],
        cache: ResultCache,
        statements: StatementStats,
        persisted: PersistedQueries | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "civic_graphql_requests", "GraphQL requests by operation and outcome.", ["operation", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "civic_graphql_request_seconds", "GraphQL request latency by operation and outcome.",
            ["operation", "outcome"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )
        self.errors = Counter("civic_graphql_errors", "Errors returned to clients, by code.", ["code"],
                              registry=self.registry)
        # With several workers: 1 in the one worker running the once-per-host jobs (their sum is 1 per host).
        self.singleton_jobs = Gauge(
            "civic_singleton_jobs_running", "1 in the process running the once-per-host jobs (pg_stat_statements).",
            registry=self.registry, multiprocess_mode="livesum",
        )
        self.overloads = Counter(
            "civic_requests_overloaded",
            "Requests refused at once because the worker was at capacity, by reason (in_flight, loop_lag) and by "
            "where (protocol: as soon as the head was read; endpoint).",
            ["reason", "stage"],
            registry=self.registry,
        )
        self.gate_limit = Gauge(
            "civic_database_gate_limit",
            "Queries the workers may send to the databases at once, as learned from their latency (summed).",
            registry=self.registry, multiprocess_mode="livesum",
        )
        # Operation names are client input: past this many distinct names, new ones are counted as "other",
        # so a client inventing names cannot grow the series without bound.
        self._operations: set[str] = set()
        self.max_operations = MAX_OPERATION_LABELS
        self.sql_per_request = Histogram(
            "civic_sql_statements_per_request", "SQL statements one GraphQL request sent.",
            registry=self.registry, buckets=(0, 1, 2, 3, 4, 5, 8, 10, 20, 50),
        )
        self.database = DatabaseStats()
        self.collector = GatewayCollector(router, cache, statements, self.database, persisted)
        self.multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        self._mirrors: dict[str, Any] = {}
        self._last: dict[tuple[str, tuple[str, ...]], float] = {}
        if self.multiprocess_dir is None:
            self.registry.register(self.collector)
            # process_* (CPU, memory, open files) and python_info. With several workers prometheus_client's
            # multiprocess mode cannot merge per-process figures, so they are left out there.
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)

    def sync(self) -> None:
        """Several workers: copy this worker's scrape-time figures into prometheus_client's shared files.

        Counters advance by what this worker counted since the last sync, so the sum over workers is the
        host's total; gauges of per-worker resources (pools, requests in flight) add up over live workers;
        the rest (roles, lag: every worker sees the same nodes) show the most recent value.
        """
        if self.multiprocess_dir is None:
            return
        for family in self.collector.collect():
            for sample in family.samples:
                if family.type == "counter" and not sample.name.endswith("_total"):
                    continue  # the _created sample
                labels = tuple(sorted(sample.labels))
                mirror = self._mirror(family, labels)
                values = [sample.labels[k] for k in labels]
                child = mirror.labels(*values) if labels else mirror
                if family.type == "counter":
                    key = (family.name, tuple(values))
                    delta = sample.value - self._last.get(key, 0.0)
                    self._last[key] = sample.value
                    if delta > 0:
                        child.inc(delta)
                else:
                    child.set(sample.value)

    def _mirror(self, family: Any, labels: tuple[str, ...]) -> Any:
        found = self._mirrors.get(family.name)
        if found is None:
            if family.type == "counter":
                found = Counter(family.name, family.documentation, labels, registry=None)
            else:
                if family.name in PER_WORKER_GAUGES:
                    found = Gauge(family.name, family.documentation, labels, registry=None, multiprocess_mode="livesum")
                else:
                    found = Gauge(
                        family.name, family.documentation, labels, registry=None, multiprocess_mode="mostrecent"
                    )
            self._mirrors[family.name] = found
        return found

    async def run_sync(self, *, interval_s: float = 1.0) -> None:
        """Sync every ``interval_s`` until cancelled (only does anything with several workers)."""
        if self.multiprocess_dir is None:
            return
        while True:
            self.sync()
            await asyncio.sleep(interval_s)

    def observe(
        self, *, operation: str, outcome: str, seconds: float, statements: int, codes: list[str], trace_id: str
    ) -> None:
        """Record one GraphQL request; log it as one JSON line when it was slow or chatty."""
        op = self._label(operation)
        self.requests.labels(op, outcome).inc()
        self.latency.labels(op, outcome).observe(seconds)
        self.sql_per_request.observe(statements)
        for code in codes:
            self.errors.labels(code).inc()
        if seconds > SLOW_SECONDS or statements > MANY_STATEMENTS:
            slow_log.warning(json.dumps({
                "event": "slow_request", "traceId": trace_id, "operation": op, "outcome": outcome,
                "durationMs": round(seconds * 1000, 1), "statements": statements,
            }))

    def _label(self, operation: str) -> str:
        if not operation:
            return "anonymous"
        if operation in self._operations:
            return operation
        if len(self._operations) >= self.max_operations or len(operation) > 64 or not operation.isidentifier():
            return "other"
        self._operations.add(operation)
        return operation

    def overloaded(self, reason: str = "in_flight", stage: str = "endpoint") -> None:
        self.overloads.labels(reason, stage).inc()

    async def endpoint(self, request: Request) -> Response:
        if self.multiprocess_dir is None:
            body = generate_latest(self.registry)
        else:
            self.sync()
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
            body = generate_latest(registry)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
