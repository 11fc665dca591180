"""Failover operations for the drills and the runbook: promote, follow, rewind and re-attach, synchronous commit.

A promotion needs no configuration change elsewhere: PgBouncer has one alias per node and the gateway discovers
roles, so only the standbys have to be pointed at the new primary, each with a replication slot of its own there.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence

import psycopg
from psycopg import sql

from ops.stack.binaries import pg_bin
from ops.stack.cluster import node_status
from ops.stack.layout import SERVER_USER, StackError, StackLayout
from ops.stack.nodes import clone_replica, start_node, stop_node, write_node_conf
from ops.stack.process import run_command, server_uid_gid


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


def promote(layout: StackLayout, name: str, *, timeout: float = 60.0) -> None:
    """Promote the standby ``name`` and wait until it accepts writes (``pg_promote(wait => true)``)."""
    with psycopg.connect(layout.direct_dsn(name, dbname="postgres"), autocommit=True) as conn:
        row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        if row is not None and not row[0]:
            return  # already a primary: promoting again is a no-op, as a retried runbook step should be
        row = conn.execute(
            "SELECT pg_promote(wait => true, wait_seconds => %s)", [max(1, int(timeout))]
        ).fetchone()
    if row is None or not row[0]:
        raise StackError(f"{name} was not promoted within {timeout:.0f} s: see {layout.node_dir(name)}/log/")


def set_synchronous(layout: StackLayout, primary: str, standbys: Sequence[str] | None, *, quorum: int = 1) -> str:
    """Make commits on ``primary`` wait for ``quorum`` of ``standbys`` (None or empty: asynchronous again).

    Set with ALTER SYSTEM and a reload, so it holds across restarts of that node. Returns the new
    ``synchronous_standby_names``. Standbys are matched by ``application_name``, which is the node's name here
    (its ``cluster_name``, or the ``application_name`` that :func:`reattach` writes into ``primary_conninfo``).
    """

    value = f"ANY {quorum} ({', '.join(standbys)})" if standbys else ""
    with psycopg.connect(layout.direct_dsn(primary, dbname="postgres"), autocommit=True) as conn:
        if value:
            conn.execute(sql.SQL("ALTER SYSTEM SET synchronous_standby_names = {}").format(sql.Literal(value)))
        else:
            conn.execute("ALTER SYSTEM RESET synchronous_standby_names")
        conn.execute("SELECT pg_reload_conf()")
    return value


def _upstream_conninfo(layout: StackLayout, upstream: str, name: str) -> str:
    port = layout.node_ports[layout.node_names.index(upstream)]
    return f"host=127.0.0.1 port={port} user={SERVER_USER} application_name={name}"


def _ensure_slot(layout: StackLayout, primary: str, slot: str) -> None:
    """A physical slot named after the standby on ``primary``, reserving WAL from now on (kept when it exists)."""
    with psycopg.connect(layout.direct_dsn(primary, dbname="postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", [slot]).fetchone()
        if not exists:
            conn.execute("SELECT pg_create_physical_replication_slot(%s, true)", [slot])


def _drop_idle_slots(layout: StackLayout, name: str) -> None:
    """Drop inactive slots on a node that became a standby: left over from its time as primary, they would hold
    back WAL removal there for ever."""
    with (
        contextlib.suppress(psycopg.Error),
        psycopg.connect(layout.direct_dsn(name, dbname="postgres"), autocommit=True) as conn,
    ):
        conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE NOT active")


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


def follow(layout: StackLayout, name: str, *, primary: str, timeout: float = 30.0) -> bool:
    """Point the running standby ``name`` at ``primary`` without a restart; returns whether it streams.

    The standby's ``primary_conninfo`` and ``primary_slot_name`` are changed with ALTER SYSTEM and a reload
    (PostgreSQL 13+ restarts the WAL receiver on its own), and ``recovery_target_timeline = 'latest'`` (the
    default) makes it follow the new timeline. That works when the standby has not replayed past the point where
    the new primary's timeline forked, which holds for every standby when the most advanced one was promoted.
    """

    _ensure_slot(layout, primary, name)
    with psycopg.connect(layout.direct_dsn(name, dbname="postgres"), autocommit=True) as conn:
        row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        if row is None or not row[0]:
            raise StackError(f"{name} is not a standby; use reattach() (pg_rewind) for a former primary")
        conninfo = _upstream_conninfo(layout, primary, name)
        conn.execute(sql.SQL("ALTER SYSTEM SET primary_conninfo = {}").format(sql.Literal(conninfo)))
        conn.execute(sql.SQL("ALTER SYSTEM SET primary_slot_name = {}").format(sql.Literal(name)))
        conn.execute("SELECT pg_reload_conf()")
    return wait_streaming(layout, name, primary=primary, timeout=timeout)


def _write_standby_conf(layout: StackLayout, name: str, *, primary: str) -> None:
    """Rewrite a stopped node's upstream in ``postgresql.auto.conf`` and make sure it starts as a standby."""
    node_dir = layout.node_dir(name)
    auto = node_dir / "postgresql.auto.conf"
    keep = [
        line
        for line in (auto.read_text().splitlines() if auto.exists() else [])
        if line.split("=", 1)[0].strip() not in ("primary_conninfo", "primary_slot_name")
    ]
    conninfo = _upstream_conninfo(layout, primary, name).replace("'", "''")
    keep += [f"primary_conninfo = '{conninfo}'", f"primary_slot_name = '{name}'"]
    auto.write_text("\n".join(keep) + "\n")
    signal = node_dir / "standby.signal"
    signal.touch()
    uid, gid = server_uid_gid()
    for path in (auto, signal):
        os.chown(path, uid, gid)
        path.chmod(0o600)


def rewind(layout: StackLayout, name: str, *, primary: str, timeout: float = 600.0) -> None:
    """Make the node ``name`` (a crashed or stopped former primary) a standby of ``primary`` with pg_rewind.

    pg_rewind copies only the blocks that changed since the timelines forked (the stack runs with
    ``wal_log_hints`` and data checksums, which it needs). Since PostgreSQL 13 it first finishes the crash
    recovery of a node stopped with ``-m immediate`` by itself. It also copies the source's configuration files,
    so the node's own ``postgresql.conf`` (port, cluster name) and upstream settings are written again after it.
    """
    stop_node(layout, name, mode="fast")
    _ensure_slot(layout, primary, name)
    # pg_rewind reads the source's timeline from its control file, which a promotion only updates at the next
    # checkpoint; without one it finds "the same timeline", says "no rewind required" and leaves the node on
    # the old history, where it can never stream from the new primary.
    with psycopg.connect(layout.direct_dsn(primary, dbname="postgres"), autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    src = layout.node_ports[layout.node_names.index(primary)]
    run_command(
        [
            pg_bin("pg_rewind"),
            "-D",
            str(layout.node_dir(name)),
            "--source-server",
            f"host=127.0.0.1 port={src} user={SERVER_USER} dbname=postgres",
        ],
        what=f"pg_rewind of {name} from {primary} (see {layout.node_dir(name)}/log/)",
        timeout=timeout,
    )
    write_node_conf(layout, name)
    _write_standby_conf(layout, name, primary=primary)
    start_node(layout, name)
    _drop_idle_slots(layout, name)


def reattach(
    layout: StackLayout, name: str, *, primary: str, method: str = "auto", timeout: float = 60.0
) -> str:
    """Make ``name`` a streaming standby of ``primary``; returns the method that worked.

    ``auto`` tries the cheapest first: ``follow`` (a running standby changes upstream, no restart), then
    ``rewind`` (pg_rewind, for a former primary or a standby that diverged), then ``clone`` (a fresh base backup
    with :func:`clone_replica`, which always works but copies the whole database). ``method`` forces one.
    """
    if name == primary:
        raise StackError(f"{name} is the primary; there is nothing to reattach")
    if method not in ("auto", "follow", "rewind", "clone"):
        raise StackError(f"unknown reattach method {method!r}: choose auto, follow, rewind or clone")
    if method in ("auto", "follow") and node_status(layout, name).role == "replica":
        if follow(layout, name, primary=primary, timeout=min(timeout, 20.0) if method == "auto" else timeout):
            return "follow"
        if method == "follow":
            raise StackError(f"{name} did not stream from {primary} within {timeout:.0f} s: see its log/")
    elif method == "follow":
        raise StackError(f"{name} is not a running standby; use --method rewind or clone")
    if method in ("auto", "rewind"):
        try:
            rewind(layout, name, primary=primary)
            if wait_streaming(layout, name, primary=primary, timeout=timeout):
                return "rewind"
            problem = f"{name} did not stream from {primary} within {timeout:.0f} s after pg_rewind"
        except StackError as exc:
            problem = str(exc)
        if method == "rewind":
            raise StackError(problem)
    stop_node(layout, name, mode="fast")
    clone_replica(layout, name, source=primary)
    if not wait_streaming(layout, name, primary=primary, timeout=timeout):
        raise StackError(f"{name} did not stream from {primary} within {timeout:.0f} s after a base backup")
    return "clone"
