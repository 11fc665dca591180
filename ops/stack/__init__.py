"""The local stack: a primary and N streaming replicas under Patroni (etcd), PgBouncer, Redis when installed.

No Docker engine runs on the development machines, so the topology is booted from the PostgreSQL and
PgBouncer binaries that Debian installs. Everything lives in one data folder and listens on loopback, on ports
far from the standard 5432/6379/6432.

The stack's layout is recorded in ``stack.json`` inside the data folder, so ``up`` on a running stack finds it
and changes nothing, and ``status``/``down`` need no flags. Callers use this package as one namespace
(``stack.up``, ``stack.kill_node``); the modules below it each hold one part.
"""

from ops.stack.binaries import pg_bin, pg_bindir, pgbouncer_bin, redis_bin
from ops.stack.cluster import (
    NodeStatus,
    current_primary,
    destroy,
    down,
    node_status,
    primary_admin_dsn,
    status,
    up,
)
from ops.stack.failover import is_streaming, wait_streaming, wal_position
from ops.stack.layout import (
    DATABASE,
    DEFAULT_BASE_PORT,
    DEFAULT_DIR,
    OPS_DIR,
    PROJECT_DIR,
    SERVER_USER,
    StackError,
    StackLayout,
    make_layout,
    port_is_free,
    port_offsets,
)
from ops.stack.nodes import node_running
from ops.stack.patroni import (
    cluster,
    etcd_running,
    kill_node,
    kill_postgres,
    leader,
    maintenance,
    patroni_running,
    patronictl,
    repoint_etcd,
    set_synchronous_mode,
    start_patroni,
    stop_patroni,
    switchover,
    wait_primary,
)
from ops.stack.services import (
    pgbouncer_running,
    redis_running,
    start_pgbouncer,
    start_redis,
    stop_pgbouncer,
    stop_redis,
)

__all__ = [
    "DATABASE",
    "DEFAULT_BASE_PORT",
    "DEFAULT_DIR",
    "OPS_DIR",
    "PROJECT_DIR",
    "SERVER_USER",
    "NodeStatus",
    "StackError",
    "StackLayout",
    "cluster",
    "current_primary",
    "destroy",
    "down",
    "etcd_running",
    "is_streaming",
    "kill_node",
    "kill_postgres",
    "leader",
    "maintenance",
    "make_layout",
    "node_running",
    "node_status",
    "patroni_running",
    "patronictl",
    "pg_bin",
    "pg_bindir",
    "pgbouncer_bin",
    "pgbouncer_running",
    "port_is_free",
    "port_offsets",
    "primary_admin_dsn",
    "redis_bin",
    "redis_running",
    "repoint_etcd",
    "set_synchronous_mode",
    "start_patroni",
    "start_pgbouncer",
    "start_redis",
    "status",
    "stop_patroni",
    "stop_pgbouncer",
    "stop_redis",
    "switchover",
    "up",
    "wait_primary",
    "wait_streaming",
    "wal_position",
]
