"""The local stack: a primary, N streaming replicas, PgBouncer and (when installed) Redis.

No Docker engine runs on the development machines, so the topology is booted from the PostgreSQL and
PgBouncer binaries that Debian installs. Everything lives in one data folder and listens on loopback, on ports
far from the standard 5432/6379/6432.

The stack's layout is recorded in ``stack.json`` inside the data folder, so ``up`` on a running stack finds it
and changes nothing, and ``status``/``down`` need no flags. Callers use this package as one namespace
(``stack.up``, ``stack.promote``); the modules below it each hold one part.
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
from ops.stack.failover import (
    follow,
    is_streaming,
    promote,
    reattach,
    rewind,
    set_synchronous,
    wait_streaming,
    wal_position,
)
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
)
from ops.stack.nodes import clone_replica, node_running, start_node, stop_node
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
    "clone_replica",
    "current_primary",
    "destroy",
    "down",
    "follow",
    "is_streaming",
    "make_layout",
    "node_running",
    "node_status",
    "pg_bin",
    "pg_bindir",
    "pgbouncer_bin",
    "pgbouncer_running",
    "port_is_free",
    "primary_admin_dsn",
    "promote",
    "reattach",
    "redis_bin",
    "redis_running",
    "rewind",
    "set_synchronous",
    "start_node",
    "start_pgbouncer",
    "start_redis",
    "status",
    "stop_node",
    "stop_pgbouncer",
    "stop_redis",
    "up",
    "wait_streaming",
    "wal_position",
]
