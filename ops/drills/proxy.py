"""A stoppable TCP proxy on loopback, for cutting one node's Patroni off from etcd (the etcd-cut drill).

It runs its own event loop in a daemon thread, so it forwards before, during and after the drill's load, and
``cut()`` from any thread closes the listener and every open connection at once: the node's Patroni then gets
connection refused from etcd while every other member still reaches it directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading


class EtcdCutProxy:
    """Forward ``127.0.0.1:<port>`` to ``127.0.0.1:<target_port>`` until :meth:`cut`."""

    def __init__(self, target_port: int, *, port: int) -> None:
        self.target_port = target_port
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="etcd-cut-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def __enter__(self) -> EtcdCutProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.close()
            return
        self._writers.update((client_w, up_w))
        try:
            await asyncio.gather(self._pipe(client_r, up_w), self._pipe(up_r, client_w))
        finally:
            self._writers.difference_update((client_w, up_w))

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            # An abort, not a polite close: the far side sees a reset, as when a network path dies.
            writer.transport.abort()
        self._writers.clear()

    def cut(self) -> None:
        """Refuse new connections and drop the open ones (idempotent)."""
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._cut(), self._loop).result(timeout=10)
