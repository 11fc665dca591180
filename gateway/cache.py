"""The search result cache (aiocache over Redis, or in-process memory when no Redis is configured).

What it guarantees:

* Keys are a hash of the normalised search (query, filter, order, page size, cursor) plus a *data generation*
  number that every write bumps, so a write retires every cached page at once.
* Each entry records a lower bound of the WAL position its rows were read at. A reader that carries a
  consistency token is only served an entry at or past the token's position; the generation alone cannot
  promise that, because a reader that started after the bump may still have read a lagging replica.
* Concurrent identical misses in one process run one query between them (single flight).
* Redis is an optimisation, never a dependency: every Redis call has a short timeout, and on any failure the
  request goes straight to the database and a counter records the bypass.
* Values are JSON (aiocache's JsonSerializer), never pickle: nothing read back from Redis can run code.

Automatic persisted queries are not kept here (see ``gateway.persisted``): they must never compete with results
for the store's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiocache import RedisCache, SimpleMemoryCache
from aiocache.serializers import JsonSerializer
from opentelemetry import trace
from redis.exceptions import MaxConnectionsError

log = logging.getLogger("gateway.cache")


@dataclasses.dataclass
class CacheStats:
    """Counters exported on /metrics."""

    hits: int = 0
    misses: int = 0
    stale_for_token: int = 0
    bypassed: int = 0
    stores: int = 0
    shared_flights: int = 0
    bumps_pending: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def _backend(redis_url: str, timeout_s: float) -> Any:
    if not redis_url:
        return SimpleMemoryCache(serializer=JsonSerializer(), namespace="civic", timeout=timeout_s)
    url = urllib.parse.urlparse(redis_url)
    db = int(url.path.lstrip("/") or 0)
    return RedisCache(
        serializer=JsonSerializer(),
        namespace="civic",
        timeout=timeout_s,
        endpoint=url.hostname or "127.0.0.1",
        port=url.port or 6379,
        db=db,
        password=url.password,
        create_connection_timeout=timeout_s,
    )


class ResultCache:
    """Search pages, keyed as the module docstring says."""

    def __init__(
        self,
        *,
        redis_url: str = "",
        ttl_s: float = 60.0,
        timeout_s: float = 0.1,
        cooldown_s: float = 5.0,
        enabled: bool = True,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self.enabled = enabled and ttl_s > 0
        self.ttl_s = float(ttl_s)
        self.kind = "redis" if redis_url else "memory"
        self._store = _backend(redis_url, timeout_s)
        self._timeout_s = timeout_s
        self._flights: dict[str, asyncio.Future[Any]] = {}
        self._down_until = 0.0
        self._tracer = tracer or trace.get_tracer("civic.cache", tracer_provider=trace.NoOpTracerProvider())
        self.cooldown_s = cooldown_s
        self.stats = CacheStats()
        self._pending_bumps = 0

    @property
    def redis_client(self) -> Any:
        """The redis-py client under the store (None for the in-process memory store)."""
        return getattr(self._store, "client", None) if self.kind == "redis" else None

    async def close(self) -> None:
        # aiocache's close() runs under the (tiny) per-operation timeout and calls redis-py's deprecated
        # close(); close the client and its pool ourselves so no connection outlives the app.
        client = getattr(self._store, "client", None)
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    # --- guarded store access: every failure is a bypass, never an error -----------------------------------

    async def _call(self, op: Callable[[], Awaitable[Any]]) -> tuple[bool, Any]:
        if time.monotonic() < self._down_until:
            # A store that just failed is skipped outright for a moment: a hanging Redis then costs one
            # timeout per cool-down, not one per request.
            self.stats.bypassed += 1
            return False, None
        try:
            return True, await op()
        except asyncio.CancelledError:
            raise
        except MaxConnectionsError:
            # This process's own connection pool is busy: the store is fine. Bypass this call only; a crowd
            # must never switch the cache off for everyone else.
            self.stats.bypassed += 1
            return False, None
        except Exception as exc:  # Redis down, slow (aiocache timeout) or confused: go to the database
            self.stats.bypassed += 1
            self._down_until = time.monotonic() + self.cooldown_s
            log.warning(
                "cache bypassed for %.0f s: %s: %s", self.cooldown_s, type(exc).__name__, str(exc)[:200]
            )
            return False, None

    async def _settled(self) -> bool:
        """Whether reads may use the store: no write of this process is still waiting to retire entries.

        A write whose generation bump failed (the store was away) leaves entries that predate it. Until the bump
        lands, this process reads nothing from the store, and every read retries the bump first, so the first
        read after the store comes back retires them before anything is served.
        """
        if not self._pending_bumps:
            return True
        ok, _ = await self._call(lambda: self._store.increment("gen", 1))
        if ok:
            self._pending_bumps = 0
            log.info(
                "cache generation bumped after the store came back: entries older than the write are retired"
            )
        return ok

    async def generation(self) -> int | None:
        if not await self._settled():
            return None
        ok, value = await self._call(lambda: self._store.get("gen", default=0))
        return int(value) if ok and value is not None else None

    async def generation_and(self, key: str) -> tuple[int | None, Any]:
        """The data generation and one stored value, in one round trip: (None, None) when the store is away.

        On the hot path of every cached read, so with Redis it talks to redis-py directly (under the same
        timeout and guard): aiocache's per-call timeout wraps each call in a task of its own.
        """
        if not await self._settled():
            return None, None
        client = self.redis_client
        if client is not None:
            ok, raw = await self._call(lambda: self._direct(client.mget([self._key("gen"), self._key(key)])))
            values = (
                [raw[0], orjson.loads(raw[1]) if ok and raw and raw[1] is not None else None] if ok else None
            )
        else:
            ok, values = await self._call(lambda: self._store.multi_get(["gen", key]))
        if not ok or not isinstance(values, list) or len(values) != 2:
            return None, None
        gen = values[0]
        return (int(gen) if gen is not None else 0), values[1]

    async def put(self, key: str, value: Any, *, ttl_s: float) -> bool:
        """Store a JSON value (a guarded call: False when the store is away); read back by generation_and."""
        client = self.redis_client
        if client is not None:
            data = orjson.dumps(value)
            stored, _ = await self._call(
                lambda: self._direct(client.set(self._key(key), data, px=int(ttl_s * 1000)))
            )
        else:
            stored, _ = await self._call(lambda: self._store.set(key, value, ttl=ttl_s))
        return bool(stored)

    def _key(self, key: str) -> str:
        return f"civic:{key}"

    async def _direct(self, call: Awaitable[Any]) -> Any:
        async with asyncio.timeout(self._timeout_s):
            return await call

    async def bump(self) -> None:
        """Retire every cached entry: called after each committed write.

        When the store cannot be reached the bump is remembered, and retried before any later read of this
        process (see :meth:`_settled`) and by :meth:`run_pending` in the background, so other processes see it
        as soon as the store answers again.
        """
        ok, _ = await self._call(lambda: self._store.increment("gen", 1))
        if not ok:
            self._pending_bumps += 1
            self.stats.bumps_pending += 1

    async def run_pending(self, *, interval_s: float = 0.5) -> None:
        """Retry a failed bump every ``interval_s`` until cancelled (other processes wait on it)."""
        while True:
            await asyncio.sleep(interval_s)
            if self._pending_bumps and time.monotonic() >= self._down_until:
                await self._settled()

    # --- search pages ------------------------------------------------------------------------------------------

    async def get_or_compute(
        self,
        parts: list[Any],
        *,
        min_lsn: int | None,
        compute: Callable[[], Awaitable[tuple[Any, int | None]]],
    ) -> Any:
        """The cached value for ``parts``, or ``compute()``'s (value, data LSN), stored for the next reader."""
        if not self.enabled:
            value, _ = await compute()
            return value
        gen = await self.generation()
        if gen is None:
            value, _ = await compute()
            return value
        key = hashlib.sha256(
            json.dumps([gen, *parts], default=str, separators=(",", ":")).encode()
        ).hexdigest()
        with self._tracer.start_as_current_span("cache get") as span:
            span.set_attribute("cache.backend", self.kind)
            ok, entry = await self._call(lambda: self._store.get(f"s:{key}"))
            outcome = "bypass" if not ok else "miss"
            if ok and isinstance(entry, dict):
                lsn = entry.get("lsn")
                if min_lsn is None or (isinstance(lsn, int) and lsn >= min_lsn):
                    outcome = "hit"
                else:
                    outcome = "stale_for_token"
                    self.stats.stale_for_token += 1
            span.set_attribute("cache.hit", outcome == "hit")
            span.set_attribute("cache.outcome", outcome)
        if outcome == "hit":
            self.stats.hits += 1
            return entry.get("value")
        self.stats.misses += 1
        # A reader with a token may not share a flight with one without: the latter may read a lagging node.
        flight = f"{key}:{min_lsn}"
        pending = self._flights.get(flight)
        if pending is not None:
            self.stats.shared_flights += 1
            return await asyncio.shield(pending)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._flights[flight] = future
        try:
            value, lsn = await compute()
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved here, so an unshared failure is not logged as "never retrieved"
            raise
        finally:
            self._flights.pop(flight, None)
        future.set_result(value)
        with self._tracer.start_as_current_span("cache set") as span:
            stored, _ = await self._call(
                lambda: self._store.set(f"s:{key}", {"lsn": lsn, "value": value}, ttl=self.ttl_s)
            )
            span.set_attribute("cache.stored", stored)
        if stored:
            self.stats.stores += 1
        return value
