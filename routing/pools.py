"""One request pool per node, and the count of calls in flight on it (the read chooser's load signal)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

__all__ = ["NodePool", "connection_kwargs"]


def connection_kwargs(connect_timeout: float) -> dict[str, Any]:
    """Connection settings every routed connection needs behind PgBouncer in transaction mode."""
    return {
        # PgBouncer (1.18) in transaction mode cannot carry named prepared statements across transactions.
        "prepare_threshold": None,
        # Reads are single statements: in autocommit each is its own transaction, one round trip instead of
        # three (BEGIN, the statement, COMMIT). Writes open an explicit transaction (conn.transaction()).
        "autocommit": True,
        # libpq takes whole seconds (and psycopg enforces at least 2).
        "connect_timeout": max(1, math.ceil(connect_timeout)),
    }


class NodePool:
    """A ``psycopg_pool.AsyncConnectionPool`` for one node, counting the calls that use it.

    Built closed; :meth:`open` and :meth:`close` are called by the router.
    """

    def __init__(
        self,
        name: str,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 3.0,
        pool_timeout: float = 5.0,
        max_lifetime: float = 3600.0,
        max_idle: float = 300.0,
        max_waiting: int = 0,
    ) -> None:
        self.name = name
        #: Calls that hold or wait for a connection of this node now.
        self.in_flight = 0
        self._pool = AsyncConnectionPool(
            dsn,
            kwargs=connection_kwargs(connect_timeout),
            min_size=min_size,
            max_size=max_size,
            timeout=pool_timeout,
            max_lifetime=max_lifetime,
            max_idle=max_idle,
            max_waiting=max_waiting,
            name=f"routing-{name}",
            open=False,
        )

    async def open(self) -> None:
        # Do not wait for min_size connections: a node that is down at start-up must not stop the router from
        # serving with the others. The pool keeps trying in the background.
        await self._pool.open(wait=False)

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def connection(self, timeout: float | None = None) -> AsyncIterator[psycopg.AsyncConnection[Any]]:  # noqa: ASYNC109 (as psycopg_pool)
        """Borrow a connection, waiting at most ``timeout`` s for one (the pool's timeout when None); it goes
        back to the pool however the block ends, cancellation included."""
        self.in_flight += 1
        try:
            async with self._pool.connection(timeout=timeout) as conn:
                yield conn
        finally:
            self.in_flight -= 1

    async def check(self) -> None:
        """Drop idle connections that no longer work (after an outage), replacing them in the background."""
        await self._pool.check()

    def stats(self) -> dict[str, int]:
        return self._pool.get_stats()
