"""Online bloat repair: ``python -m ops repack`` (pg_repack) on the real stack, and the drill that shows searches
keep working during it."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from ops import stack
from ops.drills.repack import bloat, pick_partition, run_repack_drill
from ops.maintenance import repack
from tests.conftest import TEST_CORPUS_PAGES


def _needs_pg_repack() -> None:
    try:
        repack.pg_repack_binary()
    except repack.RepackError as exc:
        pytest.skip(str(exc))


def test_headroom_rule() -> None:
    space = repack.DiskSpace("/data", total_bytes=100_000, free_bytes=30_000)
    # 30 000 free - 2 x 5 000 = 20 000 left, the reserve is 10 % = 10 000: fine.
    assert repack.headroom(space, 5_000, space_factor=2.0, reserve_percent=10.0).ok
    # 30 000 - 2 x 11 000 = 8 000 left, under the 10 000 reserve: refused.
    refused = repack.headroom(space, 11_000, space_factor=2.0, reserve_percent=10.0)
    assert not refused.ok and refused.needed_bytes == 22_000 and refused.reserve_bytes == 10_000


def test_disk_space_is_measured_on_the_server(admin_dsn: str, stack_layout: stack.StackLayout) -> None:
    with psycopg.connect(admin_dsn, autocommit=True, prepare_threshold=None) as conn:
        space = repack.disk_space(conn)
    # The test stack runs on this machine: the server's df and ours must agree on the same filesystem.
    local = shutil.disk_usage(space.path)
    assert space.total_bytes == local.total
    assert abs(space.free_bytes - local.free) < 0.05 * local.total


def test_refuses_when_the_disk_headroom_is_too_small(admin_dsn: str) -> None:
    _needs_pg_repack()
    name, *_ = pick_partition(admin_dsn, None)
    with psycopg.connect(admin_dsn, autocommit=True, prepare_threshold=None) as conn:
        before = {c.name: c for c in repack.partitions(conn, analyze=False)}[name]
    out = io.StringIO()
    # A reserve of 99.99 % of the disk can never stay free: the run must stop before touching anything.
    status, outcomes = repack.run(admin_dsn, names=[name], reserve_percent=99.99, out=out)
    assert status == repack.EXIT_REFUSED
    assert [o.status for o in outcomes] == ["refused"] and "not enough disk headroom" in outcomes[0].message
    assert "REFUSED" in out.getvalue()
    with psycopg.connect(admin_dsn, autocommit=True, prepare_threshold=None) as conn:
        after = {c.name: c for c in repack.partitions(conn, analyze=False)}[name]
    assert after.relfilenode == before.relfilenode  # not rewritten


def test_unknown_partition_is_an_error(admin_dsn: str) -> None:
    _needs_pg_repack()
    with pytest.raises(repack.RepackError, match="not partitions of meeting_page"):
        repack.run(admin_dsn, names=["meeting_page_1066"], out=io.StringIO())


@pytest.mark.slow
def test_repack_drill_keeps_searches_working(stack_layout: stack.StackLayout, tmp_path: Path) -> None:
    _needs_pg_repack()
    # A 1 % reserve: the test's partition is a few MB, and the shared machine's disk is not this test's subject
    # (the refusal has a test of its own).
    report = run_repack_drill(
        stack_layout, clients=4, rounds=3, before_s=2.0, after_s=2.0, pages=TEST_CORPUS_PAGES, reports=tmp_path,
        name="repack-test", reserve_percent=1.0,
    )
    assert json.loads((tmp_path / "repack-test.json").read_text())["drill"] == "repack"
    part = report["partition"]
    assert part["relfilenode_changed"], report["repack"]["log"]
    assert part["rows_after"] == part["rows"]  # nothing lost in the rewrite
    # Three rounds of update-and-vacuum left most of the file dead; the rewrite gives it back.
    assert part["total_bytes_after"] < 0.8 * part["total_bytes_before"], part
    assert report["reads"]["failed"] == 0, report["reads"]
    assert report["reads_during_repack"]["total"] > 0
    assert all(t["met"] for t in report["targets"]), report["targets"]
    # The partition stays searchable through the gateway-independent path too.
    with psycopg.connect(stack.primary_admin_dsn(stack_layout), autocommit=True, prepare_threshold=None) as conn:
        assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'pg_repack'").fetchone() == (1,)


def test_bloat_helper_leaves_dead_space(admin_dsn: str) -> None:
    name, *_ = pick_partition(admin_dsn, None)
    with psycopg.connect(admin_dsn, autocommit=True, prepare_threshold=None) as conn:
        # Compact first (a small test partition; VACUUM FULL's lock is brief here), so no free space is left
        # inside the file from an earlier test for the updates to reuse.
        conn.execute(sql.SQL("VACUUM FULL public.{}").format(sql.Identifier(name)))
        size = conn.execute("SELECT pg_relation_size(%s::regclass)", [f"public.{name}"]).fetchone()
    bloat(admin_dsn, name, rounds=1)
    with psycopg.connect(admin_dsn, autocommit=True, prepare_threshold=None) as conn:
        grown = conn.execute("SELECT pg_relation_size(%s::regclass)", [f"public.{name}"]).fetchone()
    assert size is not None and grown is not None and grown[0] > size[0]
