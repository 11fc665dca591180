"""The ASGI application: Starlette routes around the Strawberry GraphQL endpoint.

Resources (the router's pools and health monitor) open and close in the lifespan, never at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.admission import Admission, install
from gateway.cache import ResultCache
from gateway.compression import LEVEL, Compression
from gateway.concurrency import DatabaseGate
from gateway.documents import DocumentCache
from gateway.endpoint import GraphQLEndpoint
from gateway.metrics import Metrics
from gateway.persisted import PersistedQueries
from gateway.pgss import StatementStats, run_collector
from gateway.ratelimit import RateLimiter
from gateway.response_cache import ResponseCache
from gateway.search_log import SearchLog
from gateway.settings import Settings, load_settings
from gateway.singletons import Singletons
from gateway.telemetry import (
    RequestContextMiddleware,
    build_tracer_provider,
    get_tracer,
    server_span_middleware,
)
from gateway.web import web_routes
from routing import Router, RouterConfig
from schema.errors import OVERLOADED
from schema.limits import Limits
from schema.mutations import Mutation
from schema.queryids import QueryIds
from schema.root import build_schema


def make_router(settings: Settings) -> Router:
    return Router(
        settings.node_dsns,
        RouterConfig(
            pool_min_size=settings.pool_min_size,
            pool_max_size=settings.pool_max_size,
            connect_timeout_s=settings.connect_timeout_s,
            pool_timeout_s=settings.pool_timeout_s,
            pool_max_lifetime_s=settings.pool_max_lifetime_s,
            pool_max_idle_s=settings.pool_max_idle_s,
            pool_max_waiting=settings.pool_max_waiting,
            read_wait_s=settings.read_wait_s,
            health_interval_s=settings.health_interval_s,
            max_staleness_ms=settings.max_staleness_ms,
            consistency_wait_ms=settings.consistency_wait_ms,
            primary_fallback=settings.primary_fallback,
        ),
    )


async def healthz(request: Request) -> JSONResponse:
    """Liveness: the process answers. Says nothing about the databases (that is /readyz)."""
    return JSONResponse({"status": "ok"})


def _readiness(request: Request) -> tuple[dict[str, object], bool, bool]:
    """The routing state both readiness endpoints report: (body, reads servable, writes servable)."""
    router: Router | None = request.app.state.router_ref.get("router")
    if router is None:
        return {"ready": False, "writable": False, "missing": ["router not started"], "nodes": []}, False, False
    nodes = router.nodes()
    healthy = [n for n in nodes if n.healthy]
    reads = bool(healthy)
    writes = any(n.role == "primary" for n in healthy)
    missing = []
    if not reads:
        missing.append("reads: no healthy node")
    if not writes:
        missing.append("writes: no primary reachable")
    body: dict[str, object] = {
        "ready": reads,
        "writable": writes,
        "missing": missing,
        "nodes": [
            {"name": n.name, "healthy": n.healthy, "role": n.role, "lagSeconds": n.lag_s} for n in nodes
        ],
    }
    return body, reads, writes


async def readyz(request: Request) -> JSONResponse:
    """Read readiness: 200 while reads can be served, even with no primary (``writable`` says whether writes can).

    A failover leaves the replicas serving reads for the 20-odd seconds until a new primary is elected; a load
    balancer that pulled the gateway then would turn a write outage into a full one. Writes have /readyz/write.
    """
    body, reads, _ = _readiness(request)
    return JSONResponse(body, status_code=200 if reads else 503)


async def readyz_write(request: Request) -> JSONResponse:
    """Write readiness: 200 only when a primary is reachable, for the routes (or balancers) that carry writes."""
    body, _, writes = _readiness(request)
    return JSONResponse(body, status_code=200 if writes else 503)


class MetricsListener:
    """Outermost: requests that arrive on the metrics port get ``/metrics`` (and nothing else) from ``metrics``.

    The public port serves no metrics unless ``GATEWAY_METRICS_PORT`` equals ``GATEWAY_PORT``. One process
    listens on both ports (``python -m gateway serve`` binds both sockets), so with several workers any worker
    answers a scrape, from the figures all workers share. Scrapes skip tracing, the access log and compression.
    """

    def __init__(self, app: ASGIApp, *, metrics: ASGIApp, port: int, public_port: int) -> None:
        self.app = app
        self.metrics = metrics
        self.port = port
        self.public_port = public_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.port:
            server = scope.get("server")
            if server is not None and server[1] == self.port:
                if self.port != self.public_port or scope.get("path") == "/metrics":
                    await self.metrics(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def create_app(
    settings: Settings,
    *,
    router: Router | None = None,
    tracer_provider: trace.TracerProvider | None = None,
    singletons: Singletons | None = None,
) -> Starlette:
    """Build the app.

    ``router``: share an already-open router (tests); it is then not closed here. ``tracer_provider``: the
    OpenTelemetry provider to trace with; by default one is built from the ``OTEL_*`` variables, and with
    none configured tracing is a no-op. ``singletons``: decides whether this process runs the once-per-host
    jobs (by default it does: a lone process is its own host).
    """
    holder: dict[str, Router] = {}
    provider = tracer_provider if tracer_provider is not None else build_tracer_provider()
    tracer = get_tracer(provider)
    strawberry_schema = build_schema(mutation=Mutation)
    schema = strawberry_schema._schema  # the graphql-core schema Strawberry built: executed directly
    documents = DocumentCache(
        schema,
        limits=Limits(
            max_depth=settings.max_query_depth,
            max_aliases=settings.max_query_aliases,
            max_root_fields=settings.max_root_fields,
            max_cost=settings.max_query_cost,
            max_statements=settings.max_statements,
        ),
        max_entries=settings.document_cache_size,
        max_tokens=settings.max_query_tokens,
    )
    cache = ResultCache(
        redis_url=settings.redis_url,
        ttl_s=settings.cache_ttl_s,
        timeout_s=settings.cache_timeout_s,
        enabled=settings.cache_enabled,
        tracer=tracer,
    )
    responses = ResponseCache(
        cache,
        enabled=settings.response_cache,
        ttl_s=settings.cache_ttl_s,
        default_staleness_ms=settings.max_staleness_ms,
    )
    admission = Admission(max_in_flight=settings.max_in_flight, max_loop_lag_ms=settings.max_loop_lag_ms)
    gate = DatabaseGate(
        enabled=settings.database_gate,
        # More queries at once than the replicas' pools hold connections would only queue in the pools (and
        # spill onto the primary, where the writes are).
        max_limit=min(settings.max_in_flight, settings.pool_max_size * max(1, len(settings.node_dsns) - 1)),
        tolerance=settings.database_gate_tolerance,
    )
    limiter = RateLimiter(
        reads_per_minute=settings.rate_limit_reads_per_minute,
        writes_per_minute=settings.rate_limit_writes_per_minute,
        redis=cache.redis_client,
        trusted_proxies=settings.trusted_proxies,
        enabled=settings.rate_limit_enabled,
    )
    queryids = QueryIds()
    statements = StatementStats(queryids=queryids, top_k=settings.pgss_top_k)
    persisted = PersistedQueries(
        per_client=settings.apq_per_client,
        max_total_bytes=settings.apq_max_total_bytes,
        client_salt=settings.apq_client_key,
    )
    metrics = Metrics(lambda: holder.get("router"), cache, statements, persisted)
    admission.on_refuse = metrics.overloaded
    gate.on_update = metrics.gate_limit.set
    metrics.gate_limit.set(gate.bound)
    search_log = SearchLog(sample=settings.search_log_sample)
    endpoint = GraphQLEndpoint(
        schema,
        settings=settings,
        router=lambda: holder.get("router"),
        documents=documents,
        cache=cache,
        responses=responses,
        admission=admission,
        gate=gate,
        limiter=limiter,
        tracer=tracer,
        queryids=queryids,
        metrics=metrics,
        search_log=search_log,
        persisted=persisted,
    )
    admission.priority = endpoint.is_writer
    once = singletons or Singletons(None)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        own: Router | None = None
        if router is not None:
            holder["router"] = router
        else:
            own = make_router(settings)
            await own.open(wait=True)
            holder["router"] = own
        active = holder["router"]

        async def once_per_host() -> None:
            metrics.singleton_jobs.set(1)
            try:
                await run_collector(
                    active, statements, interval_s=settings.pgss_interval_s, also=metrics.database.sample
                )
            finally:
                metrics.singleton_jobs.set(0)

        tasks = [
            asyncio.create_task(search_log.run(active)),
            asyncio.create_task(metrics.run_sync()),
            asyncio.create_task(cache.run_pending()),
            asyncio.create_task(limiter.run()),
            asyncio.create_task(admission.watch_loop()),
            # pg_stat_statements and the database figures are read once per host, by whichever worker holds the lock.
            asyncio.create_task(once.run_while_held(once_per_host)),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            with contextlib.suppress(Exception):
                await search_log.flush(active)
            await persisted.drain()
            if own is not None:
                await own.close()
            await cache.close()
            if isinstance(provider, SDKTracerProvider) and tracer_provider is None:
                provider.shutdown()

    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/readyz/write", readyz_write),
            Route("/graphql", endpoint, methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
            *web_routes(),
        ],
        # Outermost first. The metrics listener answers scrapes before anything else runs; the server span
        # covers the whole request; the request context (ids, access log) runs inside the span so it can read it;
        # CORS answers preflights before the app; compression is innermost, so the access log counts the bytes
        # that went on the wire.
        middleware=[
            Middleware(
                MetricsListener,
                metrics=Starlette(routes=[Route("/metrics", metrics.endpoint)]),
                port=settings.metrics_port,
                public_port=settings.port,
            ),
            Middleware(server_span_middleware, provider=provider),
            Middleware(RequestContextMiddleware, continue_traceparent=provider is None),
            # Browser apps on other origins: reads from anywhere by default, never with credentials (writes use a
            # bearer token in a header, which CORS allows explicitly).
            Middleware(
                CORSMiddleware,
                allow_origins=[o.strip() for o in settings.cors_allow_origins.split(",") if o.strip()],
                allow_methods=["GET", "POST"],
                allow_headers=[
                    "content-type",
                    "authorization",
                    "x-consistency-token",
                    "x-max-staleness-ms",
                    "traceparent",
                    "tracestate",
                    "x-request-id",
                ],
                expose_headers=["ratelimit", "ratelimit-policy", "retry-after", "x-request-id"],
                allow_credentials=False,
                max_age=3600,
            ),
            *(
                # Above the threshold only: below about one packet, compressing saves no round trip and costs CPU.
                # Cache hits come gzipped already from their stored deflated prefix (gateway.compression), and
                # pass through untouched.
                [Middleware(Compression, minimum_size=settings.compress_min_bytes, compresslevel=LEVEL)]
                if settings.compress_min_bytes
                else []
            ),
        ],
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.router_ref = holder
    app.state.cache = cache
    app.state.responses = responses
    app.state.documents = documents
    app.state.admission = admission
    app.state.gate = gate
    app.state.limiter = limiter
    app.state.metrics = metrics
    app.state.statements = statements
    app.state.queryids = queryids
    app.state.search_log = search_log
    app.state.persisted = persisted
    app.state.graphql_endpoint = endpoint  # the document view (gateway.document_view) reads through it
    if router is not None:
        holder["router"] = router
    return app


def overload_refusal(settings: Settings) -> tuple[bytes, bytes]:
    """The 503 the HTTP protocol sends for this app when the worker is full: head lines and the errors."""
    errors = orjson.dumps([{"message": "the gateway is at capacity; retry shortly", "extensions": {"code": OVERLOADED}}])
    head = (
        b"HTTP/1.1 503 Service Unavailable\r\n"
        b"content-type: application/json; charset=utf-8\r\n"
        b"retry-after: 1\r\n"
    )
    if "*" in [o.strip() for o in settings.cors_allow_origins.split(",")]:
        # A browser app on another origin can read the refusal (and its Retry-After), as it could a 200.
        head += b"access-control-allow-origin: *\r\naccess-control-expose-headers: retry-after\r\n"
    return head, errors


def create_app_from_env() -> Starlette:
    """The app of one serving worker: settings from the environment, singletons by host-wide lock."""
    settings = load_settings()
    app = create_app(settings, singletons=Singletons.from_env())
    # The serving protocol refuses GraphQL requests while this worker is full, before they cost a task.
    install(app.state.admission, *overload_refusal(settings))
    return app
