"""Per-client rate limits: fixed one-minute windows counted in Redis, shared by every worker and instance.

A client is its bearer token when it sends one (the token's hash, never the token), else its address; a
forwarded address (``X-Forwarded-For``) is believed only from a configured trusted proxy, so nobody can pick
another client's budget by sending the header. Reads and writes have separate budgets.

Asking Redis on every request would add a round trip to every request, cache hits included. Instead each
process counts locally and adds its counts to Redis every ``sync_interval_s`` (one pipelined round trip for all
clients), reading back the totals of all processes. A decision is made on the last known total plus what
this process has counted since: at most ``sync_interval_s`` of other processes' traffic can go unseen. When
Redis is away the local counts alone decide: a per-process limiter takes over.

The IETF ``RateLimit-Policy`` and ``RateLimit`` headers (draft-ietf-httpapi-ratelimit-headers, structured
fields) go on every response; over the limit the answer is HTTP 429 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import ipaddress
import logging
import time
from typing import Any, Literal

log = logging.getLogger("gateway.ratelimit")
Kind = Literal["read", "write"]
WINDOW_S = 60
RECENT_S = 5.0


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on one request and the headers that tell the client where it stands."""

    allowed: bool
    kind: Kind
    limit: int
    remaining: int
    reset_s: int

    def headers(self) -> dict[str, str]:
        policy = "reads" if self.kind == "read" else "writes"
        out = {
            "RateLimit-Policy": f'"{policy}";q={self.limit};w={WINDOW_S}',
            "RateLimit": f'"{policy}";r={self.remaining};t={self.reset_s}',
        }
        if not self.allowed:
            out["Retry-After"] = str(max(1, self.reset_s))
        return out


def _networks(raw: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(p.strip(), strict=False) for p in raw.split(",") if p.strip())


class RateLimiter:
    """Counts requests per client and kind in the current window; see the module docstring."""

    def __init__(
        self,
        *,
        reads_per_minute: int,
        writes_per_minute: int,
        redis: Any = None,
        trusted_proxies: str = "",
        sync_interval_s: float = 0.2,
        enabled: bool = True,
    ) -> None:
        self.enabled = enabled
        self._limits: dict[Kind, int] = {"read": reads_per_minute, "write": writes_per_minute}
        self._redis = redis
        self._trusted = _networks(trusted_proxies)
        self.sync_interval_s = sync_interval_s
        self._pending: dict[tuple[Kind, str, int], int] = {}
        self._known: dict[tuple[Kind, str, int], int] = {}
        # Keys checked lately: their totals are refreshed at every sync even with nothing to add, so a process
        # learns of other processes' traffic for the clients it is serving now.
        self._recent: dict[tuple[Kind, str, int], float] = {}
        self.refused = 0

    def client_key(self, *, token_hash: str | None, peer: str | None, forwarded_for: str | None) -> str:
        """Who a request counts against."""
        if token_hash:
            return "t:" + token_hash[:32]
        address = peer or "unknown"
        if forwarded_for and peer and self._trusted:
            with contextlib.suppress(ValueError):
                if any(ipaddress.ip_address(peer) in net for net in self._trusted):
                    # The last address the trusted proxy appended is the one that connected to it.
                    address = forwarded_for.split(",")[-1].strip()[:64] or address
        return "a:" + address

    def check(self, client: str, kind: Kind) -> Decision:
        """Count one request of ``client`` and say whether it may go on."""
        limit = self._limits[kind]
        now = time.time()
        window = int(now // WINDOW_S)
        reset_s = int((window + 1) * WINDOW_S - now) + 1
        key = (kind, client, window)
        if not self.enabled:
            # Nothing is counted, so nothing is synced either: the headers show the whole budget.
            return Decision(allowed=True, kind=kind, limit=limit, remaining=limit, reset_s=reset_s)
        self._recent[key] = now
        used = self._known.get(key, 0) + self._pending.get(key, 0)
        if used >= limit:
            self.refused += 1
            return Decision(allowed=False, kind=kind, limit=limit, remaining=0, reset_s=reset_s)
        self._pending[key] = self._pending.get(key, 0) + 1
        return Decision(allowed=True, kind=kind, limit=limit, remaining=max(0, limit - used - 1), reset_s=reset_s)

    async def sync(self) -> None:
        """Add this process's counts to Redis and read back every process's totals (one round trip)."""
        now = time.time()
        window = int(now // WINDOW_S)
        for key in [k for k in self._known if k[2] < window]:
            del self._known[key]
        for key in [k for k, at in self._recent.items() if k[2] < window or now - at > RECENT_S]:
            del self._recent[key]
        pending, self._pending = self._pending, {}
        for key in [k for k in pending if k[2] < window]:
            del pending[key]
        if self._redis is None:
            self._merge_locally(pending)
            return
        keys = list({*pending, *self._recent})
        if not keys:
            return
        try:
            pipe = self._redis.pipeline(transaction=False)
            for kind, client, win in keys:
                name = "civic:rl:" + hashlib.sha256(f"{kind}|{client}|{win}".encode()).hexdigest()[:40]
                pipe.incrby(name, pending.get((kind, client, win), 0))
                pipe.expire(name, WINDOW_S * 2)
            results = await pipe.execute()
        except asyncio.CancelledError:
            self._merge_locally(pending)
            raise
        except Exception as exc:  # Redis away: this process's own counts decide until it is back
            log.debug("rate limit sync skipped: %s", type(exc).__name__)
            self._merge_locally(pending)
            return
        for i, key in enumerate(keys):
            self._known[key] = int(results[2 * i])

    def _merge_locally(self, pending: dict[tuple[Kind, str, int], int]) -> None:
        for key, count in pending.items():
            self._known[key] = self._known.get(key, 0) + count

    async def run(self) -> None:
        """Sync every ``sync_interval_s`` until cancelled (nothing to do when the limits are off)."""
        if not self.enabled:
            return
        while True:
            await asyncio.sleep(self.sync_interval_s)
            await self.sync()
