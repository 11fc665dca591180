"""Where a stack lives: its data folder, its ports, and the ``stack.json`` that records them."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
import socket
from pathlib import Path

OPS_DIR = Path(__file__).resolve().parents[1]  # the config templates stay at the top of ops/
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
    #: Each node's Patroni REST API (``/primary``, ``/replica``, ``/health``), in node order.
    patroni_ports: tuple[int, ...] = ()
    #: The one etcd member: its client port, and the peer port it must listen on even alone.
    etcd_port: int = 0
    etcd_peer_port: int = 0
    #: Patroni's ``synchronous_mode``: every commit waits for one standby (``stack up --sync``).
    synchronous: bool = False

    @property
    def node_names(self) -> list[str]:
        return [f"node{i + 1}" for i in range(len(self.node_ports))]

    @property
    def rundir(self) -> str:
        return str(Path(self.dir) / "run")

    def node_dir(self, name: str) -> Path:
        return Path(self.dir) / name

    def node_port(self, name: str) -> int:
        return self.node_ports[self.node_names.index(name)]

    def patroni_url(self, name: str) -> str:
        """The base URL of ``name``'s Patroni REST API."""
        return f"http://127.0.0.1:{self.patroni_ports[self.node_names.index(name)]}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_port}"

    def direct_dsn(self, name: str, *, dbname: str = DATABASE, user: str = SERVER_USER) -> str:
        """A DSN straight to one node, bypassing PgBouncer (admin and replication checks only)."""
        return f"host=127.0.0.1 port={self.node_port(name)} dbname={dbname} user={user} connect_timeout=3"

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
        if not raw.get("patroni_ports"):
            raise StackError(
                f"the stack in {directory} was made before its nodes ran under Patroni: "
                f"'python -m ops stack down --dir {directory}' with the old code, then remove the folder"
            )
        return cls(
            dir=raw["dir"],
            node_ports=tuple(raw["node_ports"]),
            pgbouncer_port=raw["pgbouncer_port"],
            redis_port=raw.get("redis_port"),
            memory_mb=raw.get("memory_mb"),
            patroni_ports=tuple(raw["patroni_ports"]),
            etcd_port=raw["etcd_port"],
            etcd_peer_port=raw["etcd_peer_port"],
            synchronous=bool(raw.get("synchronous", False)),
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


#: Where each server listens, as offsets from the base port (PostgreSQL nodes are base + 0..replicas).
PATRONI_OFFSET = 800
ETCD_OFFSET = 900
REDIS_OFFSET = 950
PGBOUNCER_OFFSET = 1000


def port_offsets(replicas: int) -> list[int]:
    """Every offset from the base port a stack of ``replicas`` replicas listens on (tests pick free blocks)."""
    nodes = range(replicas + 1)
    return [
        *nodes,
        *(PATRONI_OFFSET + i for i in nodes),
        ETCD_OFFSET,
        ETCD_OFFSET + 1,
        REDIS_OFFSET,
        PGBOUNCER_OFFSET,
    ]


def check_ports(layout: StackLayout) -> None:
    ports = [*layout.node_ports, *layout.patroni_ports, layout.etcd_port, layout.etcd_peer_port, layout.pgbouncer_port]
    if layout.redis_port:
        ports.append(layout.redis_port)
    busy = [p for p in ports if not port_is_free(p)]
    if busy:
        raise StackError(
            f"port(s) {', '.join(map(str, busy))} on 127.0.0.1 are busy: stop what listens there "
            "('ss -ltnp') or pass --base-port with another range"
        )


def make_layout(
    directory: Path,
    *,
    replicas: int,
    base_port: int,
    with_redis: bool,
    memory_mb: int | None = None,
    synchronous: bool = False,
) -> StackLayout:
    return StackLayout(
        dir=str(directory.resolve()),
        node_ports=tuple(base_port + i for i in range(replicas + 1)),
        pgbouncer_port=base_port + PGBOUNCER_OFFSET,
        redis_port=(base_port + REDIS_OFFSET) if with_redis else None,
        memory_mb=memory_mb,
        patroni_ports=tuple(base_port + PATRONI_OFFSET + i for i in range(replicas + 1)),
        etcd_port=base_port + ETCD_OFFSET,
        etcd_peer_port=base_port + ETCD_OFFSET + 1,
        synchronous=synchronous,
    )
