"""A stoppable TCP proxy on 127.0.0.1 for fault injection (after psycopg_pool's own test proxy).

Put it between a client and a server, then ``kill_connections()`` to cut every open connection mid-stream
(the client sees "server closed the connection unexpectedly"), ``stop()`` to also refuse new ones, and
``start()`` again to serve on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from types import TracebackType


class FaultProxy:
    def __init__(self, target_host: str, target_port: int, *, listen_port: int = 0) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = listen_port  # 0 until the first start() picks a free one; then kept across restarts
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def running(self) -> bool:
        return self._server is not None

    def dsn(self, dsn: str) -> str:
        """``dsn`` (libpq key=value form) with its host and port pointing at this proxy."""
        dsn = re.sub(r"\bhost=\S+", "host=127.0.0.1", dsn)
        return re.sub(r"\bport=\d+", f"port={self.port}", dsn)

    async def start(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and cut every open connection."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self.kill_connections()
        if server is not None:
            await server.wait_closed()
        await self._settle()

    def kill_connections(self) -> None:
        """Cut every open connection at once, in both directions, without a goodbye."""
        for writer in list(self._writers):
            writer.transport.abort()

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _settle(self) -> None:
        # Let the pumps of aborted connections notice and finish.
        for _ in range(50):
            if not self._tasks:
                return
            await asyncio.sleep(0.01)

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(client_w)
        server_w: asyncio.StreamWriter | None = None
        try:
            try:
                server_r, server_w = await asyncio.open_connection(self.target_host, self.target_port)
            except OSError:
                return
            self._writers.add(server_w)
            await asyncio.gather(self._pump(client_r, server_w), self._pump(server_r, client_w))
        finally:
            for w in (client_w, server_w):
                if w is not None:
                    self._writers.discard(w)
                    w.transport.abort()
            self._tasks.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # One direction ended: end the other too, as a real server going away would.
            with contextlib.suppress(Exception):
                writer.transport.abort()
