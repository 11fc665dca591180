"""Migrations: ordered, exactly once, safe when two runners start together, non-transactional files."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from migrations import runner
from ops import stack


@pytest.fixture()
def scratch_dsn(stack_layout: stack.StackLayout) -> Iterator[str]:
    """A fresh database on the primary (direct connection: PgBouncer only knows the civic database)."""
    name = f"mig_{uuid.uuid4().hex[:10]}"
    admin = stack_layout.direct_dsn("node1", dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield stack_layout.direct_dsn("node1", dbname=name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_second_run_applies_nothing(scratch_dsn: str) -> None:
    first = runner.migrate(scratch_dsn)
    assert [m.version for m in first] == [m.version for m in runner.discover()]
    assert runner.migrate(scratch_dsn) == []
    assert runner.applied_versions(scratch_dsn) == [m.version for m in runner.discover()]


def test_two_runners_at_once_apply_each_file_exactly_once(scratch_dsn: str) -> None:
    results: list[list[runner.Migration]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(runner.migrate(scratch_dsn))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    applied = sorted(m.version for r in results for m in r)
    assert applied == [m.version for m in runner.discover()]  # each version once, across both runners


def test_no_transaction_file_runs_create_index_concurrently(scratch_dsn: str, tmp_path: Path) -> None:
    (tmp_path / "0001_t.sql").write_text("CREATE TABLE t (a int);\n")
    (tmp_path / "0002_idx.sql").write_text(
        "-- migrate: no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS t_a ON t (a);\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_a2 ON t (a);\n"
    )
    applied = runner.migrate(scratch_dsn, migrations=runner.discover(tmp_path))
    assert [m.version for m in applied] == [1, 2]
    with psycopg.connect(scratch_dsn) as conn:
        names = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 't'")}
    assert names == {"t_a", "t_a2"}


def test_failed_file_leaves_nothing_and_edited_file_is_refused(scratch_dsn: str, tmp_path: Path) -> None:
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE ok (a int);\n")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE half (a int);\nSELECT no_such_function();\n")
    with pytest.raises(runner.MigrationError, match="0002_bad"):
        runner.migrate(scratch_dsn, migrations=runner.discover(tmp_path))
    with psycopg.connect(scratch_dsn) as conn:
        assert conn.execute("SELECT to_regclass('half')").fetchone() == (None,)
    assert runner.applied_versions(scratch_dsn) == [1]
    (tmp_path / "0002_bad.sql").unlink()
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE ok (a bigint);\n")
    with pytest.raises(runner.MigrationError, match="changed after it was applied"):
        runner.migrate(scratch_dsn, migrations=runner.discover(tmp_path))
