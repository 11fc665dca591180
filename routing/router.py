"""The router: reads to a fresh-enough replica, writes to the primary, one transaction per call.

It owns one request pool per node and the health monitor, and it is the boundary where pool and connection
failures become :mod:`routing.errors`; errors of the statement itself reach the caller unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from types import TracebackType
from typing import LiteralString

import psycopg
import psycopg.errors

from routing.choice import Candidate, ReadChoice, choose_read, laggards
from routing.errors import NoPrimaryError, OverloadedError, RoutingError, UnavailableError, describe
from routing.events import RouterEvents
from routing.monitor import HealthMonitor
from routing.pools import NodePool
from routing.retry import Failure, RetryPolicy, classify
from routing.types import NodeState, ReadFn, RequestRouting, RouteInfo, RouterConfig, T

__all__ = ["Router"]

logger = logging.getLogger("routing")

# Read after the commit, so every replica that has replayed this position has replayed the write. The
# position is a byte count (pg_lsn minus 0/0), the form tokens carry.
_LSN_SQL: LiteralString = "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"


class Router:
    """Routes database calls over a primary and its streaming replicas, discovering which is which.

    ``nodes`` maps node names to DSNs (normally PgBouncer aliases); roles are learned from the nodes.
    ``config`` holds every other setting (:class:`~routing.types.RouterConfig`).

    Nothing is opened by the constructor: use ``await router.open()`` and ``await router.close()``, or
    ``async with router:``.
    """

    def __init__(self, nodes: Mapping[str, str], config: RouterConfig | None = None) -> None:
        cfg = config or RouterConfig()
        self.config = cfg
        if not nodes:
            raise ValueError("a router needs at least one node")
        self._max_staleness_ms = cfg.max_staleness_ms
        self._consistency_wait_ms = cfg.consistency_wait_ms
        # Reads waiting for a replica to replay a token's position hold a request each: past this many at once,
        # a read goes straight to the primary instead of joining the wait.
        self._max_consistency_waiters = cfg.max_consistency_waiters
        self._consistency_waiters = 0
        self._primary_fallback = cfg.primary_fallback
        self._read_wait_s = cfg.read_wait_s
        self._events = RouterEvents()
        self._pools = {
            name: NodePool(
                name,
                dsn,
                min_size=cfg.pool_min_size,
                max_size=cfg.pool_max_size,
                connect_timeout=cfg.connect_timeout_s,
                pool_timeout=cfg.pool_timeout_s,
                max_lifetime=cfg.pool_max_lifetime_s,
                max_idle=cfg.pool_max_idle_s,
                max_waiting=cfg.pool_max_waiting,
            )
            for name, dsn in nodes.items()
        }
        self._monitor = HealthMonitor(
            nodes,
            events=self._events,
            health_interval=cfg.health_interval_s,
            connect_timeout=cfg.connect_timeout_s,
            before_readmit=self._before_readmit,
        )
        self._picks = 0
        self._last_pick: dict[str, int] = {}
        self._state = "new"

    # --- lifecycle -------------------------------------------------------------------------------------------

    async def open(self, *, wait: bool = True, timeout: float = 10.0) -> None:  # noqa: ASYNC109 (as psycopg_pool)
        """Open the pools and start the health monitor.

        With ``wait`` (the default), return once every node has been polled once, answered or not, so the first
        calls already know the roles; nodes that are down do not make this fail.
        """
        if self._state != "new":
            raise RoutingError("a router is opened once; build a new one to open again")
        self._state = "open"
        for pool in self._pools.values():
            await pool.open()
        self._monitor.start()
        if wait and not await self._monitor.wait_first_round(timeout):
            logger.warning("not every node was polled within %.1f s of opening the router", timeout)

    async def close(self) -> None:
        """Stop the monitor and close the pools. Safe to call twice."""
        if self._state == "closed":
            return
        self._state = "closed"
        await self._monitor.close()
        await asyncio.gather(*(pool.close() for pool in self._pools.values()))

    async def __aenter__(self) -> Router:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # --- observation ----------------------------------------------------------------------------------------

    @property
    def events(self) -> RouterEvents:
        """Live counters of routing outcomes (see :class:`RouterEvents`)."""
        return self._events

    @property
    def primary(self) -> str | None:
        """The node writes go to now, or None."""
        return self._monitor.primary

    def nodes(self) -> list[NodeState]:
        """A snapshot of every node, in configuration order."""
        now = time.monotonic()
        return [
            NodeState(
                name=h.name,
                healthy=h.healthy,
                role=h.role,
                replay_lsn=h.replay_lsn,
                primary_lsn=h.primary_lsn,
                lag_s=h.lag_s,
                timeline=h.timeline,
                in_flight=self._pools[h.name].in_flight,
                ejected_reason=h.ejected_reason or h.refused_reason,
                checked_ago_s=None if h.checked_at is None else now - h.checked_at,
                pool=self._pools[h.name].stats(),
            )
            for h in self._monitor.all()
        ]

    # --- reads ----------------------------------------------------------------------------------------------------

    async def read(self, fn: ReadFn[T], request: RequestRouting | None = None) -> T:
        """Run ``fn`` on a replica that is fresh enough, else on the primary (each statement autocommits).

        If the node fails under the call (connection lost, server shut down, PgBouncer errors), the node is
        ejected and ``fn`` runs once more on another node, so ``fn`` must be safe to run twice (a read is).
        Errors of the statement itself (syntax, statement timeout, ...) are raised unchanged; when no node can
        serve the read, ``UnavailableError``.
        """
        self._check_open()
        req = request if request is not None else RequestRouting()
        staleness = self._max_staleness_ms if req.max_staleness_ms is None else req.max_staleness_ms
        choice, waited_ms = await self._route_read(staleness, req.min_lsn)
        failed: list[str] = []
        while True:
            name = choice.node.name
            self._mark_picked(name)
            try:
                result = await self._run(name, fn, wait_s=self._read_wait_s)
            except Exception as exc:
                failure = classify(exc)
                if failure is Failure.FINAL:
                    raise
                reason = describe(exc)
                if failure is Failure.NODE:
                    self._monitor.eject(name, f"read failed: {reason}")
                failed.append(name)
                next_choice = None
                if len(failed) < RetryPolicy.read_attempts:
                    next_choice = self._choose(staleness, req.min_lsn, exclude=frozenset(failed))
                if next_choice is None:
                    if failure is Failure.BUSY:
                        raise OverloadedError(
                            f"every node that can serve the read is at capacity ({', '.join(failed)}: {reason})"
                        ) from None
                    raise UnavailableError(
                        f"read failed on {', '.join(failed)} ({reason}) and no other node can serve it"
                    ) from None
                logger.info("read on %s failed (%s); retrying on %s", name, reason, next_choice.node.name)
                self._events.retries += 1
                choice = next_choice
                continue
            break
        on_replica = choice.node.role == "replica"
        self._count_read(choice)
        req.decisions.append(
            RouteInfo(
                node=name,
                role="replica" if on_replica else "primary",
                lag_ms=choice.node.lag_s * 1000.0 if on_replica and choice.node.lag_s is not None else None,
                waited_ms=waited_ms,
                retried=bool(failed),
                lsn=self._data_lsn(choice, req.min_lsn),
            )
        )
        return result

    def _data_lsn(self, choice: ReadChoice, min_lsn: int | None) -> int | None:
        """A lower bound of the WAL position a read on ``choice`` saw (both sources only ever move forward)."""
        if choice.node.role == "replica":
            seen = choice.node.replay_lsn
        else:
            seen = next((h.primary_lsn for h in self._monitor.all() if h.name == choice.node.name), None)
        bounds = [b for b in (seen, min_lsn) if b is not None]
        return max(bounds) if bounds else None

    async def _route_read(self, staleness_ms: int, min_lsn: int | None) -> tuple[ReadChoice, float]:
        """Choose the node for a read, waiting up to ``consistency_wait_ms`` for a replica to reach ``min_lsn``."""
        choice = self._choose(staleness_ms, min_lsn)
        waited_ms = 0.0
        behind: list[str] = []
        if (choice is None or choice.node.role != "replica") and self._consistency_wait_ms:
            if self._consistency_waiters < self._max_consistency_waiters:
                behind = laggards(self._candidates()[0], max_staleness_ms=staleness_ms, min_lsn=min_lsn)
            else:
                self._events.wait_skipped += 1
        if behind:
            self._consistency_waiters += 1
            started = time.monotonic()
            try:
                choice = await self._wait_for_replay(behind, staleness_ms, min_lsn, started)
            finally:  # a cancelled request leaves the count too
                self._consistency_waiters -= 1
            waited_ms = (time.monotonic() - started) * 1000.0
            self._events.waited += 1
        if choice is None:
            raise UnavailableError(self._why_no_reader(staleness_ms, min_lsn)) from None
        return choice, waited_ms

    async def _wait_for_replay(
        self, behind: list[str], staleness_ms: int, min_lsn: int | None, started: float
    ) -> ReadChoice | None:
        deadline = started + self._consistency_wait_ms / 1000.0
        while behind:
            # Ask the laggards directly: the monitor's view can be a whole poll interval old.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await asyncio.gather(*(self._monitor.refresh_replay(n) for n in behind))
            choice = self._choose(staleness_ms, min_lsn)
            remaining = deadline - time.monotonic()
            if (choice is not None and choice.node.role == "replica") or remaining <= 0:
                return choice
            await asyncio.sleep(min(RetryPolicy.consistency_step_s, remaining))
            behind = laggards(self._candidates()[0], max_staleness_ms=staleness_ms, min_lsn=min_lsn)
        return self._choose(staleness_ms, min_lsn)  # the laggards became unfit while we waited

    def _candidates(self, exclude: frozenset[str] = frozenset()) -> tuple[list[Candidate], Candidate | None]:
        """Healthy replicas, and the elected primary if it is healthy, minus ``exclude``."""
        primary_name = self._monitor.primary
        replicas: list[Candidate] = []
        primary: Candidate | None = None
        for h in self._monitor.all():
            if not h.healthy or h.name in exclude:
                continue
            c = Candidate(
                name=h.name,
                role=h.role,
                lag_s=h.lag_s,
                replay_lsn=h.replay_lsn,
                in_flight=self._pools[h.name].in_flight,
                last_pick=self._last_pick.get(h.name, 0),
            )
            if h.name == primary_name:
                primary = c
            elif h.role == "replica":
                replicas.append(c)
        return replicas, primary

    def _choose(
        self, staleness_ms: int, min_lsn: int | None, exclude: frozenset[str] = frozenset()
    ) -> ReadChoice | None:
        replicas, primary = self._candidates(exclude)
        return choose_read(
            replicas,
            primary,
            max_staleness_ms=staleness_ms,
            min_lsn=min_lsn,
            primary_fallback=self._primary_fallback,
        )

    def _mark_picked(self, name: str) -> None:
        # Recorded when a call starts, not when it ends, so concurrent calls already spread.
        self._picks += 1
        self._last_pick[name] = self._picks

    def _why_no_reader(self, staleness_ms: int, min_lsn: int | None) -> str:
        primary = self._candidates()[1]
        parts = [f"no healthy replica within {staleness_ms} ms of lag"]
        if min_lsn is not None:
            parts[0] += f" that has replayed LSN {min_lsn}"
        if not self._primary_fallback:
            parts.append("reads may not fall back to the primary")
        elif primary is None:
            parts.append("no primary is reachable")
        return "no node can serve the read: " + "; ".join(parts)

    def _count_read(self, choice: ReadChoice) -> None:
        if choice.node.role == "replica":
            self._events.reads_replica += 1
        else:
            self._events.reads_primary += 1
            if choice.fallback:
                self._events.reads_fallback += 1

    async def on_node(self, name: str, fn: ReadFn[T]) -> T:
        """Run ``fn`` on one named node, without routing or retry: per-node monitoring (statistics)."""
        self._check_open()
        if name not in self._pools:
            raise KeyError(name)
        return await self._run(name, fn)

    async def _run(self, name: str, fn: ReadFn[T], *, wait_s: float | None = None) -> T:
        # Autocommit: every statement of a read is a transaction of its own (reads need no shared snapshot).
        async with self._pools[name].connection(timeout=wait_s) as conn:
            return await fn(conn)

    # --- writes ---------------------------------------------------------------------------------------------------

    async def write(self, fn: ReadFn[T], request: RequestRouting | None = None) -> tuple[T, int]:
        """Run ``fn`` in a transaction on the primary; return its result and the WAL LSN after the commit.

        Writes are never retried. ``NoPrimaryError`` means nothing was sent (no primary known, or none reachable
        in time); ``UnavailableError`` means the primary failed during the call, so the write may or may not
        have been applied. Statement errors are raised unchanged. With a ``request``, its ``min_lsn`` is raised
        to the returned LSN so the request's later reads see the write.
        """
        self._check_open()
        name = self._monitor.primary
        if name is None:
            raise NoPrimaryError("no primary is reachable; writes are unavailable") from None
        sent = False
        try:
            async with self._pools[name].connection() as conn:
                sent = True
                async with conn.transaction():
                    result = await fn(conn)
                # A transaction of its own, so the connection goes back to the pool idle. Through PgBouncer
                # it may run on another server connection, but on the same node, which is all that matters.
                async with conn.transaction():
                    row = await (await conn.execute(_LSN_SQL)).fetchone()
        except psycopg.errors.ReadOnlySqlTransaction:
            # The node was demoted since the last poll; nothing was written.
            self._monitor.poke(name)
            raise NoPrimaryError(f"{name} is no longer the primary; writes are unavailable") from None
        except Exception as exc:
            failure = classify(exc)
            if failure is Failure.FINAL or (failure is Failure.BUSY and sent):
                raise
            reason = describe(exc)
            if failure is Failure.NODE:
                self._monitor.eject(name, f"write failed: {reason}")
            if not sent:
                raise NoPrimaryError(
                    f"no primary is reachable; writes are unavailable ({name}: {reason})"
                ) from None
            raise UnavailableError(
                f"the primary {name} failed during the write, which may or may not have been applied: {reason}"
            ) from None
        if row is None:  # pragma: no cover - the query always returns one row
            raise UnavailableError(f"the primary {name} did not report its WAL position")
        lsn = int(row[0])
        self._events.writes += 1
        if request is not None:
            request.min_lsn = lsn if request.min_lsn is None else max(request.min_lsn, lsn)
            request.decisions.append(
                RouteInfo(node=name, role="primary", lag_ms=None, waited_ms=0.0, retried=False)
            )
        return result, lsn

    # --- helpers -----------------------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state != "open":
            raise RoutingError("the router is not open: call `await router.open()` first")

    async def _before_readmit(self, name: str) -> None:
        await self._pools[name].check()
