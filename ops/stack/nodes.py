"""The PostgreSQL nodes: their shared base configuration, memory share, and whether each one answers.

Patroni (:mod:`ops.stack.patroni`) runs initdb, pg_basebackup, start, stop and promotion; this module only
prepares what every node shares and looks at the servers from outside.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import psycopg

from ops.stack.binaries import pg_bin
from ops.stack.layout import OPS_DIR, StackError, StackLayout
from ops.stack.process import as_server_user, server_uid_gid


def memory_parameters(nodes: int, memory_mb: int | None = None) -> dict[str, str]:
    """Scale memory to the machine: each node gets an equal share of RAM (or ``memory_mb`` when given)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    share_mb = memory_mb or max(256, total // (1024 * 1024) // max(nodes, 1))
    return {
        "shared_buffers": f"{min(share_mb // 4, 8192)}MB",
        "effective_cache_size": f"{share_mb // 2}MB",
        "maintenance_work_mem": f"{min(share_mb // 8, 2048)}MB",
        "work_mem": f"{max(4, min(share_mb // 200, 64))}MB",
    }


def copy_base_conf(layout: StackLayout) -> None:
    """ops/postgresql.conf becomes every node's base configuration (Patroni's ``custom_conf``)."""
    target = Path(layout.dir) / "base.conf"
    shutil.copyfile(OPS_DIR / "postgresql.conf", target)
    uid, gid = server_uid_gid()
    os.chown(target, uid, gid)


def node_running(layout: StackLayout, name: str) -> bool:
    """Whether node ``name``'s PostgreSQL runs (``pg_ctl status``), whatever Patroni is doing."""
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
