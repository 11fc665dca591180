"""The sampled search log: a fraction of searches, written in batches off the request path.

Searches are sampled (``GATEWAY_SEARCH_LOG_SAMPLE``, 10 % by default) into a bounded in-memory buffer, and a
background task writes the buffer to the primary every few seconds in one INSERT. A request never waits
for it, and when the primary is away the batch is dropped (popularity is statistics, not a record).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

import psycopg

from routing import Router

log = logging.getLogger("gateway.search_log")
MAX_BUFFER = 10_000


class SearchLog:
    """Collects sampled queries and flushes them in batches."""

    def __init__(self, *, sample: float = 0.1, flush_interval_s: float = 5.0, rng: random.Random | None = None) -> None:
        self.sample = sample
        self.flush_interval_s = flush_interval_s
        self._buffer: list[str] = []
        self._rng = rng or random.Random()  # noqa: S311 - sampling, not security
        self.dropped = 0
        self.written = 0

    def record(self, query: str) -> None:
        """Maybe keep ``query`` (already validated and normalised by the schema)."""
        if self.sample <= 0 or self._rng.random() >= self.sample:
            return
        if len(self._buffer) >= MAX_BUFFER:
            self.dropped += 1
            return
        self._buffer.append(query.lower())

    async def flush(self, router: Router) -> int:
        batch, self._buffer = self._buffer, []
        if not batch:
            return 0

        async def insert(conn: psycopg.AsyncConnection[Any]) -> None:
            await conn.execute("INSERT INTO public.search_log (query) SELECT unnest(%s::text[])", [batch])

        try:
            await router.write(insert)
        except Exception as exc:  # the primary is away: statistics may lose a batch, requests lose nothing
            self.dropped += len(batch)
            log.info("search log batch of %d dropped: %s", len(batch), type(exc).__name__)
            return 0
        self.written += len(batch)
        return len(batch)

    async def run(self, router: Router) -> None:
        """Flush forever; cancelled by the app's lifespan (which flushes once more)."""
        while True:
            await asyncio.sleep(self.flush_interval_s)
            with contextlib.suppress(Exception):
                await self.flush(router)
