"""Apply the numbered SQL files in ``migrations/sql`` to the primary, each exactly once, in order.

Two gateways starting together must not race, so the whole run holds a session-level advisory lock; that is
why the runner needs a session (a direct connection or a PgBouncer alias in session mode), never a
transaction-pooled one.

A file whose first line is ``-- migrate: no-transaction`` runs outside a transaction, one statement at a time
(statements end with ``;`` at the end of a line), because ``CREATE INDEX CONCURRENTLY`` refuses to run inside
one. Such statements must be idempotent (``IF NOT EXISTS``) since a failure can leave earlier ones applied.
Every other file runs in one transaction together with its bookkeeping row, so it is applied whole or not at all.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psycopg

SQL_DIR = Path(__file__).resolve().parent / "sql"
LOCK_KEY = 0x63697669  # "civi": one advisory lock id for every migration runner of this project
NO_TRANSACTION = "-- migrate: no-transaction"
_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

Conn = psycopg.Connection[Any]


class MigrationError(RuntimeError):
    """A migration could not be applied, or the history disagrees with the files."""


@dataclasses.dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def transactional(self) -> bool:
        return not self.sql.lstrip().startswith(NO_TRANSACTION)

    def statements(self) -> list[str]:
        parts = re.split(r";[ \t]*$", self.sql, flags=re.MULTILINE)
        return [p.strip() for p in parts if _strip_comments(p).strip()]


def _strip_comments(sql: str) -> str:
    return "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))


def discover(directory: Path = SQL_DIR) -> list[Migration]:
    """The migration files in version order; duplicate versions are an error."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_RE.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_lower_snake.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"two migrations share version {version}")
        found[version] = Migration(version, match.group(2), path.read_text())
    return [found[v] for v in sorted(found)]


def _ensure_history(conn: Conn) -> None:
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS public.schema_migration (
            version    integer PRIMARY KEY,
            name       text NOT NULL,
            checksum   text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def migrate(dsn: str, *, migrations: Iterable[Migration] | None = None) -> list[Migration]:
    """Apply pending migrations; returns the ones applied by this call (empty when up to date)."""
    todo = list(migrations) if migrations is not None else discover()
    applied_now: list[Migration] = []
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])
        try:
            _ensure_history(conn)
            rows = conn.execute("SELECT version, checksum FROM public.schema_migration").fetchall()
            done = {int(v): str(c) for v, c in rows}
            for mig in todo:
                if mig.version in done:
                    if done[mig.version] != mig.checksum:
                        raise MigrationError(
                            f"migration {mig.version:04d}_{mig.name} changed after it was applied; "
                            "add a new migration instead of editing an applied one"
                        )
                    continue
                _apply(conn, mig)
                applied_now.append(mig)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])
    return applied_now


def _apply(conn: Conn, mig: Migration) -> None:
    record = "INSERT INTO public.schema_migration (version, name, checksum) VALUES (%s, %s, %s)"
    try:
        if mig.transactional:
            with conn.transaction():
                conn.execute(mig.sql.encode())
                conn.execute(record, [mig.version, mig.name, mig.checksum])
        else:
            for statement in mig.statements():
                conn.execute(statement.encode())
            conn.execute(record, [mig.version, mig.name, mig.checksum])
    except psycopg.Error as exc:
        raise MigrationError(f"migration {mig.version:04d}_{mig.name} failed: {exc}") from exc


def applied_versions(dsn: str) -> list[int]:
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        _ensure_history(conn)
        return [int(r[0]) for r in conn.execute("SELECT version FROM public.schema_migration ORDER BY 1")]
