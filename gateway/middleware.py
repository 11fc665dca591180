"""Pure-ASGI checks that run before GraphQL: body size, routing headers and the trace id.

They answer with a GraphQL-shaped JSON error (and the contract's codes) instead of a bare HTTP error, so
clients handle every failure the same way.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.auth import TokenStore
from gateway.graphql_app import HeaderError, error_response, request_routing
from gateway.settings import Settings
from schema.errors import BAD_USER_INPUT


class BodyTooLarge(Exception):
    pass


class GatewayMiddleware:
    """Limits the request body, reads routing headers into the scope, and assigns a trace id."""

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.tokens = TokenStore.parse(settings.write_tokens)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        trace_id = scope.get("gateway.trace_id")
        limit = self.settings.max_body_bytes
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await error_response(
                f"request body larger than {limit} bytes", BAD_USER_INPUT, 413, trace_id=trace_id
            )(scope, receive, send)
            return
        if scope.get("path") == "/graphql":
            scope["gateway.viewer"] = self.tokens.viewer(headers.get("authorization"))
            try:
                scope["gateway.routing"] = request_routing(
                    headers, default_staleness_ms=self.settings.max_staleness_ms
                )
            except HeaderError as exc:
                await error_response(str(exc), BAD_USER_INPUT, 400, trace_id=trace_id)(scope, receive, send)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
            return message

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await error_response(
                    f"request body larger than {limit} bytes", BAD_USER_INPUT, 413, trace_id=trace_id
                )(scope, receive, send)
