"""Shared types of the routing package: what a caller passes in and what the router reports back."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, TypeVar

import psycopg

__all__ = ["NodeRole", "NodeState", "ReadFn", "RequestRouting", "Role", "RouteInfo", "RouterConfig", "T"]

T = TypeVar("T")

#: The work the router runs on one connection, inside one transaction that it opens and commits.
ReadFn = Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]

#: Where a call was served.
Role = Literal["primary", "replica"]

#: What the monitor last learned about a node; "unknown" until it has answered once.
NodeRole = Literal["primary", "replica", "unknown"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class RouterConfig:
    """How a router pools, polls and chooses; every duration carries its unit in its name.

    Pool sizes and timings are per node. ``max_staleness_ms`` is the default bound on a replica's replay lag
    for reads; ``consistency_wait_ms`` is how long a read carrying ``min_lsn`` waits for a replica before going
    to the primary, and ``max_consistency_waiters`` how many reads may wait so at once (the others go to the
    primary straight away); ``primary_fallback`` lets the primary serve reads that no replica can (with it
    False, reads never touch the primary and fail with ``UnavailableError`` instead).
    """

    pool_min_size: int = 1
    pool_max_size: int = 10
    connect_timeout_s: float = 3.0
    pool_timeout_s: float = 5.0
    pool_max_lifetime_s: float = 3600.0
    pool_max_idle_s: float = 300.0
    #: Calls that may wait for a connection of one node at once; past it a call fails at once (overload)
    #: instead of queueing until the pool timeout.
    pool_max_waiting: int = 0
    #: How long a read waits for a connection of the node it was routed to before it counts that node as busy
    #: (and tries another, or fails with ``OverloadedError``). Shorter than ``pool_timeout_s``: a read that
    #: has queued this long behind others is better answered "overloaded" than served seconds late.
    read_wait_s: float = 1.0
    health_interval_s: float = 1.0
    max_staleness_ms: int = 5000
    consistency_wait_ms: int = 500
    max_consistency_waiters: int = 32
    primary_fallback: bool = True

    def __post_init__(self) -> None:
        if self.max_staleness_ms < 0 or self.consistency_wait_ms < 0:
            raise ValueError("max_staleness_ms and consistency_wait_ms must be >= 0")
        if self.read_wait_s <= 0:
            raise ValueError("read_wait_s must be > 0")
        if self.pool_min_size > self.pool_max_size:
            raise ValueError("pool_min_size must not exceed pool_max_size")


@dataclasses.dataclass(frozen=True, kw_only=True)
class RouteInfo:
    """What one database call was routed to.

    ``lag_ms`` is the replica's replay lag as last measured (None on the primary); ``waited_ms`` is the time
    spent waiting for a replica to reach the request's ``min_lsn``; ``retried`` is True when the first node
    failed and the call was served by another one. ``lsn`` is a lower bound of the WAL position the data was
    read at (the replica's replayed position, or the primary's position, as last measured, and never below
    the request's ``min_lsn``); caches use it to decide whether a result may be served to a reader that must
    see a given write.
    """

    node: str
    role: Role
    lag_ms: float | None
    waited_ms: float
    retried: bool
    lsn: int | None = None


@dataclasses.dataclass(kw_only=True)
class RequestRouting:
    """Routing wishes and routing record of one GraphQL request; pass the same object to every call.

    ``max_staleness_ms`` overrides the router's default staleness bound for replicas. ``min_lsn`` asks for
    read-your-writes: only nodes that have replayed at least that WAL position may serve reads. A successful
    ``Router.write`` raises ``min_lsn`` to the write's LSN, so later reads of the same request see the write.
    """

    max_staleness_ms: int | None = None
    min_lsn: int | None = None
    decisions: list[RouteInfo] = dataclasses.field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        if self.max_staleness_ms is not None and self.max_staleness_ms < 0:
            raise ValueError("max_staleness_ms must be >= 0")
        if self.min_lsn is not None and self.min_lsn < 0:
            raise ValueError("min_lsn must be >= 0")


@dataclasses.dataclass(frozen=True, kw_only=True)
class NodeState:
    """A snapshot of one node for /readyz and /metrics.

    ``healthy`` means the router may send calls there now. ``replay_lsn`` is set on replicas and
    ``primary_lsn`` (``pg_current_wal_lsn()``) on a primary; ``lag_s`` is the replica's replay lag. ``role`` and
    the positions are the last ones observed, so they stay filled in while a node is ejected.
    ``ejected_reason`` says why an unhealthy node is out (a failed poll, a failed call, a split brain).
    ``pool`` is ``psycopg_pool``'s ``get_stats()`` for the node's request pool.
    """

    name: str
    healthy: bool
    role: NodeRole
    replay_lsn: int | None
    primary_lsn: int | None
    lag_s: float | None
    timeline: int | None
    in_flight: int
    ejected_reason: str | None
    checked_ago_s: float | None
    pool: Mapping[str, int]
