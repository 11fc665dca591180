"""Finding the servers' programs: PostgreSQL, PgBouncer and Redis as Debian installs them."""

from __future__ import annotations

import shutil
from pathlib import Path

from ops.common.postgres import find_program
from ops.stack.layout import StackError


def pg_bindir() -> Path:
    """The newest installed PostgreSQL 15+ server binaries."""
    found = find_program("postgres", on_path="pg_ctl")
    if found is None:
        raise StackError(
            "PostgreSQL 15+ server binaries not found: install them with 'apt-get install postgresql postgresql-contrib'"
        )
    return found.resolve().parent


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
