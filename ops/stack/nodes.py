"""The PostgreSQL nodes: configuration, start and stop, the primary's initdb and each replica's base backup."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import psycopg
from psycopg import sql

from ops.stack.binaries import pg_bin
from ops.stack.layout import DATABASE, OPS_DIR, SERVER_USER, StackError, StackLayout
from ops.stack.process import as_server_user, run_command, server_uid_gid


def _memory_settings(nodes: int, memory_mb: int | None = None) -> str:
    """Scale memory to the machine: each node gets an equal share of RAM (or ``memory_mb`` when given)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    share_mb = memory_mb or max(256, total // (1024 * 1024) // max(nodes, 1))
    shared_buffers = min(share_mb // 4, 8192)
    return (
        f"shared_buffers = '{shared_buffers}MB'\n"
        f"effective_cache_size = '{share_mb // 2}MB'\n"
        f"maintenance_work_mem = '{min(share_mb // 8, 2048)}MB'\n"
        f"work_mem = '{max(4, min(share_mb // 200, 64))}MB'\n"
    )


def write_node_conf(layout: StackLayout, name: str) -> None:
    node_dir = layout.node_dir(name)
    base = Path(layout.dir) / "base.conf"
    port = layout.node_ports[layout.node_names.index(name)]
    conf = (
        f"# written by ops/stack/nodes.py; shared settings live in ops/postgresql.conf (copied to {base})\n"
        f"include '{base}'\n"
        f"port = {port}\n"
        f"unix_socket_directories = '{layout.rundir}'\n"
        f"cluster_name = '{name}'\n"
        f"{_memory_settings(len(layout.node_ports), layout.memory_mb)}"
    )
    (node_dir / "postgresql.conf").write_text(conf)
    (node_dir / "pg_hba.conf").write_text(
        "# loopback-only development stack\n"
        "local all all trust\n"
        "host all all 127.0.0.1/32 trust\n"
        "local replication all trust\n"
        "host replication all 127.0.0.1/32 trust\n"
    )
    uid, gid = server_uid_gid()
    for file in ("postgresql.conf", "pg_hba.conf"):
        os.chown(node_dir / file, uid, gid)


def copy_base_conf(layout: StackLayout) -> None:
    target = Path(layout.dir) / "base.conf"
    shutil.copyfile(OPS_DIR / "postgresql.conf", target)
    uid, gid = server_uid_gid()
    os.chown(target, uid, gid)


def node_running(layout: StackLayout, name: str) -> bool:
    node_dir = layout.node_dir(name)
    if not (node_dir / "PG_VERSION").exists():
        return False
    proc = subprocess.run(
        as_server_user([pg_bin("pg_ctl"), "status", "-D", str(node_dir)]),
        capture_output=True,
        check=False,
        cwd="/",
    )
    return proc.returncode == 0


def start_node(layout: StackLayout, name: str) -> None:
    """Start one node (no-op when it already runs) and wait until it accepts connections."""
    if node_running(layout, name):
        return
    node_dir = layout.node_dir(name)
    run_command(
        [
            pg_bin("pg_ctl"),
            "start",
            "-w",
            "-t",
            "60",
            "-D",
            str(node_dir),
            "-l",
            str(node_dir / "startup.log"),
        ],
        what=f"starting {name} (see {node_dir}/startup.log and {node_dir}/log/)",
    )


def stop_node(layout: StackLayout, name: str, *, mode: str = "fast") -> None:
    """Stop one node; ``mode='immediate'`` simulates a crash (used by the failover drills)."""
    if not node_running(layout, name):
        return
    run_command(
        [pg_bin("pg_ctl"), "stop", "-w", "-t", "60", "-m", mode, "-D", str(layout.node_dir(name))],
        what=f"stopping {name}",
    )


def wait_for(dsn: str, *, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("SELECT 1")
                return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise StackError(f"server did not answer within {timeout:.0f} s: {exc}") from None
            time.sleep(0.2)


def init_primary(layout: StackLayout, name: str) -> None:
    node_dir = layout.node_dir(name)
    run_command(
        [
            pg_bin("initdb"),
            "-D",
            str(node_dir),
            "-U",
            SERVER_USER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--data-checksums",
        ],
        what=f"initdb for {name}",
    )
    write_node_conf(layout, name)
    start_node(layout, name)
    with psycopg.connect(layout.direct_dsn(name, dbname="postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))


def clone_replica(layout: StackLayout, name: str, *, source: str) -> None:
    """Make ``name`` a fresh streaming replica of ``source`` with its own replication slot."""
    node_dir = layout.node_dir(name)
    if node_dir.exists():
        run_command(["rm", "-rf", str(node_dir)], what=f"removing old {name}")
    src_port = layout.node_ports[layout.node_names.index(source)]
    with psycopg.connect(layout.direct_dsn(source, dbname="postgres"), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s AND NOT active",
            [name],
        )
    run_command(
        [
            pg_bin("pg_basebackup"),
            "-h",
            "127.0.0.1",
            "-p",
            str(src_port),
            "-U",
            SERVER_USER,
            "-D",
            str(node_dir),
            "-R",
            "-C",
            "-S",
            name,
            "-X",
            "stream",
            "-c",
            "fast",
        ],
        what=f"pg_basebackup for {name}",
        timeout=1800,
    )
    write_node_conf(layout, name)
    start_node(layout, name)
