"""etcd and one Patroni per node: the failover engine of the local stack.

Patroni bootstraps the primary (initdb, then ``post_init`` creates the database), makes each replica with
pg_basebackup, owns the replication slots and is the only thing that promotes; etcd holds its leader lock. Both
are Debian's packages (``patroni`` 3.0.2, ``etcd-server`` 3.4), which run here as the ``postgres`` user with the
``etcd3`` store: Patroni 4.x from PyPI would need a second Python environment for the server user, and 3.0.2
has every feature the stack uses (``use_slots``, ``use_pg_rewind``, ``synchronous_mode``, the REST API).

Every daemon is started detached (``setsid``, parent init) with its pid in ``run/``, so the stack outlives the
command that booted it, and a drill can SIGKILL a node's Patroni and its PostgreSQL by pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg

from ops.stack.binaries import pg_bin, pg_bindir
from ops.stack.layout import DATABASE, SERVER_USER, StackError, StackLayout
from ops.stack.nodes import memory_parameters
from ops.stack.process import pid_alive, process_gone, run_command, server_uid_gid, spawn_daemon, stop_pidfile

SCOPE = "civic"
#: Failover timing. Patroni refuses a ``ttl`` below 20 s, and needs ``loop_wait + 2 * retry_timeout <= ttl`` so
#: that a leader whose etcd calls time out twice still demotes itself before its lock can expire. With a 1 s loop
#: a replica notices the expired lock within a second: failover takes ttl + about 1 s. docs/operations.md has
#: the production trade-off (a short ttl also fails over on a long GC pause or a slow disk).
TTL_S = 20
LOOP_WAIT_S = 1
RETRY_TIMEOUT_S = 3
#: A dead member's slot keeps WAL on the primary until Patroni drops it (ttl after the member vanished); this caps
#: what a stuck slot can hold in any case, so a lagging replica costs a re-clone, never a full disk.
MAX_SLOT_WAL_KEEP_SIZE = "2GB"
#: Parameters Patroni passes to postgres on its command line (so base.conf cannot set them): the old stack's.
DCS_PARAMETERS: dict[str, Any] = {
    "max_connections": 200,
    "max_wal_senders": 10,
    "max_replication_slots": 10,
    "wal_level": "replica",
    "hot_standby": "on",
    "wal_log_hints": "on",
    "wal_keep_size": "256MB",
    "max_slot_wal_keep_size": MAX_SLOT_WAL_KEEP_SIZE,
    # Bulk ingest commits each batch's per-worker transactions together with two-phase commit (ops.ingest):
    # a few prepared transactions per worker at once. Must be the same on every node, so Patroni owns it.
    "max_prepared_transactions": 64,
}


def patroni_bin(name: str = "patroni") -> str:
    path = Path("/usr/bin") / name
    if not path.exists():
        raise StackError(f"{name} not found: install it with 'apt-get install patroni'")
    return str(path)


def etcd_bin() -> str:
    path = Path("/usr/bin/etcd")
    if not path.exists():
        raise StackError("etcd not found: install it with 'apt-get install etcd-server'")
    return str(path)


def patroni_dir(layout: StackLayout) -> Path:
    return Path(layout.dir) / "patroni"


def config_path(layout: StackLayout, name: str) -> Path:
    return patroni_dir(layout) / f"{name}.yml"


def log_path(layout: StackLayout, name: str) -> Path:
    return patroni_dir(layout) / f"{name}.log"


def _pidfile(layout: StackLayout, what: str) -> Path:
    return Path(layout.rundir) / f"{what}.pid"


# --- etcd ------------------------------------------------------------------------------------------------------


def etcd_running(layout: StackLayout) -> bool:
    return pid_alive(_pidfile(layout, "etcd"))


def start_etcd(layout: StackLayout, *, timeout: float = 30.0) -> None:
    """One etcd member on loopback, its data under the stack folder; waits until it answers /health."""
    if not etcd_running(layout):
        data = Path(layout.dir) / "etcd"
        peer = f"http://127.0.0.1:{layout.etcd_peer_port}"
        spawn_daemon(
            [
                etcd_bin(),
                "--name",
                SCOPE,
                "--data-dir",
                str(data),
                "--listen-client-urls",
                layout.etcd_url,
                "--advertise-client-urls",
                layout.etcd_url,
                "--listen-peer-urls",
                peer,
                "--initial-advertise-peer-urls",
                peer,
                "--initial-cluster",
                f"{SCOPE}={peer}",
                "--initial-cluster-token",
                f"{SCOPE}-{layout.etcd_port}",
                "--initial-cluster-state",
                "new",
                # Loopback only: a short heartbeat keeps a lone member's own elections fast after a restart.
                "--heartbeat-interval",
                "100",
                "--election-timeout",
                "1000",
                "--auto-compaction-retention",
                "1h",
                "--log-level",
                "warn",
            ],
            log=Path(layout.dir) / "etcd.log",
            pidfile=_pidfile(layout, "etcd"),
        )
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            if httpx.get(f"{layout.etcd_url}/health", timeout=2.0).json().get("health") == "true":
                return
        if time.monotonic() > deadline:
            raise StackError(f"etcd did not become healthy within {timeout:.0f} s: see {layout.dir}/etcd.log")
        time.sleep(0.2)


def stop_etcd(layout: StackLayout) -> None:
    stop_pidfile(_pidfile(layout, "etcd"))


# --- Patroni's configuration -----------------------------------------------------------------------------------


def _post_init_script(layout: StackLayout) -> Path:
    """What the old stack did after initdb: create the database (roles and extensions come from migrations)."""
    script = patroni_dir(layout) / "post_init.sh"
    script.write_text(
        "#!/bin/sh\n"
        "# Run by Patroni once, after initdb on the first primary; $1 is a connection string to it.\n"
        "set -e\n"
        f"exec {pg_bin('psql')} -X -q -v ON_ERROR_STOP=1 -d \"$1\" -c 'CREATE DATABASE {DATABASE}'\n"
    )
    script.chmod(0o755)
    return script


def patroni_config(layout: StackLayout, name: str, *, etcd_port: int | None = None) -> dict[str, Any]:
    """Patroni's configuration of node ``name`` (written as JSON, which is YAML).

    ``etcd_port``: reach etcd there instead (the etcd-cut drill puts a stoppable proxy in between).
    """
    index = layout.node_names.index(name)
    port = layout.node_ports[index]
    rest = layout.patroni_ports[index]
    parameters: dict[str, Any] = {
        "unix_socket_directories": layout.rundir,
        # Patroni sets cluster_name to the scope, the same on every node; the node's own name is kept here so
        # a session can tell which node answered (SELECT current_setting('civic.node_name')).
        "civic.node_name": name,
        **memory_parameters(len(layout.node_ports), layout.memory_mb),
    }
    return {
        "scope": SCOPE,
        "namespace": "/civic/",
        "name": name,
        "log": {"level": "INFO", "format": "%(asctime)s %(levelname)s: %(message)s"},
        "restapi": {"listen": f"127.0.0.1:{rest}", "connect_address": f"127.0.0.1:{rest}"},
        "etcd3": {
            "hosts": [f"127.0.0.1:{etcd_port or layout.etcd_port}"],
            "protocol": "http",
            # Through a proxy, Patroni must not discover etcd's members and talk to their advertised URLs
            # directly (it does by default), or closing the proxy would cut nothing.
            **({"use_proxies": True} if etcd_port else {}),
        },
        "bootstrap": {
            "dcs": {
                "ttl": TTL_S,
                "loop_wait": LOOP_WAIT_S,
                "retry_timeout": RETRY_TIMEOUT_S,
                # A replica more than 16 MB behind is not promoted (async mode): it would lose that much.
                "maximum_lag_on_failover": 16 * 1024 * 1024,
                "synchronous_mode": layout.synchronous,
                # A primary whose PostgreSQL crashes (its Patroni alive) hands over to a replica at once instead
                # of restarting: Patroni 3.0's restart path (single-user crash recovery for pg_rewind, start
                # read-only, promote) took 9-12 s here, the handover 3-4 s. Patroni only does it when a healthy
                # replica is there, else it restarts. The cost, in asynchronous mode, is the same bound as a
                # node loss (docs/operations.md): a restart would have lost nothing.
                "primary_start_timeout": 0,
                "postgresql": {"use_pg_rewind": True, "use_slots": True, "parameters": DCS_PARAMETERS},
            },
            # The old stack's initdb: UTF-8, C.UTF-8 locale, data checksums (pg_rewind needs them or hints).
            "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}, "data-checksums"],
            "post_init": str(_post_init_script(layout)),
        },
        "postgresql": {
            "listen": f"127.0.0.1:{port}",
            "connect_address": f"127.0.0.1:{port}",
            "data_dir": str(layout.node_dir(name)),
            "bin_dir": str(pg_bindir()),
            "pgpass": str(patroni_dir(layout) / f"{name}.pgpass"),
            # ops/postgresql.conf (observability, checkpoints, autovacuum...) stays the base of every node.
            "custom_conf": str(Path(layout.dir) / "base.conf"),
            "pg_hba": [
                "# loopback-only development stack",
                "local all all trust",
                "host all all 127.0.0.1/32 trust",
                "local replication all trust",
                "host replication all 127.0.0.1/32 trust",
            ],
            "authentication": {
                "superuser": {"username": SERVER_USER},
                "replication": {"username": SERVER_USER},
                "rewind": {"username": SERVER_USER},
            },
            "parameters": parameters,
            "basebackup": [{"checkpoint": "fast"}],
            # A node whose rewind fails, or whose history diverged, is cloned again rather than left stuck.
            "remove_data_directory_on_rewind_failure": True,
            "remove_data_directory_on_diverged_timelines": True,
        },
    }


def write_config(layout: StackLayout, name: str, *, etcd_port: int | None = None) -> Path:
    folder = patroni_dir(layout)
    folder.mkdir(exist_ok=True)
    uid, gid = server_uid_gid()
    os.chown(folder, uid, gid)
    path = config_path(layout, name)
    path.write_text(json.dumps(patroni_config(layout, name, etcd_port=etcd_port), indent=2) + "\n")
    for file in (path, patroni_dir(layout) / "post_init.sh"):
        os.chown(file, uid, gid)
    path.chmod(0o600)
    return path


# --- Patroni's processes ---------------------------------------------------------------------------------------


def patroni_running(layout: StackLayout, name: str) -> bool:
    return pid_alive(_pidfile(layout, f"patroni-{name}"))


def start_patroni(layout: StackLayout, name: str, *, etcd_port: int | None = None) -> None:
    """Start node ``name``'s Patroni (no-op when it runs); it starts, clones or rewinds its PostgreSQL."""
    if patroni_running(layout, name):
        return
    conf = write_config(layout, name, etcd_port=etcd_port)
    spawn_daemon([patroni_bin(), str(conf)], log=log_path(layout, name), pidfile=_pidfile(layout, f"patroni-{name}"))


def postmaster_pid(layout: StackLayout, name: str) -> int | None:
    """The pid of node ``name``'s running postmaster (first line of ``postmaster.pid``), or None."""
    try:
        pid = int((layout.node_dir(name) / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return None if process_gone(pid) else pid


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            # The command may hold spaces and parentheses: the fields after the last ')' are fixed.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _kill(pids: list[int], *, timeout: float = 10.0) -> None:
    """SIGKILL every pid at once, then wait until they are gone (delivery is asynchronous: a port stays open
    until the process is)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(process_gone(pid) for pid in pids):
        time.sleep(0.01)


def _postgres_pids(layout: StackLayout, name: str) -> list[int]:
    pid = postmaster_pid(layout, name)
    return [] if pid is None else [pid, *_children(pid)]


def _patroni_pid(layout: StackLayout, name: str) -> list[int]:
    pidfile = _pidfile(layout, f"patroni-{name}")
    with contextlib.suppress(OSError, ValueError):
        if pid_alive(pidfile):
            return [int(pidfile.read_text().strip())]
    return []


def kill_postgres(layout: StackLayout, name: str) -> int | None:
    """SIGKILL node ``name``'s postmaster and its backends (a crash); returns the postmaster's pid."""
    pids = _postgres_pids(layout, name)
    _kill(pids)
    return pids[0] if pids else None


def kill_node(layout: StackLayout, name: str) -> None:
    """Node loss: SIGKILL Patroni and its PostgreSQL in the same instant, so nothing restarts, demotes or
    serves anything in between."""
    _kill([*_patroni_pid(layout, name), *_postgres_pids(layout, name)])


def repoint_etcd(layout: StackLayout, name: str, *, etcd_port: int | None, timeout: float = 30.0) -> None:
    """Restart node ``name``'s Patroni reaching etcd at ``etcd_port`` (None: etcd itself), PostgreSQL untouched.

    Patroni is SIGKILLed, so it neither stops PostgreSQL nor gives up its lock; the new Patroni finds the
    server running and its own name on the lock (ttl not yet expired) and carries on in the same role.
    """
    _kill(_patroni_pid(layout, name))
    start_patroni(layout, name, etcd_port=etcd_port)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        resp = rest(layout, name, "/health")
        if resp is not None and resp.status_code == 200 and resp.json().get("state") == "running":
            return
        time.sleep(0.2)
    raise StackError(f"{name}'s Patroni did not come back within {timeout:.0f} s: see {log_path(layout, name)}")


def stop_patroni(layout: StackLayout, name: str, *, timeout: float = 60.0) -> None:
    """Stop node ``name`` cleanly: SIGTERM makes Patroni shut PostgreSQL down (and give up the lock) first."""
    stop_pidfile(_pidfile(layout, f"patroni-{name}"), timeout=timeout)
    # A Patroni that had to be killed leaves its PostgreSQL running: stop it too.
    if postmaster_pid(layout, name) is not None:
        with contextlib.suppress(StackError):
            run_command(
                [pg_bin("pg_ctl"), "stop", "-w", "-t", "60", "-m", "fast", "-D", str(layout.node_dir(name))],
                what=f"stopping {name}",
            )


# --- asking Patroni ----------------------------------------------------------------------------------------------


def rest(layout: StackLayout, name: str, path: str, *, timeout: float = 2.0) -> httpx.Response | None:
    """GET ``path`` on node ``name``'s Patroni; None when it does not answer."""
    try:
        return httpx.get(layout.patroni_url(name) + path, timeout=timeout)
    except httpx.HTTPError:
        return None


def cluster(layout: StackLayout) -> dict[str, Any] | None:
    """Patroni's view of the cluster (``GET /cluster``) from the first node that answers."""
    for name in layout.node_names:
        resp = rest(layout, name, "/cluster")
        if resp is not None and resp.status_code == 200:
            body: dict[str, Any] = resp.json()
            return body
    return None


def leader(layout: StackLayout) -> str | None:
    """The member holding the leader lock, by Patroni's account (the gateway never relies on it)."""
    view = cluster(layout)
    if view is None:
        return None
    return next((str(m["name"]) for m in view.get("members", []) if m.get("role") == "leader"), None)


def accepts_writes(layout: StackLayout, name: str) -> bool:
    """Whether node ``name``'s Patroni says it is the primary *and* its PostgreSQL, asked directly, is out of
    recovery. Patroni alone is not enough: while it restarts a crashed PostgreSQL its ``/primary`` still
    answers 200 from the role it had cached."""
    resp = rest(layout, name, "/primary", timeout=1.0)
    if resp is None or resp.status_code != 200:
        return False
    try:
        with psycopg.connect(layout.direct_dsn(name, dbname="postgres"), autocommit=True) as conn:
            row = conn.execute("SELECT NOT pg_is_in_recovery()").fetchone()
    except psycopg.OperationalError:
        return False
    return bool(row and row[0])


def wait_primary(layout: StackLayout, name: str | None = None, *, timeout: float = 120.0) -> str:
    """Wait until ``name`` (or any node) is the primary and accepts writes (:func:`accepts_writes`)."""
    deadline = time.monotonic() + timeout
    while True:
        for node in [name] if name else layout.node_names:
            if accepts_writes(layout, node):
                return node
        if time.monotonic() > deadline:
            what = name or "any node"
            raise StackError(
                f"Patroni made no primary of {what} within {timeout:.0f} s: see {patroni_dir(layout)}/*.log"
            )
        time.sleep(0.25)


def patronictl(layout: StackLayout, *args: str, timeout: float = 120.0) -> str:
    """Run ``patronictl`` with the first node's configuration (any node's reaches the same etcd)."""
    return run_command(
        [patroni_bin("patronictl"), "-c", str(config_path(layout, layout.node_names[0])), *args],
        what=f"patronictl {' '.join(args)}",
        timeout=timeout,
    )


def switchover(layout: StackLayout, *, candidate: str | None = None, timeout: float = 60.0) -> str:
    """Planned switchover with ``patronictl switchover``; returns the new primary once it accepts writes."""
    current = leader(layout)
    if current is None:
        raise StackError("no leader to switch over from: see 'python -m ops stack status'")
    args = ["switchover", "--leader", current, "--force"]
    if candidate:
        args += ["--candidate", candidate]
    patronictl(layout, *args, timeout=timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = leader(layout)
        if new is not None and new != current:
            return wait_primary(layout, new, timeout=max(1.0, deadline - time.monotonic()))
        time.sleep(0.1)
    raise StackError(f"the switchover from {current} did not happen within {timeout:.0f} s")


@contextlib.contextmanager
def maintenance(layout: StackLayout) -> Iterator[None]:
    """Patroni's maintenance mode (``patronictl pause``) inside the block: no failover, and no correction.

    A replica's Patroni resumes paused WAL replay within a loop (PostgreSQL 14+ pauses replay on some parameter
    changes, and Patroni undoes it), so a test that pauses replay on purpose needs this around it.
    """
    patronictl(layout, "pause", "--wait")
    try:
        yield
    finally:
        patronictl(layout, "resume", "--wait")


def set_synchronous_mode(layout: StackLayout, enabled: bool) -> None:
    """Turn Patroni's ``synchronous_mode`` on or off in the cluster's dynamic configuration (etcd)."""
    node = leader(layout) or layout.node_names[0]
    resp = httpx.patch(
        layout.patroni_url(node) + "/config", json={"synchronous_mode": enabled}, timeout=10.0
    )
    if resp.status_code != 200:
        raise StackError(f"Patroni refused synchronous_mode={enabled}: {resp.status_code} {resp.text[:200]}")
