"""OpenTelemetry traces: provider set-up from the standard ``OTEL_*`` variables, and the HTTP server span.

Export is chosen by ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``, ``none``; several may be comma-separated)
and, for OTLP, ``OTEL_EXPORTER_OTLP_PROTOCOL`` (``http/protobuf``, the default, or ``grpc``) plus the usual
``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``. A bare ``OTEL_EXPORTER_OTLP_ENDPOINT``
implies OTLP. With nothing configured there is no SDK provider at all: the API's no-op tracer costs next to
nothing, and trace ids still come from the client's ``traceparent`` (or are made up) so every response can
carry ``extensions.traceId``.

The HTTP server span is OpenTelemetry's own ASGI instrumentation, with the stable HTTP semantic conventions
(``http.request.method``, ``url.path``, ``http.route``, ``http.response.status_code``, ``server.address``…);
:class:`RequestContextMiddleware` inside it adds ``http.route`` once Starlette has matched the route, the
project's extras under ``civic.*``, the request id, and the access log line. The OTLP/gRPC exporter is an
extra (``pip install '.[grpc]'``): the server ships with OTLP over HTTP only.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import time
from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.propagate import extract
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.logs import ACCESS_LOGGER, REQUEST_IDS
from gateway.logs import request_id as new_request_id

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
#: A request id a client (or a proxy in front) sends is kept when it is this tame; otherwise one is made.
SERVICE_NAME = "civic-gateway"
access_log = logging.getLogger(ACCESS_LOGGER)


def exporters_from_env(env: Mapping[str, str]) -> list[SpanExporter]:
    """The span exporters the standard variables ask for (empty: tracing stays a no-op)."""
    names = [n.strip() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if not names and (env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        names = ["otlp"]
    out: list[SpanExporter] = []
    for name in names:
        if name == "none":
            return []
        if name == "console":
            out.append(ConsoleSpanExporter())
        elif name == "otlp":
            protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
                "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
            )
            if protocol == "grpc":
                try:
                    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                        OTLPSpanExporter as GrpcExporter,
                    )
                except ImportError:
                    raise ValueError(
                        "OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs the gRPC exporter, an extra of this package: "
                        "pip install 'civic-search-gateway[grpc]' (or use http/protobuf, the default)"
                    ) from None

                out.append(GrpcExporter())
            else:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter as HttpExporter,
                )

                out.append(HttpExporter())
        else:
            raise ValueError(f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} (use otlp, console or none)")
    return out


def build_tracer_provider(env: Mapping[str, str] | None = None) -> TracerProvider | None:
    """An SDK provider with the configured exporters, or None when nothing is configured."""
    env = os.environ if env is None else env
    exporters = exporters_from_env(env)
    if not exporters:
        return None
    resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME", SERVICE_NAME)})
    provider = TracerProvider(resource=resource)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def get_tracer(provider: trace.TracerProvider | None) -> trace.Tracer:
    return trace.get_tracer("civic.gateway", tracer_provider=provider or trace.NoOpTracerProvider())


def _fallback_trace_id(headers: Headers) -> str:
    match = _TRACEPARENT.match(headers.get("traceparent", "").strip().lower())
    if match and match.group(1) != "0" * 32:
        return match.group(1)
    return secrets.token_hex(16)


def server_span_middleware(app: ASGIApp, *, provider: trace.TracerProvider | None) -> ASGIApp:
    """OpenTelemetry's ASGI middleware: one SERVER span per request, continuing the client's ``traceparent``.

    The stable HTTP conventions are asked for (``OTEL_SEMCONV_STABILITY_OPT_IN=http`` unless the operator set
    the variable), the per-message ``receive``/``send`` spans are left out (two spans per request that say
    nothing the server span does not), and its HTTP metrics go nowhere: Prometheus has ours.

    With no tracer provider (tracing off) there would be no span to record, only the instrumentation's work on
    every request (about 0.15 F, docs/performance.md): it is left out, and :class:`RequestContextMiddleware`
    continues the client's ``traceparent`` itself.
    """
    if provider is None:
        return app
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    middleware: ASGIApp = OpenTelemetryMiddleware(
        app,
        tracer_provider=provider,
        meter_provider=NoOpMeterProvider(),
        exclude_spans=["receive", "send"],
    )
    return middleware


class RequestContextMiddleware:
    """Inside the server span: the request's trace id and request id, ``http.route``, and the access log line.

    Puts the trace id in ``scope["gateway.trace_id"]`` for ``extensions.traceId`` (the span's, or the client's
    ``traceparent``, or a fresh one when tracing is off), the request's start time in ``scope["gateway.started"]``
    for the slow-request log, and both ids in :data:`gateway.logs.REQUEST_IDS` for every line logged meanwhile.
    The request id is the client's ``x-request-id`` when it sends a tame one, and is echoed in the response.
    """

    def __init__(self, app: ASGIApp, *, continue_traceparent: bool = False) -> None:
        self.app = app
        #: True when no server span does it (tracing off): the client's trace context is made current here, so
        #: trace ids and the SQL comments' traceparent still follow the client's trace.
        self.continue_traceparent = continue_traceparent

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = scope["gateway.started"] = time.perf_counter()
        headers = Headers(scope=scope)
        attached = None
        if self.continue_traceparent and "traceparent" in headers:
            attached = otel_context.attach(extract({k: v for k, v in headers.items()}))
        span = trace.get_current_span()
        ctx = span.get_span_context()
        trace_id = format(ctx.trace_id, "032x") if ctx.is_valid else _fallback_trace_id(headers)
        scope["gateway.trace_id"] = trace_id
        given = headers.get("x-request-id", "")
        request_id = new_request_id(given)
        recording = span.is_recording()
        if recording:
            span.set_attribute("civic.request.id", request_id)
        outcome: dict[str, Any] = {"status": 0, "bytes": 0}

        async def send_with_ids(message: Message) -> None:
            if message["type"] == "http.response.start":
                outcome["status"] = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
                route = getattr(scope.get("route"), "path_format", None)
                if route and recording:
                    span.set_attribute("http.route", route)
                    span.update_name(f"{scope['method']} {route}")
            elif message["type"] == "http.response.body":
                outcome["bytes"] += len(message.get("body", b""))
            await send(message)

        token = REQUEST_IDS.set((trace_id, request_id))
        try:
            await self.app(scope, receive, send_with_ids)
        finally:
            if attached is not None:
                otel_context.detach(attached)
            if access_log.isEnabledFor(logging.INFO):
                client = scope.get("client")
                access_log.info(
                    "%s %s %s",
                    scope["method"],
                    scope.get("path", ""),
                    outcome["status"],
                    extra={
                        "http.request.method": scope["method"],
                        "url.path": scope.get("path", ""),
                        "http.response.status_code": outcome["status"],
                        "http.response.body.size": outcome["bytes"],
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                        "client.address": client[0] if client else "",
                    },
                )
            REQUEST_IDS.reset(token)
