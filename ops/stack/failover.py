"""Replication as seen from the nodes: WAL positions and who streams from whom.

Patroni decides and acts (promotion, rejoin with pg_rewind, slots, synchronous standbys: :mod:`ops.stack.patroni`);
these read-only checks let drills and tests verify what it did without trusting its own account.
"""

from __future__ import annotations

import time

import psycopg

from ops.stack.layout import StackLayout


def wal_position(layout: StackLayout, name: str) -> int | None:
    """How far a running node's WAL goes, in bytes; None when it does not answer.

    On a primary, ``pg_current_wal_lsn()``. On a standby, the greater of the received-and-flushed and the replayed
    positions: promotion replays everything a standby has flushed, and synchronous replication guarantees that an
    acknowledged commit is flushed on a standby, not that it is replayed there, so the received position is what
    decides which standby holds the most (``pg_last_wal_replay_lsn()`` alone could pick one missing acked commits).
    """
    try:
        with psycopg.connect(layout.direct_dsn(name, dbname="postgres"), autocommit=True) as conn:
            row = conn.execute(
                """
                SELECT CASE WHEN pg_is_in_recovery()
                            THEN greatest(coalesce(pg_last_wal_receive_lsn(), '0/0'), coalesce(pg_last_wal_replay_lsn(), '0/0'))
                            ELSE pg_current_wal_lsn() END - '0/0'::pg_lsn
                """
            ).fetchone()
    except psycopg.OperationalError:
        return None
    return int(row[0]) if row and row[0] is not None else None


def is_streaming(layout: StackLayout, name: str, *, primary: str) -> bool:
    """Whether ``primary`` has been streaming WAL to ``name`` for a second (``pg_stat_replication``, by name)."""
    try:
        with psycopg.connect(layout.direct_dsn(primary, dbname="postgres"), autocommit=True) as conn:
            # Streaming for a second at least: a standby whose history forked off the primary's connects,
            # streams for a few milliseconds, is told the timeline ended, and retries every 5 s.
            row = conn.execute(
                "SELECT 1 FROM pg_stat_replication WHERE application_name = %s AND state = 'streaming' "
                "AND backend_start < clock_timestamp() - interval '1 second'",
                [name],
            ).fetchone()
    except psycopg.OperationalError:
        return False
    return row is not None


def wait_streaming(layout: StackLayout, name: str, *, primary: str, timeout: float = 30.0) -> bool:
    """Wait up to ``timeout`` seconds for :func:`is_streaming`; returns whether it came."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_streaming(layout, name, primary=primary):
            return True
        time.sleep(0.1)
    return is_streaming(layout, name, primary=primary)
