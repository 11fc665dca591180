"""The GraphQL endpoint: builds each request's context from its headers and shapes every response.

Every error a client sees carries ``extensions.code``; unexpected failures are logged with their traceback
and shown only as INTERNAL_SERVER_ERROR with no internal detail.
"""

from __future__ import annotations

import json
import time
from typing import Any

from cross_web import HTTPException
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import Receive, Scope, Send
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse
from strawberry.types import ExecutionResult

from gateway.cache import ResultCache
from gateway.metrics import Metrics
from gateway.search_log import SearchLog
from gateway.settings import Settings
from gateway.web import PAGE_HEADERS, graphiql_html
from routing import RequestRouting, Router, decode_token
from schema.context import Context, Viewer
from schema.cursors import CursorCodec
from schema.errors import BAD_USER_INPUT, INTERNAL, client_code
from schema.queryids import QueryIds

MAX_STALENESS_HEADER = "x-max-staleness-ms"
CONSISTENCY_HEADER = "x-consistency-token"


class HeaderError(ValueError):
    """A request header the gateway reads is malformed; answered as BAD_USER_INPUT."""


def request_routing(headers: Any, *, default_staleness_ms: int) -> RequestRouting:
    """Read X-Max-Staleness-Ms and X-Consistency-Token; a malformed value is an error, never ignored."""
    staleness = default_staleness_ms
    raw = headers.get(MAX_STALENESS_HEADER)
    if raw is not None:
        if not raw.strip().isdigit() or len(raw.strip()) > 9:
            raise HeaderError("X-Max-Staleness-Ms must be a whole number of milliseconds")
        staleness = int(raw.strip())
    min_lsn = None
    token = headers.get(CONSISTENCY_HEADER)
    if token is not None and token.strip():
        try:
            min_lsn = decode_token(token.strip())
        except ValueError:
            raise HeaderError("X-Consistency-Token is not a token this gateway issued") from None
    return RequestRouting(max_staleness_ms=staleness, min_lsn=min_lsn)


def shape_error(error: GraphQLError) -> dict[str, Any]:
    """The client's view of one error: the message and code, or a masked internal error."""
    code = client_code(error)
    if code is None:
        shaped: dict[str, Any] = {"message": "internal error", "extensions": {"code": INTERNAL}}
    else:
        shaped = dict(error.formatted)
        extensions = dict(shaped.get("extensions") or {})
        extensions["code"] = code or BAD_USER_INPUT
        shaped["extensions"] = extensions
    if error.path:
        shaped["path"] = list(error.path)
    return shaped


class GatewayGraphQL(GraphQL[Context, None]):
    """Strawberry's ASGI view with the gateway's context and response shaping."""

    def __init__(
        self,
        schema: Any,
        *,
        settings: Settings,
        router_ref: dict[str, Router],
        cache: ResultCache | None = None,
        tracer: Any = None,
        queryids: QueryIds | None = None,
        metrics: Metrics | None = None,
        search_log: SearchLog | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(schema, **kwargs)
        self._settings = settings
        self._router_ref = router_ref
        self._cache = cache
        self._tracer = tracer
        self._queryids = queryids
        self._metrics = metrics
        self._search_log = search_log
        self._codec = CursorCodec(settings.cursor_key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Strawberry's handler, except that its HTTP-level refusals (malformed JSON, an unknown operation
        name, an unsupported content type) come back as GraphQL errors with a code, not as plain text."""
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        try:
            response = await self.run(Request(scope=scope, receive=receive))
        except HTTPException as exc:
            code = BAD_USER_INPUT if exc.status_code < 500 else INTERNAL
            response = error_response(exc.reason, code, exc.status_code, trace_id=scope.get("gateway.trace_id"))
        await response(scope, receive, send)

    async def render_graphql_ide(self, request: Request) -> Response:
        """GraphiQL for a browser, from this server's own assets (Strawberry's page loads them from a CDN)."""
        return HTMLResponse(graphiql_html(), headers=PAGE_HEADERS)

    async def get_context(self, request: Any, response: Any) -> Context:
        routing = request.scope.get("gateway.routing") or RequestRouting(
            max_staleness_ms=self._settings.max_staleness_ms
        )
        ctx = Context(router=self._router_ref.get("router"), routing=routing, codec=self._codec)
        if self._cache is not None:
            ctx.cache = self._cache
            ctx.after_write = self._cache.bump
        ctx.tracer = self._tracer
        ctx.queryids = self._queryids
        ctx.sql_comments = self._settings.sql_comments
        if self._search_log is not None:
            ctx.on_search = self._search_log.record
        viewer = request.scope.get("gateway.viewer")
        if isinstance(viewer, Viewer):
            ctx.viewer = viewer
        request.scope["gateway.context"] = ctx
        return ctx

    async def process_result(self, request: Request, result: ExecutionResult) -> GraphQLHTTPResponse:
        body: GraphQLHTTPResponse = {"data": result.data}
        if result.errors:
            body["errors"] = [shape_error(e) for e in result.errors]
        extensions: dict[str, Any] = dict(result.extensions or {})
        ctx = request.scope.get("gateway.context")
        if isinstance(ctx, Context):
            if self._settings.routing_metadata and ctx.routing.decisions:
                extensions["routing"] = [
                    {
                        "node": d.node,
                        "role": d.role,
                        "lagMs": d.lag_ms,
                        "waitedMs": d.waited_ms,
                        "retried": d.retried,
                    }
                    for d in ctx.routing.decisions
                ]
            extensions["statements"] = ctx.statements
            if ctx.consistency_token:
                extensions["consistencyToken"] = ctx.consistency_token
        trace_id = request.scope.get("gateway.trace_id")
        if trace_id:
            extensions["traceId"] = trace_id
        if self._metrics is not None:
            codes = [str(e["extensions"]["code"]) for e in body.get("errors") or []]  # type: ignore[index]
            started = request.scope.get("gateway.started")
            self._metrics.observe(
                operation=(ctx.operation_name if isinstance(ctx, Context) else None) or "",
                outcome="error" if codes else "ok",
                seconds=(time.perf_counter() - started) if isinstance(started, float) else 0.0,
                statements=ctx.statements if isinstance(ctx, Context) else 0,
                codes=codes,
                trace_id=str(trace_id or ""),
            )
        if extensions:
            body["extensions"] = extensions
        return body


def error_response(message: str, code: str, status: int, *, trace_id: str | None = None) -> Response:
    """A GraphQL-shaped error for failures before execution (headers, body size), with the trace id."""
    payload: dict[str, Any] = {"data": None, "errors": [{"message": message, "extensions": {"code": code}}]}
    if trace_id:
        payload["extensions"] = {"traceId": trace_id}
    return Response(json.dumps(payload), status_code=status, media_type="application/json")
