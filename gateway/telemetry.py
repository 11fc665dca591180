"""OpenTelemetry traces: provider set-up from the standard ``OTEL_*`` variables, the server span, GraphQL spans.

Export is chosen by ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``, ``none``; several may be comma-separated)
and, for OTLP, ``OTEL_EXPORTER_OTLP_PROTOCOL`` (``http/protobuf``, the default, or ``grpc``) plus the usual
``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``. A bare ``OTEL_EXPORTER_OTLP_ENDPOINT``
implies OTLP. With nothing configured there is no SDK provider at all: the API's no-op tracer costs next to
nothing, and trace ids still come from the client's ``traceparent`` (or are made up) so every response can
carry ``extensions.traceId``.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.propagate import extract
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
SERVICE_NAME = "civic-gateway"


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
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                    OTLPSpanExporter as GrpcExporter,
                )

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


class TracingMiddleware:
    """One SERVER span per HTTP request, continuing the client's W3C ``traceparent`` when it sends one.

    Puts the trace id in ``scope["gateway.trace_id"]`` for ``extensions.traceId``, and the request's start
    time for the slow-request log.
    """

    def __init__(self, app: ASGIApp, *, tracer: trace.Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        parent = extract({k: v for k, v in headers.items()})
        scope["gateway.started"] = time.perf_counter()
        name = f"{scope['method']} {scope.get('path', '')}"
        with self.tracer.start_as_current_span(name, context=parent, kind=SpanKind.SERVER) as span:
            ctx = span.get_span_context()
            scope["gateway.trace_id"] = (
                format(ctx.trace_id, "032x") if ctx.is_valid else _fallback_trace_id(headers)
            )
            span.set_attribute("http.request.method", scope["method"])
            span.set_attribute("url.path", scope.get("path", ""))
            status: dict[str, int] = {}

            async def send_status(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status["code"] = int(message["status"])
                await send(message)

            await self.app(scope, receive, send_status)
            code = status.get("code", 0)
            span.set_attribute("http.response.status_code", code)
            if code >= 500:
                span.set_status(Status(StatusCode.ERROR))
