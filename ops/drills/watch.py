"""What happened when: the drill's clock, its events, and the gateway's ``/readyz`` polled ten times a second."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import httpx

from ops.bench import loadgen


@dataclasses.dataclass(frozen=True)
class Event:
    t: float
    what: str
    detail: str


@dataclasses.dataclass(frozen=True)
class Readiness:
    """One answer of /readyz: which node is the primary and which nodes are healthy.

    ``t`` is when the request was sent and ``latency_s`` how long the answer took: the gateway reported this
    state somewhere in between, so under heavy load the latency is the precision of the times derived from it.
    """

    t: float
    status: int | None
    primary: str | None
    healthy: dict[str, bool]
    roles: dict[str, str]
    lag_s: dict[str, float | None] = dataclasses.field(default_factory=dict)
    latency_s: float | None = None


class Clock:
    """Seconds since the load started, and the log of the drill's own actions on the same clock."""

    def __init__(self, t0: float, *, echo: bool) -> None:
        self.t0 = t0
        self.events: list[Event] = []
        self._echo = echo

    def now(self) -> float:
        return time.monotonic() - self.t0

    def mark(self, what: str, detail: str = "") -> float:
        t = self.now()
        self.events.append(Event(round(t, 3), what, detail))
        if self._echo:
            print(f"  t={t:6.2f}s  {what}: {detail}", flush=True)
        return t

    def first(self, what: str) -> float | None:
        return next((e.t for e in self.events if e.what == what), None)

    async def sleep_until(self, t: float) -> None:
        await asyncio.sleep(max(0.0, t - self.now()))


async def watch_readyz(
    url: str, clock: Clock, stop: asyncio.Event, *, interval_s: float = 0.1, limit_s: float = 7200.0
) -> list[Readiness]:
    """Poll /readyz until ``stop`` is set (or ``limit_s`` passes); every answer is kept."""
    seen: list[Readiness] = []
    # A generous timeout: an overloaded gateway answers late, and a late answer is still an answer.
    async with httpx.AsyncClient(base_url=url, timeout=5.0) as http:
        for _ in range(int(limit_s / interval_s)):
            if stop.is_set():
                break
            t = clock.now()
            try:
                resp = await http.get("/readyz")
                body = resp.json()
                nodes = body.get("nodes") or []
                healthy = {str(n["name"]): bool(n["healthy"]) for n in nodes}
                roles = {str(n["name"]): str(n["role"]) for n in nodes}
                lag = {str(n["name"]): n.get("lagSeconds") for n in nodes}
                primary = next((n["name"] for n in nodes if n["role"] == "primary" and n["healthy"]), None)
                latency = round(clock.now() - t, 3)
                seen.append(Readiness(round(t, 3), resp.status_code, primary, healthy, roles, lag, latency))
            except (httpx.HTTPError, ValueError, KeyError, TypeError):
                seen.append(Readiness(round(t, 3), None, None, {}, {}))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval_s):
                    await stop.wait()
    return seen


def readiness_changes(seen: Sequence[Readiness]) -> list[dict[str, Any]]:
    """Only the /readyz answers that differ from the one before: the transitions, for the report."""
    out: list[dict[str, Any]] = []
    last: tuple[Any, ...] | None = None
    for r in seen:
        key = (r.status, r.primary, tuple(sorted(r.healthy.items())), tuple(sorted(r.roles.items())))
        if key != last:
            healthy = sorted(n for n, ok in r.healthy.items() if ok)
            out.append(
                {
                    "t": r.t,
                    "status": r.status,
                    "primary": r.primary,
                    "healthy": healthy,
                    "roles": r.roles,
                    "lag_s": r.lag_s,
                }
            )
            last = key
    return out


@dataclasses.dataclass
class RunData:
    result: loadgen.LoadResult
    readiness: list[Readiness]
    clock: Clock
