"""uvicorn's httptools protocol with deadlines for a request's head and body, and early overload refusals.

uvicorn closes idle keep-alive connections, but a client that sends half a request head (or a body slower
than a byte a minute) holds its connection, and a slot of the worker, for as long as it likes. Here the head
must be complete within ``GATEWAY_HTTP_HEAD_TIMEOUT_S`` of the connection opening or of the request's first
byte, and the body within ``GATEWAY_HTTP_BODY_TIMEOUT_S`` of the head; past either, the connection is closed.

When the worker's admission control is full (``gateway.admission``), a request for ``/graphql`` is refused in
the parser's callback that completes its head: the 503 goes out from the same turn of the event loop that read
the bytes, with no task, routing or middleware made for it, and its body is read and dropped. It carries the
request's ids (``X-Request-Id``, ``extensions.traceId``) and gets its access-log line, like any response. The connection
stays open for the client's next request unless it asked otherwise. ``/healthz`` and the other paths are never
refused here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.admission import installed
from gateway.logs import ACCESS_LOGGER, REQUEST_IDS, request_id

access_log = logging.getLogger(ACCESS_LOGGER)

_TRACEPARENT = re.compile(rb"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
HEAD_TIMEOUT_ENV = "GATEWAY_HTTP_HEAD_TIMEOUT_S"
BODY_TIMEOUT_ENV = "GATEWAY_HTTP_BODY_TIMEOUT_S"


def _seconds(name: str, default: float) -> float:
    try:
        return max(0.1, float(os.environ.get(name, default)))
    except ValueError:
        return default


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol plus head and body deadlines (read from the environment, set by ``serve``)."""

    head_timeout_s = _seconds(HEAD_TIMEOUT_ENV, 10.0)
    body_timeout_s = _seconds(BODY_TIMEOUT_ENV, 30.0)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._dropping = False  # the current request was refused: its body is read and dropped

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.head_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm(self.head_timeout_s)

    def on_headers_complete(self) -> None:
        if self._refuse_early():
            self._arm(self.body_timeout_s)
            return
        super().on_headers_complete()
        self._arm(self.body_timeout_s)

    def on_body(self, body: bytes) -> None:
        if not self._dropping:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        if self._dropping:
            self._dropping = False
            if not self.transport.is_closing():
                # As after any response: count it, resume reading, arm the keep-alive timeout.
                self.on_response_complete()
            return
        super().on_message_complete()

    def _trace_id(self) -> bytes:
        """The client's W3C trace id when it sent a valid ``traceparent``, else a new one: every response
        carries ``extensions.traceId``, a refusal included (no span is recorded for it)."""
        for name, value in self.headers:
            if name == b"traceparent":
                match = _TRACEPARENT.match(value.strip().lower())
                if match and match.group(1) != b"0" * 32:
                    return match.group(1)
        return secrets.token_hex(16).encode()

    def _refuse_early(self) -> bool:
        """Answer 503 now if the worker is full and this is a GraphQL request on an idle connection."""
        current = installed()
        if current is None or not self.url.startswith(b"/graphql"):
            return False
        admission, head, errors = current
        if not admission.full():
            return False
        if admission.priority is not None:
            authorization = next((v for n, v in self.headers if n == b"authorization"), None)
            if authorization is not None and admission.priority(authorization.decode("latin-1")):
                return False  # a writer is never refused for a crowd of readers (gateway.admission)
        if self.cycle is not None and not self.cycle.response_complete:
            return False  # a pipelined request behind one still running: leave the ordering to uvicorn
        admission.refuse("protocol")
        keep_alive = self.parser.get_http_version() == "1.1" and self.parser.should_keep_alive()
        connection = b"connection: keep-alive\r\n" if keep_alive else b"connection: close\r\n"
        trace_id = self._trace_id()
        given = next((v for n, v in self.headers if n == b"x-request-id"), b"")
        rid = request_id(given.decode("latin-1")).encode()
        body = b'{"errors":' + errors + b',"extensions":{"traceId":"' + trace_id + b'"}}'
        self.transport.write(
            head + b"content-length: %d\r\nx-request-id: %s\r\n" % (len(body), rid) + connection + b"\r\n" + body
        )
        self._dropping = True
        if not keep_alive:
            self.transport.close()
        if access_log.isEnabledFor(logging.INFO):
            self._log_refusal(trace_id.decode(), rid.decode(), len(body))
        return True

    def _log_refusal(self, trace_id: str, rid: str, size: int) -> None:
        """The access line of a refusal, with the fields the request middleware writes for any response."""
        # uvicorn fills the scope's method and path only when it handles the head, which a refusal skips.
        method = self.parser.get_method().decode("ascii", "replace")
        path = self.url.split(b"?", 1)[0].decode("ascii", "replace")
        client = self.client
        token = REQUEST_IDS.set((trace_id, rid))
        try:
            access_log.info(
                "%s %s %s",
                method,
                path,
                503,
                extra={
                    "http.request.method": method,
                    "url.path": path,
                    "http.response.status_code": 503,
                    "http.response.body.size": size,
                    "duration_ms": 0.0,
                    "client.address": client[0] if client else "",
                    "civic.refused": "protocol",
                },
            )
        finally:
            REQUEST_IDS.reset(token)
