"""PgBouncer (one alias per node) and Redis (when installed) beside the PostgreSQL nodes."""

from __future__ import annotations

import os
import string
import time
from pathlib import Path

from ops.stack.binaries import pgbouncer_bin, redis_bin
from ops.stack.layout import DATABASE, OPS_DIR, SERVER_USER, StackError, StackLayout, port_is_free
from ops.stack.nodes import wait_for
from ops.stack.process import pid_alive, run_command, server_uid_gid, stop_pidfile


def _write_pgbouncer_conf(layout: StackLayout) -> Path:
    lines = []
    for name, port in zip(layout.node_names, layout.node_ports, strict=True):
        lines.append(f"{name} = host=127.0.0.1 port={port} dbname={DATABASE}")
        lines.append(
            f"{name}_session = host=127.0.0.1 port={port} dbname={DATABASE} pool_mode=session pool_size=10"
        )
    template = string.Template((OPS_DIR / "pgbouncer.ini").read_text())
    text = template.substitute(
        databases="\n".join(lines), port=layout.pgbouncer_port, rundir=layout.rundir, dir=layout.dir
    )
    conf = Path(layout.dir) / "pgbouncer.ini"
    conf.write_text(text)
    (Path(layout.dir) / "userlist.txt").write_text(f'"{SERVER_USER}" ""\n"gateway" ""\n')
    uid, gid = server_uid_gid()
    for file in (conf, Path(layout.dir) / "userlist.txt"):
        os.chown(file, uid, gid)
    return conf


def pgbouncer_running(layout: StackLayout) -> bool:
    return pid_alive(Path(layout.rundir) / "pgbouncer.pid")


def start_pgbouncer(layout: StackLayout) -> None:
    if pgbouncer_running(layout):
        return
    conf = _write_pgbouncer_conf(layout)
    run_command([pgbouncer_bin(), "-d", str(conf)], what=f"starting pgbouncer (see {layout.dir}/pgbouncer.log)")
    wait_for(layout.bouncer_dsn(layout.node_names[0], user=SERVER_USER))


def stop_pgbouncer(layout: StackLayout) -> None:
    stop_pidfile(Path(layout.rundir) / "pgbouncer.pid")


def redis_running(layout: StackLayout) -> bool:
    return pid_alive(Path(layout.rundir) / "redis.pid")


def start_redis(layout: StackLayout) -> None:
    if layout.redis_port is None or redis_running(layout):
        return
    binary = redis_bin()
    if binary is None:
        return
    run_command(
        [
            binary,
            "--port",
            str(layout.redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "yes",
            "--pidfile",
            f"{layout.rundir}/redis.pid",
            "--logfile",
            f"{layout.dir}/redis.log",
            "--dir",
            layout.dir,
            "--maxmemory",
            "512mb",
            "--maxmemory-policy",
            "allkeys-lru",
        ],
        what="starting redis-server",
    )
    deadline = time.monotonic() + 10
    while port_is_free(layout.redis_port):
        if time.monotonic() > deadline:
            raise StackError(
                f"redis-server did not listen on {layout.redis_port}: see {layout.dir}/redis.log"
            )
        time.sleep(0.1)


def stop_redis(layout: StackLayout) -> None:
    stop_pidfile(Path(layout.rundir) / "redis.pid")
