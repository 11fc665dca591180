"""The whole stack at once: up, down, destroy, and each node's role and lag."""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
from pathlib import Path

import psycopg

from ops.stack import patroni
from ops.stack.binaries import pg_bin, pgbouncer_bin, redis_bin
from ops.stack.failover import wait_streaming
from ops.stack.layout import (
    DEFAULT_BASE_PORT,
    DEFAULT_DIR,
    SERVER_USER,
    StackError,
    StackLayout,
    check_ports,
    make_layout,
)
from ops.stack.nodes import copy_base_conf, wait_for
from ops.stack.process import prepare_dir
from ops.stack.services import start_pgbouncer, start_redis, stop_pgbouncer, stop_redis


def up(
    directory: Path = DEFAULT_DIR,
    *,
    replicas: int = 2,
    base_port: int = DEFAULT_BASE_PORT,
    memory_mb: int | None = None,
    synchronous: bool | None = None,
) -> StackLayout:
    """Boot the stack, or find it running and change nothing. Returns its layout.

    etcd first, then the first node's Patroni alone, so that a new stack's primary is always node1 (Patroni
    runs initdb there); then the other Patronis, which clone themselves with pg_basebackup. ``up`` returns when
    every node streams from the primary. ``synchronous`` (``--sync``) turns Patroni's ``synchronous_mode`` on or
    off; None keeps what the stack had.
    """
    directory = directory.resolve()
    for tool in ("initdb", "pg_ctl", "pg_basebackup", "pg_rewind", "psql"):
        pg_bin(tool)
    pgbouncer_bin()
    patroni.patroni_bin()
    patroni.etcd_bin()
    existing = StackLayout.load(directory) if directory.exists() else None
    if existing is not None:
        layout = existing
        prepare_dir(directory)
    else:
        layout = make_layout(
            directory,
            replicas=replicas,
            base_port=base_port,
            with_redis=redis_bin() is not None,
            memory_mb=memory_mb,
            synchronous=bool(synchronous),
        )
        prepare_dir(directory)
        check_ports(layout)
    copy_base_conf(layout)
    patroni.start_etcd(layout)
    first = layout.node_names[0]
    if not (layout.node_dir(first) / "PG_VERSION").exists():
        patroni.start_patroni(layout, first)
        patroni.wait_primary(layout, first)
    for name in layout.node_names:
        patroni.start_patroni(layout, name)
    layout.save()
    primary = patroni.wait_primary(layout)
    if synchronous is not None and synchronous != layout.synchronous:
        layout = dataclasses.replace(layout, synchronous=synchronous)
        patroni.set_synchronous_mode(layout, synchronous)
        layout.save()
    for name in layout.node_names:
        if name != primary and not wait_streaming(layout, name, primary=primary, timeout=300.0):
            raise StackError(
                f"{name} does not stream from {primary}: see {patroni.log_path(layout, name)} "
                f"and {layout.node_dir(name)}/log/"
            )
    start_pgbouncer(layout)
    start_redis(layout)
    for name in layout.node_names:
        wait_for(layout.direct_dsn(name))
    return layout


def down(directory: Path = DEFAULT_DIR) -> bool:
    """Stop every server of the stack; the data stays. Returns False when no stack was found.

    The replicas' Patronis stop first and the leader's last: a leader stopped while replicas still run hands
    its lock over, and the stack would come back up with another primary.
    """
    layout = StackLayout.load(directory.resolve())
    if layout is None:
        return False
    stop_pgbouncer(layout)
    stop_redis(layout)
    lead = patroni.leader(layout)
    for name in sorted(layout.node_names, key=lambda n: n == lead):
        with contextlib.suppress(StackError):
            patroni.stop_patroni(layout, name)
    patroni.stop_etcd(layout)
    return True


def destroy(directory: Path) -> None:
    """Throw a stack away: every server killed (nothing to keep, so no clean shutdown), its folder deleted."""
    with contextlib.suppress(StackError):
        layout = StackLayout.load(directory.resolve())
        if layout is not None:
            stop_pgbouncer(layout)
            stop_redis(layout)
            for name in layout.node_names:
                patroni.kill_node(layout, name)
            patroni.stop_etcd(layout)
    if directory.exists():
        subprocess.run(["rm", "-rf", str(directory)], check=False)


@dataclasses.dataclass(frozen=True)
class NodeStatus:
    name: str
    port: int
    running: bool
    role: str  # "primary", "replica" or "down"
    lsn: str | None
    lag_seconds: float | None
    timeline: int | None
    log_dir: str


def node_status(layout: StackLayout, name: str) -> NodeStatus:
    port = layout.node_ports[layout.node_names.index(name)]
    log_dir = str(layout.node_dir(name) / "log")
    try:
        with psycopg.connect(layout.direct_dsn(name), autocommit=True) as conn:
            row = conn.execute(
                """
                SELECT pg_is_in_recovery(),
                       CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END,
                       CASE WHEN pg_is_in_recovery() THEN
                            CASE WHEN pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn() THEN 0
                                 ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END
                       END,
                       (SELECT timeline_id FROM pg_control_checkpoint())
                """
            ).fetchone()
    except psycopg.OperationalError:
        return NodeStatus(name, port, False, "down", None, None, None, log_dir)
    assert row is not None
    in_recovery, lsn, lag, timeline = row
    return NodeStatus(
        name,
        port,
        True,
        "replica" if in_recovery else "primary",
        str(lsn),
        float(lag) if lag is not None else None,
        int(timeline),
        log_dir,
    )


def current_primary(layout: StackLayout) -> str | None:
    for name in layout.node_names:
        if node_status(layout, name).role == "primary":
            return name
    return None


def primary_admin_dsn(layout: StackLayout) -> str:
    """Superuser, session-mode DSN (through PgBouncer) to the stack's current primary.

    Roles change in drills, so the primary is asked for each time rather than assumed to be the first node.
    """
    primary = current_primary(layout)
    if primary is None:
        raise StackError(
            f"no primary is running in {layout.dir}: see 'python -m ops stack status --dir {layout.dir}'"
        )
    return layout.bouncer_dsn(f"{primary}_session", user=SERVER_USER)


def status(directory: Path = DEFAULT_DIR) -> list[NodeStatus] | None:
    layout = StackLayout.load(directory.resolve())
    if layout is None:
        return None
    return [node_status(layout, n) for n in layout.node_names]
