"""The local stack: roles, streaming replication through PgBouncer, idempotent `up`, clear errors."""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest

from ops import stack
from tests.helpers import eventually, free_base_port


def test_one_primary_two_streaming_replicas(stack_layout: stack.StackLayout) -> None:
    rows = stack.status(Path(stack_layout.dir))
    assert rows is not None
    assert [r.role for r in rows] == ["primary", "replica", "replica"]
    assert all(r.running and r.lsn for r in rows)
    with psycopg.connect(stack_layout.direct_dsn("node1"), autocommit=True) as conn:
        senders = conn.execute(
            "SELECT application_name, state FROM pg_stat_replication ORDER BY 1"
        ).fetchall()
        slots = conn.execute("SELECT slot_name, active FROM pg_replication_slots ORDER BY 1").fetchall()
    assert [s[1] for s in senders] == ["streaming", "streaming"]
    assert slots == [("node2", True), ("node3", True)]


def test_patroni_runs_the_nodes_with_the_old_settings(stack_layout: stack.StackLayout) -> None:
    assert stack.leader(stack_layout) == "node1"
    assert all(stack.patroni_running(stack_layout, n) for n in stack_layout.node_names)
    assert stack.etcd_running(stack_layout)
    for name, role in zip(stack_layout.node_names, ("primary", "replica", "replica"), strict=True):
        resp = httpx.get(f"{stack_layout.patroni_url(name)}/{role}", timeout=5)
        assert resp.status_code == 200, (name, role, resp.text)
    config = httpx.get(f"{stack_layout.patroni_url('node1')}/config", timeout=5).json()
    assert (config["ttl"], config["loop_wait"], config["retry_timeout"]) == (20, 1, 3)
    assert config["loop_wait"] + 2 * config["retry_timeout"] <= config["ttl"]
    assert config["postgresql"]["use_pg_rewind"] is True and config["postgresql"]["use_slots"] is True
    for name in stack_layout.node_names:
        with psycopg.connect(stack_layout.direct_dsn(name), autocommit=True) as conn:
            settings = dict(
                conn.execute(
                    "SELECT name, setting FROM pg_settings WHERE name IN ('max_slot_wal_keep_size', "
                    "'shared_preload_libraries', 'data_checksums', 'max_connections', 'wal_log_hints', "
                    "'lc_collate', 'compute_query_id')"
                ).fetchall()
            )
            node_name = conn.execute("SELECT current_setting('civic.node_name')").fetchone()
        assert node_name == (name,)
        assert settings == {
            "max_slot_wal_keep_size": "2048",  # MB
            "shared_preload_libraries": "pg_stat_statements,auto_explain",
            "data_checksums": "on",
            "max_connections": "200",
            "wal_log_hints": "on",
            "lc_collate": "C.UTF-8",
            "compute_query_id": "on",
        }, name


def test_row_committed_on_primary_appears_on_both_replicas_through_pgbouncer(
    stack_layout: stack.StackLayout, admin_conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    admin_conn.execute("CREATE TABLE IF NOT EXISTS replication_probe (v text PRIMARY KEY)")
    admin_conn.execute("GRANT SELECT ON replication_probe TO gateway")
    marker = uuid.uuid4().hex
    with psycopg.connect(stack_layout.bouncer_dsn("node1"), autocommit=True, prepare_threshold=None) as conn:
        conn.execute("SET LOCAL statement_timeout = '1s'")  # harmless outside a transaction block
    admin_conn.execute("INSERT INTO replication_probe VALUES (%s)", [marker])
    for replica in ("node2", "node3"):
        with psycopg.connect(
            stack_layout.bouncer_dsn(replica), autocommit=True, prepare_threshold=None
        ) as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)

            def received(conn: psycopg.Connection[tuple[object, ...]] = conn) -> bool:
                row = conn.execute("SELECT count(*) FROM replication_probe WHERE v = %s", [marker]).fetchone()
                return row == (1,)

            eventually(received, timeout_s=10, what=f"{replica} receiving the row")


def test_gateway_role_carries_statement_timeout(stack_layout: stack.StackLayout) -> None:
    # Through transaction pooling a session SET would be lost; the limit must come from the role itself.
    with psycopg.connect(stack_layout.bouncer_dsn("node2"), autocommit=True, prepare_threshold=None) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("5s",)


def test_up_on_a_running_stack_changes_nothing(stack_layout: stack.StackLayout) -> None:
    pids = {
        n: (stack_layout.node_dir(n) / "postmaster.pid").read_text().split()[0]
        for n in stack_layout.node_names
    }
    again = stack.up(Path(stack_layout.dir), replicas=5, base_port=1)
    assert again == stack_layout
    assert {
        n: (stack_layout.node_dir(n) / "postmaster.pid").read_text().split()[0] for n in again.node_names
    } == pids


def test_busy_port_gets_one_clear_line(tmp_path: Path, stack_layout: stack.StackLayout) -> None:
    busy = stack_layout.node_ports[0]
    directory = Path(tempfile.mkdtemp(prefix="civic-busy-"))
    try:
        with pytest.raises(stack.StackError) as err:
            stack.up(directory, replicas=1, base_port=busy)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    message = str(err.value)
    assert "busy" in message and str(busy) in message and "--base-port" in message
    assert "\n" not in message


def test_missing_binary_names_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(Path, "exists", lambda self: False)
    with pytest.raises(stack.StackError, match="apt-get install pgbouncer"):
        stack.pgbouncer_bin()
    monkeypatch.setattr(glob, "glob", lambda pattern: [])
    with pytest.raises(stack.StackError, match="apt-get install postgresql"):
        stack.pg_bindir()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a folder owned by another user")
def test_data_folder_owned_by_someone_else(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    os.chown(foreign, 65534, 65534)  # nobody
    with pytest.raises(stack.StackError, match="belongs to") as err:
        stack.up(foreign, replicas=1, base_port=free_base_port(replicas=1))
    assert "--dir" in str(err.value)
