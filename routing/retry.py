"""Which failures a read may be retried after, and the retry and timing constants.

A failed call is either the node's fault (it died, restarted, or the path to it broke: retry a read on another
node and take the node out of service), a transient lack of capacity (no connection in time, a recovery
conflict: retry a read elsewhere but keep the node), or final (the statement itself failed: a syntax error, a
statement timeout, a constraint; the caller sees it unchanged). Writes are never retried: once a statement may
have reached the server, running it again could apply it twice.
"""

from __future__ import annotations

import enum
from typing import ClassVar

import psycopg
import psycopg_pool

__all__ = ["Failure", "RetryPolicy", "classify"]


class RetryPolicy:
    """Retry and timing constants in one place, so tests can patch them (``monkeypatch.setattr``)."""

    #: Attempts per read: the first node, then one other node.
    read_attempts: ClassVar[int] = 2
    #: Step between checks of replica replay positions while a read waits for its ``min_lsn``.
    consistency_step_s: ClassVar[float] = 0.015
    #: Upper bound on one health poll of one node (the poll interval is the other bound).
    probe_timeout_s: ClassVar[float] = 1.0
    #: Lower bound on the same, so a tight poll interval does not eject nodes on ordinary scheduling jitter.
    probe_timeout_min_s: ClassVar[float] = 0.5

    @classmethod
    def probe_timeout(cls, health_interval: float) -> float:
        """How long one health poll of one node may take before the node counts as failed."""
        return max(cls.probe_timeout_min_s, min(cls.probe_timeout_s, health_interval))


class Failure(enum.Enum):
    """What a failed call says about its node."""

    NODE = "node"  # the node or the path to it failed: retry a read elsewhere, eject the node
    BUSY = "busy"  # no capacity right now, nothing was changed: retry a read elsewhere, keep the node
    FINAL = "final"  # the statement's own error (or ours): surface it unchanged


# SQLSTATEs that mean the server went away or refuses sessions: class 08 (connection exception, which is also
# what PgBouncer sends for its own errors, as 08P01) is matched by prefix.
_NODE_SQLSTATES = frozenset(
    {
        "57P01",  # admin_shutdown: the server is shutting down (or the backend was terminated)
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now: starting up, in recovery without hot standby, shutting down
    }
)
_BUSY_SQLSTATES = frozenset(
    {
        "53300",  # too_many_connections: refused before anything ran
        "40001",  # serialization_failure, which on a replica is "canceling statement due to conflict with recovery"
    }
)
# PgBouncer reports its own failures with messages rather than precise codes (and libpq reports a dropped
# socket with no SQLSTATE at all), so recognise their wording too.
_NODE_MESSAGES = (
    "server conn crashed",
    "server closed the connection unexpectedly",
    "query_wait_timeout",
    "pgbouncer cannot connect to server",
    "server login has been failing",
    "the connection is lost",
    "ssl connection has been closed unexpectedly",
)
_BUSY_MESSAGES = ("no more connections allowed", "sorry, too many clients already")


def classify(exc: BaseException) -> Failure:
    """Say whether ``exc``, raised by a call on one node, is the node's fault, a lack of capacity, or final."""
    if isinstance(exc, psycopg_pool.PoolTimeout | psycopg_pool.TooManyRequests):
        return Failure.BUSY  # no connection was handed out, so nothing reached the server
    if isinstance(exc, psycopg_pool.PoolClosed) or not isinstance(exc, psycopg.Error):
        return Failure.FINAL
    sqlstate = exc.sqlstate
    message = str(exc).lower()
    if sqlstate is not None and (sqlstate.startswith("08") or sqlstate in _NODE_SQLSTATES):
        return Failure.NODE
    if sqlstate in _BUSY_SQLSTATES or any(m in message for m in _BUSY_MESSAGES):
        return Failure.BUSY
    if any(m in message for m in _NODE_MESSAGES):
        return Failure.NODE
    if sqlstate is None and isinstance(exc, psycopg.OperationalError):
        # An OperationalError without a server's SQLSTATE comes from libpq: connect failures, lost sockets.
        return Failure.NODE
    return Failure.FINAL
