"""Health and role tracking: a background poll of every node, each on its own dedicated connection.

Roles are never configured. Every ``health_interval`` seconds each node is asked whether it is in recovery,
how far it has replayed, how far behind it is and on which timeline; from the answers the monitor elects the
primary (refusing a second claimant after a promotion) and keeps the replicas' positions for the read chooser.

Each node is polled by its own task with its own timeout, so a dead or hung node never delays the others, and
over its own connection rather than one from the request pool, so a saturated pool does not look like a dead
node. A node whose poll fails is ejected; the first poll that succeeds again readmits it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, LiteralString, TypeVar

import psycopg

from routing.choice import Claim, elect_primary
from routing.errors import describe
from routing.events import RouterEvents
from routing.retry import RetryPolicy
from routing.types import NodeRole

__all__ = ["HealthMonitor", "NodeHealth"]

logger = logging.getLogger("routing")

_R = TypeVar("_R")

# One round trip per poll. Positions come back as numbers of bytes (pg_lsn minus 0/0). On a primary the
# timeline is read from the current WAL file name, because pg_control_checkpoint() only moves to the new
# timeline at the first checkpoint after a promotion, which can be minutes later; on a replica the checkpoint's
# timeline is the best available without extra privileges. Replay lag is 0 when the replica has replayed all it
# received (an idle primary must not make replicas look stale), else the age of the last replayed commit.
# "All it received" is <=, not =: a restarted walreceiver reports the start of its segment as received, behind
# what was already replayed, until new WAL arrives (the drills saw it as a phantom lag of minutes).
_POLL_SQL: LiteralString = """
SELECT pg_is_in_recovery(),
       CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() - '0/0'::pg_lsn END,
       CASE WHEN NOT pg_is_in_recovery() THEN pg_current_wal_lsn() - '0/0'::pg_lsn END,
       CASE WHEN pg_is_in_recovery() THEN
            CASE WHEN pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn() THEN 0
                 ELSE greatest(0, extract(epoch FROM now() - pg_last_xact_replay_timestamp())) END
       END,
       CASE WHEN pg_is_in_recovery() THEN (SELECT timeline_id FROM pg_control_checkpoint())
            ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END
"""
_REPLAY_SQL: LiteralString = "SELECT pg_last_wal_replay_lsn() - '0/0'::pg_lsn"

_NOT_POLLED = "not polled yet"


@dataclasses.dataclass
class NodeHealth:
    """What the monitor knows about one node. Mutated only by the monitor, on the event loop."""

    name: str
    role: NodeRole = "unknown"
    replay_lsn: int | None = None
    primary_lsn: int | None = None
    lag_s: float | None = None
    timeline: int | None = None
    #: Why the node is out of service after a failure (None: it answered its last poll).
    ejected_reason: str | None = _NOT_POLLED
    #: Why the node, though it answers, may not take writes or reads (a refused split-brain primary).
    refused_reason: str | None = None
    #: time.monotonic() of the last poll that answered.
    checked_at: float | None = None
    ejected_at: float = 0.0
    replay_checked_at: float = 0.0
    admitted_once: bool = False

    @property
    def healthy(self) -> bool:
        """True when calls may be sent to this node."""
        return self.ejected_reason is None and self.refused_reason is None


class _Probe:
    """A dedicated autocommit connection to one node, opened on demand and dropped at the first error."""

    def __init__(self, dsn: str, *, connect_timeout: float) -> None:
        self._dsn = dsn
        self._connect_timeout = max(1, math.ceil(connect_timeout))
        self._conn: psycopg.AsyncConnection[tuple[Any, ...]] | None = None
        # One statement at a time: the regular poll and the read-your-writes refresh share the connection.
        self._lock = asyncio.Lock()

    async def fetchone(self, query: LiteralString) -> tuple[Any, ...]:
        async with self._lock:
            try:
                if self._conn is None:
                    self._conn = await psycopg.AsyncConnection.connect(
                        self._dsn,
                        autocommit=True,
                        prepare_threshold=None,
                        connect_timeout=self._connect_timeout,
                    )
                cur = await self._conn.execute(query)
                row = await cur.fetchone()
            except BaseException:
                # Whatever went wrong (including a cancelled, timed-out poll) the connection's state is unknown.
                await self._drop()
                raise
        if row is None:
            raise psycopg.OperationalError("the health query returned no row")
        return row

    async def close(self) -> None:
        async with self._lock:
            await self._drop()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


class HealthMonitor:
    """Polls every node in the background and elects the primary. Started and closed by the router."""

    def __init__(
        self,
        dsns: Mapping[str, str],
        *,
        events: RouterEvents,
        health_interval: float = 1.0,
        connect_timeout: float = 3.0,
        before_readmit: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        if health_interval <= 0:
            raise ValueError("health_interval must be > 0 seconds")
        self._interval = health_interval
        self._events = events
        self._before_readmit = before_readmit
        self._health = {name: NodeHealth(name) for name in dsns}
        self._probes = {name: _Probe(dsn, connect_timeout=connect_timeout) for name, dsn in dsns.items()}
        self._wake = {name: asyncio.Event() for name in dsns}
        self._polled: set[str] = set()
        self._first_round = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        # Timed-out probes finish cancelling their query in the background; kept so close() can reap them.
        self._stragglers: set[asyncio.Task[Any]] = set()
        self._replay_refresh: dict[str, asyncio.Task[None]] = {}
        self._primary: str | None = None

    # --- lifecycle ----------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start one polling task per node."""
        if self._loops:
            raise RuntimeError("the health monitor is already running")
        self._loops = [
            asyncio.create_task(self._node_loop(name), name=f"routing-monitor-{name}")
            for name in self._health
        ]

    async def wait_first_round(self, limit_s: float) -> bool:
        """Wait until every node has been polled once (answered or failed); False if ``limit_s`` ran out."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit_s):
                await self._first_round.wait()
        return self._first_round.is_set()

    async def close(self) -> None:
        tasks = [*self._loops, *self._stragglers, *self._replay_refresh.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loops = []
        self._stragglers.clear()
        self._replay_refresh.clear()
        for probe in self._probes.values():
            await probe.close()

    # --- what the router reads -------------------------------------------------------------------------------

    @property
    def primary(self) -> str | None:
        """The elected primary, or None when no node may take writes."""
        return self._primary

    def all(self) -> list[NodeHealth]:
        """Every node's health, in configuration order."""
        return list(self._health.values())

    # --- what the router reports -------------------------------------------------------------------------------

    def eject(self, name: str, reason: str) -> None:
        """Take a node out of service after a call on it failed; the next poll that answers readmits it."""
        node = self._health[name]
        node.ejected_at = time.monotonic()
        if node.ejected_reason is None:
            self._mark_down(node, reason)
            self._elect()
        self.poke(name)

    def poke(self, name: str) -> None:
        """Poll a node now rather than at its next tick (its role or health may just have changed)."""
        self._wake[name].set()

    async def refresh_replay(self, name: str) -> None:
        """Re-read one replica's replay position now, for a read waiting on ``min_lsn``.

        Concurrent waiters share one query per node and step, so many waiting requests cost the node no more
        than one does. Failures are ignored here; the regular poll decides about health.
        """
        task = self._replay_refresh.get(name)
        if task is None or task.done():
            node = self._health[name]
            if time.monotonic() - node.replay_checked_at < RetryPolicy.consistency_step_s:
                return
            task = asyncio.create_task(self._refresh_replay(node), name=f"routing-replay-{name}")
            self._replay_refresh[name] = task
        # Shielded: a waiter that gives up (or is cancelled) must not cancel the query others are sharing.
        await asyncio.shield(task)

    # --- polling -------------------------------------------------------------------------------------------------

    async def _node_loop(self, name: str) -> None:
        wake = self._wake[name]
        while True:
            started = time.monotonic()
            wake.clear()
            try:
                await self._poll(self._health[name], started)
            except Exception:
                # A bug here must not silently stop this node's polling for the life of the process.
                logger.exception("health poll of %s failed unexpectedly", name)
            if name not in self._polled:
                self._polled.add(name)
                if len(self._polled) == len(self._health):
                    self._first_round.set()
            delay = self._interval - (time.monotonic() - started)
            if delay > 0 and not wake.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await wake.wait()

    async def _poll(self, node: NodeHealth, started: float) -> None:
        timeout = RetryPolicy.probe_timeout(self._interval)
        try:
            row = await self._within(self._probes[node.name].fetchone(_POLL_SQL), timeout)
        except Exception as exc:
            reason = f"no answer within {timeout:.1f} s" if isinstance(exc, TimeoutError) else describe(exc)
            self._mark_down(node, f"health poll failed: {reason}")
        else:
            in_recovery, replay_lsn, current_lsn, lag_s, timeline = row
            role: NodeRole = "replica" if in_recovery else "primary"
            if role != node.role and node.role != "unknown":
                logger.warning("node %s is now %s (was %s)", node.name, role, node.role)
            node.role = role
            node.replay_lsn = None if replay_lsn is None else int(replay_lsn)
            node.primary_lsn = None if current_lsn is None else int(current_lsn)
            node.lag_s = None if lag_s is None else float(lag_s)
            node.timeline = None if timeline is None else int(timeline)
            node.checked_at = node.replay_checked_at = time.monotonic()
            if node.ejected_reason is not None and started > node.ejected_at:
                await self._mark_up(node)
        self._elect()

    async def _within(self, coro: Coroutine[Any, Any, _R], limit_s: float) -> _R:
        """Await ``coro`` for at most ``limit_s`` seconds, without waiting for its cancellation to finish.

        psycopg answers a cancelled query by asking the server to cancel it and waiting for that (up to
        seconds); the node is failed now, and the cleanup finishes in the background.
        """
        task = asyncio.ensure_future(coro)
        try:
            done, _ = await asyncio.wait({task}, timeout=limit_s)
        except asyncio.CancelledError:
            self._abandon(task)
            raise
        if not done:
            self._abandon(task)
            raise TimeoutError
        return task.result()

    def _abandon(self, task: asyncio.Task[Any]) -> None:
        task.cancel()
        self._stragglers.add(task)
        task.add_done_callback(self._reap)

    def _reap(self, task: asyncio.Task[Any]) -> None:
        self._stragglers.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not report it as never retrieved

    async def _refresh_replay(self, node: NodeHealth) -> None:
        try:
            row = await self._within(
                self._probes[node.name].fetchone(_REPLAY_SQL), RetryPolicy.probe_timeout(self._interval)
            )
        except Exception as exc:
            logger.debug("replay position of %s not refreshed: %s", node.name, describe(exc))
            return
        node.replay_checked_at = time.monotonic()
        if row[0] is not None and node.role == "replica":
            node.replay_lsn = max(node.replay_lsn or 0, int(row[0]))

    # --- state changes -----------------------------------------------------------------------------------------

    def _mark_down(self, node: NodeHealth, reason: str) -> None:
        if node.ejected_reason is None:
            logger.warning("node %s ejected: %s", node.name, reason)
            self._events.ejections += 1
        elif node.ejected_reason == _NOT_POLLED:
            logger.warning("node %s is unavailable: %s", node.name, reason)
        node.ejected_reason = reason

    async def _mark_up(self, node: NodeHealth) -> None:
        if node.admitted_once and self._before_readmit is not None:
            # Connections pooled before the outage are probably dead; drop them before calls can pick them.
            try:
                await self._before_readmit(node.name)
            except Exception as exc:
                logger.warning("preparing %s for readmission failed: %s", node.name, describe(exc))
        if node.admitted_once:
            logger.info("node %s readmitted as %s", node.name, node.role)
            self._events.readmissions += 1
        else:
            logger.info("node %s is %s", node.name, node.role)
        node.admitted_once = True
        node.ejected_reason = None

    def _elect(self) -> None:
        reachable = [n for n in self._health.values() if n.ejected_reason is None]
        claims = [
            Claim(name=n.name, timeline=n.timeline or 0, lsn=n.primary_lsn or 0)
            for n in reachable
            if n.role == "primary"
        ]
        replica_timelines = [n.timeline for n in reachable if n.role == "replica" and n.timeline is not None]
        election = elect_primary(claims, replica_timeline=max(replica_timelines, default=None))
        for n in self._health.values():
            reason = election.refused.get(n.name)
            if reason is not None and n.refused_reason is None:
                logger.warning("node %s refused: %s", n.name, reason)
                self._events.writes_refused_split_brain += 1
            elif reason is None and n.refused_reason is not None:
                logger.info("node %s no longer refused", n.name)
            n.refused_reason = reason
        if election.primary != self._primary:
            if election.primary is None:
                logger.warning("no primary: writes are unavailable (%s was)", self._primary)
            elif self._primary is None:
                logger.info("primary is %s", election.primary)
            else:
                logger.warning("primary is now %s (was %s)", election.primary, self._primary)
            self._primary = election.primary
