"""The local stack: a primary, N streaming replicas, PgBouncer and (when installed) Redis.

No Docker engine runs on the development machines, so the topology of DESIGN.md §2 is booted from the
PostgreSQL and PgBouncer binaries that Debian installs. Everything lives in one data folder and listens on
loopback, on ports far from the standard 5432/6379/6432.

PostgreSQL refuses to run as root, and developers and CI are root: when we are root every server runs as the
``postgres`` system user (via ``runuser``) and the data folder belongs to that user.

The stack's layout is recorded in ``stack.json`` inside the data folder, so ``up`` on a running stack finds it
and changes nothing, and ``status``/``down`` need no flags.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import hashlib
import json
import os
import pwd
import secrets
import shutil
import socket
import string
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import psycopg
from psycopg import sql

OPS_DIR = Path(__file__).resolve().parent
PROJECT_DIR = OPS_DIR.parent
DEFAULT_DIR = PROJECT_DIR / ".stack"
DEFAULT_BASE_PORT = 55432
DATABASE = "civic"
SERVER_USER = "postgres"


class StackError(RuntimeError):
    """A problem the operator can fix; its message is one line that says how."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class StackLayout:
    """Where each server of the stack lives. Serialised to ``stack.json``."""

    dir: str
    node_ports: tuple[int, ...]
    pgbouncer_port: int
    redis_port: int | None
    #: RAM each node may plan for; None scales to the machine (RAM / nodes). Throwaway stacks pass a small one.
    memory_mb: int | None = None

    @property
    def node_names(self) -> list[str]:
        return [f"node{i + 1}" for i in range(len(self.node_ports))]

    @property
    def rundir(self) -> str:
        return str(Path(self.dir) / "run")

    def node_dir(self, name: str) -> Path:
        return Path(self.dir) / name

    def direct_dsn(self, name: str, *, dbname: str = DATABASE, user: str = SERVER_USER) -> str:
        """A DSN straight to one node, bypassing PgBouncer (admin and replication checks only)."""
        port = self.node_ports[self.node_names.index(name)]
        return f"host=127.0.0.1 port={port} dbname={dbname} user={user} connect_timeout=3"

    def bouncer_dsn(self, alias: str, *, user: str = "gateway") -> str:
        """A DSN to one PgBouncer alias (``node1`` transaction mode, ``node1_session`` session mode)."""
        return f"host=127.0.0.1 port={self.pgbouncer_port} dbname={alias} user={user} connect_timeout=3"

    def gateway_env(self) -> dict[str, str]:
        """Environment variables that point a gateway at this stack."""
        nodes = ",".join(f"{n}={self.bouncer_dsn(n)}" for n in self.node_names)
        admin = ",".join(f"{n}={self.bouncer_dsn(n + '_session', user=SERVER_USER)}" for n in self.node_names)
        env = {
            "GATEWAY_NODES": nodes,
            "GATEWAY_ADMIN_NODES": admin,
            "GATEWAY_ROUTING_METADATA": "true",
            "GATEWAY_CURSOR_SECRET": self.dev_secret("cursor-secret"),
            # The dev write token itself stays in the data folder; only its hash is configured.
            "GATEWAY_WRITE_TOKENS": "sha256:" + hashlib.sha256(self.dev_secret("dev-write-token").encode()).hexdigest(),
        }
        if self.redis_port:
            env["GATEWAY_REDIS_URL"] = f"redis://127.0.0.1:{self.redis_port}/0"
        return env

    def dev_secret(self, name: str) -> str:
        """A random secret kept in the data folder, so a restarted dev gateway keeps reading old cursors."""
        path = Path(self.dir) / name
        if not path.exists():
            path.write_text(secrets.token_urlsafe(32))
            path.chmod(0o600)
        return path.read_text().strip()

    def save(self) -> None:
        path = Path(self.dir) / "stack.json"
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2))

    @classmethod
    def load(cls, directory: Path) -> StackLayout | None:
        path = directory / "stack.json"
        if not path.exists():
            return None
        raw = json.loads(path.read_text())
        return cls(
            dir=raw["dir"],
            node_ports=tuple(raw["node_ports"]),
            pgbouncer_port=raw["pgbouncer_port"],
            redis_port=raw.get("redis_port"),
            memory_mb=raw.get("memory_mb"),
        )


# --- binaries -------------------------------------------------------------------------------------------


def pg_bindir() -> Path:
    """The newest installed PostgreSQL 15+ server binaries (Debian keeps them outside PATH)."""
    candidates = sorted(
        (Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin") if Path(p, "postgres").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    for path in reversed(candidates):
        if path.parent.name.isdigit() and int(path.parent.name) >= 15:
            return path
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    raise StackError(
        "PostgreSQL 15+ server binaries not found: install them with 'apt-get install postgresql postgresql-contrib'"
    )


def pg_bin(name: str) -> str:
    path = pg_bindir() / name
    if not path.exists():
        raise StackError(f"{name} not found in {path.parent}: install it with 'apt-get install postgresql'")
    return str(path)


def pgbouncer_bin() -> str:
    found = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
    )
    if not found:
        raise StackError("pgbouncer not found: install it with 'apt-get install pgbouncer'")
    return found


def redis_bin() -> str | None:
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )


# --- running as the postgres user ---------------------------------------------------------------------------


def _is_root() -> bool:
    return os.geteuid() == 0


def _as_server_user(cmd: Sequence[str]) -> list[str]:
    if _is_root():
        return ["runuser", "-u", SERVER_USER, "--", *cmd]
    return list(cmd)


def _run(cmd: Sequence[str], *, what: str, timeout: float = 120.0) -> str:
    proc = subprocess.run(
        _as_server_user(cmd), capture_output=True, text=True, timeout=timeout, check=False, cwd="/"
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise StackError(f"{what} failed: {' | '.join(tail)}")
    return proc.stdout


def _server_uid_gid() -> tuple[int, int]:
    if not _is_root():
        return os.geteuid(), os.getegid()
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise StackError(
            "no 'postgres' system user: install PostgreSQL with 'apt-get install postgresql'"
        ) from None
    return entry.pw_uid, entry.pw_gid


def _prepare_dir(directory: Path) -> None:
    """Create the data folder for the server user, or explain why it cannot be used."""
    uid, gid = _server_uid_gid()
    if directory.exists():
        owner = directory.stat().st_uid
        if owner not in (uid, os.geteuid()):
            name = pwd.getpwuid(owner).pw_name if owner >= 0 else str(owner)
            raise StackError(
                f"data folder {directory} belongs to '{name}': remove it, 'chown -R {SERVER_USER} {directory}', "
                "or pass --dir with another folder"
            )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "run").mkdir(exist_ok=True)
    for path in [directory, directory / "run"]:
        os.chown(path, uid, gid)
        path.chmod(0o700)
    # The server user must be able to walk down to the folder; say so once instead of failing in initdb.
    for parent in directory.resolve().parents:
        mode = parent.stat().st_mode
        if _is_root() and not mode & 0o001 and parent.stat().st_uid != uid:
            raise StackError(
                f"{parent} is not searchable by '{SERVER_USER}': 'chmod o+x {parent}' or pass --dir under /tmp"
            )


# --- ports -----------------------------------------------------------------------------------------------------


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _check_ports(layout: StackLayout) -> None:
    ports = [*layout.node_ports, layout.pgbouncer_port]
    if layout.redis_port:
        ports.append(layout.redis_port)
    busy = [p for p in ports if not port_is_free(p)]
    if busy:
        raise StackError(
            f"port(s) {', '.join(map(str, busy))} on 127.0.0.1 are busy: stop what listens there "
            "('ss -ltnp') or pass --base-port with another range"
        )


def make_layout(
    directory: Path, *, replicas: int, base_port: int, with_redis: bool, memory_mb: int | None = None
) -> StackLayout:
    return StackLayout(
        dir=str(directory.resolve()),
        node_ports=tuple(base_port + i for i in range(replicas + 1)),
        pgbouncer_port=base_port + 1000,
        redis_port=(base_port + 950) if with_redis else None,
        memory_mb=memory_mb,
    )


# --- PostgreSQL nodes ------------------------------------------------------------------------------------------


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


def _write_node_conf(layout: StackLayout, name: str) -> None:
    node_dir = layout.node_dir(name)
    base = Path(layout.dir) / "base.conf"
    port = layout.node_ports[layout.node_names.index(name)]
    conf = (
        f"# written by ops/stack.py; shared settings live in ops/postgresql.conf (copied to {base})\n"
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
    uid, gid = _server_uid_gid()
    for file in ("postgresql.conf", "pg_hba.conf"):
        os.chown(node_dir / file, uid, gid)


def _copy_base_conf(layout: StackLayout) -> None:
    target = Path(layout.dir) / "base.conf"
    shutil.copyfile(OPS_DIR / "postgresql.conf", target)
    uid, gid = _server_uid_gid()
    os.chown(target, uid, gid)


def node_running(layout: StackLayout, name: str) -> bool:
    node_dir = layout.node_dir(name)
    if not (node_dir / "PG_VERSION").exists():
        return False
    proc = subprocess.run(
        _as_server_user([pg_bin("pg_ctl"), "status", "-D", str(node_dir)]),
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
    _run(
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
    _run(
        [pg_bin("pg_ctl"), "stop", "-w", "-t", "60", "-m", mode, "-D", str(layout.node_dir(name))],
        what=f"stopping {name}",
    )


def _wait_for(dsn: str, *, timeout: float = 30.0) -> None:
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


def _init_primary(layout: StackLayout, name: str) -> None:
    node_dir = layout.node_dir(name)
    _run(
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
    _write_node_conf(layout, name)
    start_node(layout, name)
    with psycopg.connect(layout.direct_dsn(name, dbname="postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))


def clone_replica(layout: StackLayout, name: str, *, source: str) -> None:
    """Make ``name`` a fresh streaming replica of ``source`` with its own replication slot."""
    node_dir = layout.node_dir(name)
    if node_dir.exists():
        _run(["rm", "-rf", str(node_dir)], what=f"removing old {name}")
    src_port = layout.node_ports[layout.node_names.index(source)]
    with psycopg.connect(layout.direct_dsn(source, dbname="postgres"), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s AND NOT active",
            [name],
        )
    _run(
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
    _write_node_conf(layout, name)
    start_node(layout, name)


# --- PgBouncer and Redis -----------------------------------------------------------------------------------------


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
    uid, gid = _server_uid_gid()
    for file in (conf, Path(layout.dir) / "userlist.txt"):
        os.chown(file, uid, gid)
    return conf


def _pid_alive(pidfile: Path) -> bool:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pgbouncer_running(layout: StackLayout) -> bool:
    return _pid_alive(Path(layout.rundir) / "pgbouncer.pid")


def start_pgbouncer(layout: StackLayout) -> None:
    if pgbouncer_running(layout):
        return
    conf = _write_pgbouncer_conf(layout)
    _run([pgbouncer_bin(), "-d", str(conf)], what=f"starting pgbouncer (see {layout.dir}/pgbouncer.log)")
    _wait_for(layout.bouncer_dsn(layout.node_names[0], user=SERVER_USER))


def stop_pgbouncer(layout: StackLayout) -> None:
    _stop_pidfile(Path(layout.rundir) / "pgbouncer.pid")


def redis_running(layout: StackLayout) -> bool:
    return _pid_alive(Path(layout.rundir) / "redis.pid")


def start_redis(layout: StackLayout) -> None:
    if layout.redis_port is None or redis_running(layout):
        return
    binary = redis_bin()
    if binary is None:
        return
    _run(
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
    _stop_pidfile(Path(layout.rundir) / "redis.pid")


def _stop_pidfile(pidfile: Path, *, timeout: float = 10.0) -> None:
    if not _pid_alive(pidfile):
        return
    pid = int(pidfile.read_text().strip())
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 15)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 9)


# --- the whole stack ------------------------------------------------------------------------------------------------


def up(
    directory: Path = DEFAULT_DIR,
    *,
    replicas: int = 2,
    base_port: int = DEFAULT_BASE_PORT,
    memory_mb: int | None = None,
) -> StackLayout:
    """Boot the stack, or find it running and change nothing. Returns its layout."""
    directory = directory.resolve()
    for tool in ("initdb", "pg_ctl", "pg_basebackup"):
        pg_bin(tool)
    pgbouncer_bin()
    existing = StackLayout.load(directory) if directory.exists() else None
    if existing is not None:
        layout = existing
        _prepare_dir(directory)
    else:
        layout = make_layout(
            directory,
            replicas=replicas,
            base_port=base_port,
            with_redis=redis_bin() is not None,
            memory_mb=memory_mb,
        )
        _prepare_dir(directory)
        _check_ports(layout)
    _copy_base_conf(layout)
    primary = layout.node_names[0]
    if not (layout.node_dir(primary) / "PG_VERSION").exists():
        _init_primary(layout, primary)
    fresh_replicas = []
    for name in layout.node_names:
        if (layout.node_dir(name) / "PG_VERSION").exists():
            start_node(layout, name)
        else:
            fresh_replicas.append(name)
    for name in fresh_replicas:
        clone_replica(layout, name, source=current_primary(layout) or primary)
    layout.save()
    start_pgbouncer(layout)
    start_redis(layout)
    for name in layout.node_names:
        _wait_for(layout.direct_dsn(name))
    return layout


def down(directory: Path = DEFAULT_DIR) -> bool:
    """Stop every server of the stack; the data stays. Returns False when no stack was found."""
    layout = StackLayout.load(directory.resolve())
    if layout is None:
        return False
    stop_pgbouncer(layout)
    stop_redis(layout)
    for name in reversed(layout.node_names):
        with contextlib.suppress(StackError):
            stop_node(layout, name)
    return True


def destroy(directory: Path) -> None:
    """Stop the stack and delete its data folder."""
    down(directory)
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


def status(directory: Path = DEFAULT_DIR) -> list[NodeStatus] | None:
    layout = StackLayout.load(directory.resolve())
    if layout is None:
        return None
    return [node_status(layout, n) for n in layout.node_names]


# --- failover operations (the drills in ops/drills.py and the runbook in docs/operations.md) -------------------------
#
# Appended for the failover drills; nothing above depends on them. A promotion needs no configuration change
# elsewhere: PgBouncer has one alias per node and the gateway discovers roles, so only the standbys have to be
# pointed at the new primary, each with a replication slot of its own there.


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
    from psycopg import sql

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
    from psycopg import sql

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
    uid, gid = _server_uid_gid()
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
    _run(
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
    _write_node_conf(layout, name)
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
