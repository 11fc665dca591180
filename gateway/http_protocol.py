"""uvicorn's httptools protocol with deadlines for a request's head and body.

uvicorn closes idle keep-alive connections, but a client that sends half a request head (or a body slower
than a byte a minute) holds its connection, and a slot of the worker, for as long as it likes. Here the head
must be complete within ``GATEWAY_HTTP_HEAD_TIMEOUT_S`` of the connection opening or of the request's first
byte, and the body within ``GATEWAY_HTTP_BODY_TIMEOUT_S`` of the head; past either, the connection is closed.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

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
        super().on_headers_complete()
        self._arm(self.body_timeout_s)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()
