"""Partition lifecycle: create ahead, drain DEFAULT, archive (detach, dump, verify restore, drop) safely.

The shared database holds the synthetic corpus (2005-2024) and other tests' rows, which must never be archived:
every test here works on far-past years of its own (1950-1957) for a municipality of its own, and passes both a
``before`` cutoff and the partition names to the archive.

The lock tests print what they measured (run with ``-s`` to see it): how long the archive waited for its lock,
how long it held it, and the worst latency a concurrent reader saw meanwhile.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from migrations import partitions
from ops import __main__ as cli
from ops.maintenance import archive, archive_dump
from ops.maintenance.partitions import drain_default
from ops.stack import StackLayout
from tests.helpers import eventually

Conn = psycopg.Connection[Any]
TOWN = "archive-test.zz"
BEFORE = dt.date(1960, 1, 1)
READER_QUERY = (
    "SELECT id FROM meeting_page WHERE search_vector @@ websearch_to_tsquery('public.civic', 'council') "
    "ORDER BY meeting_date DESC, id DESC LIMIT 20"
)


def _names(conn: Conn, year: int) -> list[str]:
    width = partitions.get_width(conn)
    first, last = dt.date(year, 1, 1), dt.date(year, 12, 31)
    return [partitions.partition_name(s, width) for s, _ in partitions.periods(first, last, width)]


def _seed(conn: Conn, year: int, pages: int, *, make_partitions: bool = True) -> int:
    """Documents and pages for ``year`` in our own town; returns the number of pages."""
    if make_partitions:
        partitions.ensure_range(conn, dt.date(year, 1, 1), dt.date(year, 12, 31))
    conn.execute(
        "INSERT INTO municipality (subdomain, name, state, country) VALUES (%s, 'Archive Test', 'ZZ', 'ZZ') "
        "ON CONFLICT (subdomain) DO NOTHING",
        [TOWN],
    )
    conn.execute(
        "INSERT INTO meeting_document (municipality_id, meeting_name, meeting_date, document_type) "
        "SELECT m.id, 'CityCouncil', make_date(%s, month, 1), 'minutes' "
        "FROM municipality m, generate_series(1, 12) month WHERE m.subdomain = %s",
        [year, TOWN],
    )
    conn.execute(
        "INSERT INTO meeting_page (id, meeting_date, document_id, municipality_id, document_type, page_number, text)"
        " SELECT format('arch-%%s-%%s', %s::int, g), d.meeting_date, d.id, d.municipality_id, 'minutes', g,"
        "        format('council minutes page %%s, café budget %%s', g, md5(g::text))"
        "   FROM generate_series(1, %s) g"
        "   JOIN meeting_document d ON extract(month FROM d.meeting_date) = 1 + g %% 12"
        "   JOIN municipality m ON m.id = d.municipality_id"
        "  WHERE m.subdomain = %s AND extract(year FROM d.meeting_date) = %s",
        [year, pages, TOWN, year],
    )
    return pages


def _ident(name: str) -> sql.Identifier:
    return sql.Identifier("public", name)


def _relation(conn: Conn, name: str) -> tuple[bool, bool] | None:
    """(exists as a table, is a partition) or None."""
    row = conn.execute(
        "SELECT c.relispartition FROM pg_class c WHERE c.oid = to_regclass(%s)", [f"public.{name}"]
    ).fetchone()
    return None if row is None else (True, bool(row[0]))


def _default_partition(conn: Conn) -> str | None:
    row = conn.execute(
        "SELECT nullif(partdefid, 0)::regclass::text FROM pg_partitioned_table "
        "WHERE partrelid = 'public.meeting_page'::regclass"
    ).fetchone()
    return None if row is None or row[0] is None else str(row[0])


def _count(conn: Conn, table: str) -> int:
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("public", table))).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture()
def own_years(admin_conn: Conn) -> Iterator[list[int]]:
    """Cleans up whatever a test left of its years: partitions (in any state), documents, DEFAULT detached."""
    years: list[int] = []
    yield years
    conn = admin_conn
    if _default_partition(conn) is None:
        conn.execute("ALTER TABLE meeting_page ATTACH PARTITION meeting_page_default DEFAULT")
    for year in years:
        for name in _names(conn, year):
            pending = conn.execute(
                "SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = to_regclass(%s)",
                [f"public.{name}"],
            ).fetchone()
            if pending and pending[0]:
                conn.execute(
                    sql.SQL("ALTER TABLE meeting_page DETACH PARTITION {} FINALIZE").format(_ident(name))
                )
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(_ident(name)))
        conn.execute(
            "DELETE FROM meeting_page WHERE meeting_date >= %s AND meeting_date < %s",
            [dt.date(year, 1, 1), dt.date(year + 1, 1, 1)],
        )
        conn.execute(
            "DELETE FROM meeting_document d USING municipality m WHERE m.id = d.municipality_id "
            "AND m.subdomain = %s AND extract(year FROM d.meeting_date) = %s",
            [TOWN, year],
        )


def _restore_count(layout: StackLayout, dump: Path, prereq: Path, table: str) -> tuple[int, int]:
    """Restore an archive into a database of its own, the way an operator would; (rows, rows with a vector)."""
    scratch = f"archive_test_restore_{time.monotonic_ns() % 10**9}"
    with psycopg.connect(layout.direct_dsn("node1", dbname="postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch)))
        try:
            target = layout.direct_dsn("node1", dbname=scratch)
            restore = archive.find_pg_tool("pg_restore")
            for path in (prereq, dump):
                subprocess.run(
                    [restore, "--no-owner", "--exit-on-error", "-d", target, str(path)], check=True
                )
            with psycopg.connect(target) as check:
                row = check.execute(
                    sql.SQL(
                        "SELECT count(*), count(*) FILTER (WHERE search_vector @@ 'council'::tsquery) FROM {}"
                    ).format(_ident(table))
                ).fetchone()
                assert row is not None
                return int(row[0]), int(row[1])
        finally:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch)))


class ReaderLoop:
    """Runs the gateway's kind of query on the parent in a loop, through PgBouncer, and records latencies."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True, prepare_threshold=None) as conn:
                while not self._stop.is_set():
                    t0 = time.monotonic()
                    try:
                        conn.execute(READER_QUERY).fetchall()
                    except psycopg.Error as exc:
                        self.errors.append(str(exc).strip())
                    self.latencies.append(time.monotonic() - t0)
                    time.sleep(0.005)
        except (
            Exception
        ) as exc:  # a thread must never raise: filterwarnings=error would turn it into a failure
            self.errors.append(repr(exc))

    def __enter__(self) -> ReaderLoop:
        self._thread.start()
        eventually(lambda: self.latencies or self.errors, timeout_s=10, what="the reader's first query")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    @property
    def worst(self) -> float:
        return max(self.latencies, default=0.0)


def _watch_locks(dsn: str, stop: threading.Event, seen: set[tuple[str, str, bool]]) -> threading.Thread:
    """Record (statement kind, lock, granted) for the archive's DDL: locks on meeting_page, and waits on the
    virtual transaction ids of older transactions (which is how DETACH ... CONCURRENTLY waits for them)."""

    def run() -> None:
        try:
            with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
                while not stop.is_set():
                    for kind, lock, granted in conn.execute(
                        "SELECT CASE WHEN a.query ILIKE '%CONCURRENTLY%' THEN 'concurrent' "
                        "WHEN a.query ILIKE '%LOCK TABLE ONLY%' THEN 'lock-parent' ELSE 'other' END, "
                        "CASE WHEN l.locktype = 'virtualxid' THEN 'virtualxid ' ELSE '' END || l.mode, l.granted "
                        "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                        "WHERE a.pid <> pg_backend_pid() "
                        "AND (a.query ILIKE '%DETACH PARTITION%' OR a.query ILIKE '%LOCK TABLE ONLY%') "
                        "AND (l.relation = 'public.meeting_page'::regclass "
                        "     OR (l.locktype = 'virtualxid' AND NOT l.granted))"
                    ).fetchall():
                        seen.add((str(kind), str(lock), bool(granted)))
                    time.sleep(0.02)
        except Exception as exc:
            seen.add(("error", repr(exc), False))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


# --- cutoffs ------------------------------------------------------------------------------------------------


def test_cutoff_date_accepts_years_months_days() -> None:
    today = dt.date(2026, 3, 31)
    assert archive.cutoff_date("2y", today=today) == dt.date(2024, 3, 31)
    assert archive.cutoff_date("18m", today=today) == dt.date(2024, 9, 30)
    assert archive.cutoff_date("1m", today=today) == dt.date(2026, 2, 28)  # clamped to the month's end
    assert archive.cutoff_date("90d", today=today) == dt.date(2025, 12, 31)
    assert archive.cutoff_date("1y6m", today=today) == dt.date(2024, 9, 30)
    assert archive.cutoff_date("2y", today=dt.date(2024, 2, 29)) == dt.date(2022, 2, 28)
    for bad in ("", "2", "y", "2w", "2y junk", "-1y"):
        with pytest.raises(ValueError):
            archive.cutoff_date(bad, today=today)


# --- ensure ahead and DEFAULT -------------------------------------------------------------------------------


def test_ensure_ahead_creates_the_current_period_and_n_more(admin_conn: Conn) -> None:
    width = partitions.get_width(admin_conn)
    today = dt.date(2091, 5, 10)
    expected = []
    start = partitions.period_start(today, width)
    for _ in range(3):
        expected.append(partitions.partition_name(start, width))
        start = partitions.period_end(start, width)
    try:
        assert partitions.ensure_ahead(admin_conn, 2, today=today) == expected
        assert partitions.ensure_ahead(admin_conn, 2, today=today) == []  # idempotent
        listed = {p.name: p for p in partitions.list_partitions(admin_conn)}
        assert all(name in listed for name in expected)
        assert listed[expected[0]].start == partitions.period_start(today, width)
    finally:
        for name in expected:
            admin_conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(_ident(name)))


def test_cli_partitions_ensure_ahead(
    stack_layout: StackLayout,
    admin_conn: Conn,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key, value in stack_layout.gateway_env().items():
        monkeypatch.setenv(key, value)
    before = {p.name for p in partitions.list_partitions(admin_conn)}
    assert cli.main(["partitions", "ensure", "--ahead", "2"]) == 0
    created = {p.name for p in partitions.list_partitions(admin_conn)} - before
    try:
        out = capsys.readouterr().out
        assert out.startswith("created: ")
        width = partitions.get_width(admin_conn)
        start = partitions.period_start(dt.date.today(), width)
        for _ in range(3):  # the current period and two ahead now exist, whether or not this run made them
            assert _relation(admin_conn, partitions.partition_name(start, width)) == (True, True)
            start = partitions.period_end(start, width)
    finally:
        for name in created:  # only what this test added, and only if still empty
            if _count(admin_conn, name) == 0:
                admin_conn.execute(sql.SQL("DROP TABLE {}").format(_ident(name)))


def test_rows_in_default_get_their_own_partition_which_becomes_archivable(
    admin_conn: Conn, own_years: list[int]
) -> None:
    own_years.append(1953)
    [name] = _names(admin_conn, 1953)
    assert _relation(admin_conn, name) is None
    _seed(admin_conn, 1953, 40, make_partitions=False)
    assert _count(admin_conn, "meeting_page_default") >= 40  # no partition: the rows landed in DEFAULT
    assert name in drain_default(admin_conn)
    assert admin_conn.execute(
        "SELECT count(*) FROM meeting_page_default WHERE meeting_date >= '1953-01-01' AND meeting_date < '1954-01-01'"
    ).fetchone() == (0,)
    assert _count(admin_conn, name) == 40
    # DEFAULT itself is never a candidate; the drained range now is, as an ordinary attached partition.
    [item] = archive.plan(admin_conn, cutoff=BEFORE, names=[name])
    assert (item.start, item.end, item.state) == (dt.date(1953, 1, 1), dt.date(1954, 1, 1), "attached")
    assert "meeting_page_default" not in {
        i.name for i in archive.plan(admin_conn, cutoff=dt.date(9999, 1, 1))
    }


# --- archive ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("strategy", "year"), [("lock-timeout", 1950), ("swap-default", 1951)])
def test_archive_happy_path(
    strategy: archive.Strategy,
    year: int,
    admin_dsn: str,
    admin_conn: Conn,
    stack_layout: StackLayout,
    own_years: list[int],
    tmp_path: Path,
) -> None:
    own_years.append(year)
    [name] = _names(admin_conn, year)
    rows = _seed(admin_conn, year, 300)
    steps: list[str] = []
    out = tmp_path / "archive"
    items = archive.archive_partitions(
        admin_dsn,
        dest=out,
        older_than="2y",
        before=BEFORE,
        names=[name],
        strategy=strategy,
        progress=lambda step, item: steps.append(step),
    )
    [item] = items
    assert item.state == "archived" and item.rows == rows
    assert steps[-4:] == ["dumped", "verified", "manifest", "dropped"]
    if strategy == "swap-default":
        assert steps[:3] == ["default-detached", "default-attached", "detached"]
    # Gone from the parent and from the database; DEFAULT is attached, and still the DEFAULT.
    assert name not in {p.name for p in partitions.list_partitions(admin_conn)}
    assert _relation(admin_conn, name) is None
    assert _default_partition(admin_conn) == "meeting_page_default"
    # Dump and manifest side by side; the manifest describes the dump exactly.
    assert item.dump_path is not None and item.prereq_path is not None and item.manifest_path is not None
    assert item.dump_path.parent == item.manifest_path.parent == out
    manifest = json.loads(item.manifest_path.read_text())
    assert manifest["status"] == "archived"
    assert manifest["partition"] == f"public.{name}"
    assert manifest["range"] == {"from": f"{year}-01-01", "to": f"{year + 1}-01-01", "to_exclusive": True}
    assert manifest["rows"] == rows and manifest["checksum"] == item.checksum
    assert manifest["dump_file"] == item.dump_path.name
    assert manifest["dump_sha256"] == archive_dump.sha256_of(item.dump_path)
    assert {"detached_at", "dumped_at", "verified_at", "dropped_at"} <= set(manifest["timestamps"])
    assert not list(out.glob("*.partial"))
    # The archive restores into an empty database, stored search vectors included.
    assert _restore_count(stack_layout, item.dump_path, item.prereq_path, name) == (rows, rows)
    lock = item.locks["default-detach" if strategy == "swap-default" else "detach"]
    print(
        f"\n[{strategy}] ACCESS EXCLUSIVE on meeting_page: waited {lock.waited_s:.4f}s, held {lock.held_s:.4f}s"
    )


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupted_dump_keeps_the_detached_table(
    damage: str, admin_dsn: str, admin_conn: Conn, own_years: list[int], tmp_path: Path
) -> None:
    year = 1952
    own_years.append(year)
    [name] = _names(admin_conn, year)
    rows = _seed(admin_conn, year, 200)

    def corrupt(step: str, item: archive.ArchiveItem) -> None:
        if step != "dumped" or item.dump_path is None:
            return
        data = bytearray(item.dump_path.read_bytes())
        if damage == "truncate":
            item.dump_path.write_bytes(data[: len(data) * 6 // 10])
        else:  # flip bytes in the compressed data, past the header and table of contents
            for i in range(len(data) * 2 // 3, len(data) * 2 // 3 + 16):
                data[i] ^= 0xFF
            item.dump_path.write_bytes(bytes(data))

    with pytest.raises(archive.ArchiveError) as failed:
        archive.archive_partitions(
            admin_dsn, dest=tmp_path, older_than="2y", before=BEFORE, names=[name], progress=corrupt
        )
    err = failed.value
    assert err.item is not None and err.item.state == "detached"
    assert "restore" in err.message or "changed while it was being verified" in err.message
    assert "ATTACH PARTITION public." + name in err.hint and "Rerun" in err.hint
    # Not dropped: a plain table with every row, no longer in the parent; no manifest claims otherwise.
    assert _relation(admin_conn, name) == (True, False)
    assert _count(admin_conn, name) == rows
    assert not list(tmp_path.glob("*.manifest.json"))
    assert _default_partition(admin_conn) == "meeting_page_default"
    if damage == "flip":
        return  # the rerun below is the same for both kinds of damage
    # A rerun resumes from the detached table and completes.
    [item] = archive.archive_partitions(
        admin_dsn, dest=tmp_path, older_than="2y", before=BEFORE, names=[name]
    )
    assert item.state == "archived" and item.rows == rows
    assert _relation(admin_conn, name) is None


def test_lock_timeout_strategy_waits_boundedly_behind_a_long_reader(
    admin_dsn: str,
    admin_conn: Conn,
    stack_layout: StackLayout,
    own_years: list[int],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    own_years.append(1954)
    [name] = _names(admin_conn, 1954)
    _seed(admin_conn, 1954, 100)
    monkeypatch.setattr(archive.ArchivePolicy, "lock_timeout_s", 0.3)
    monkeypatch.setattr(archive.ArchivePolicy, "backoff_initial_s", 0.1)
    seen: set[tuple[str, str, bool]] = set()
    stop = threading.Event()
    # A long search (an open transaction that read the parent) holds ACCESS SHARE for 1.2 s.
    with psycopg.connect(admin_dsn, prepare_threshold=None) as long_reader:
        long_reader.execute("SELECT count(*) FROM meeting_page").fetchone()
        timer = threading.Timer(1.2, long_reader.rollback)
        with (
            ReaderLoop(stack_layout.bouncer_dsn("node1")) as readers,
            ReaderLoop(stack_layout.bouncer_dsn("node2")) as replica_readers,
        ):
            watcher = _watch_locks(admin_dsn, stop, seen)
            timer.start()
            t0 = time.monotonic()
            [item] = archive.archive_partitions(
                admin_dsn, dest=tmp_path, older_than="2y", before=BEFORE, names=[name], strategy="lock-timeout"
            )
            elapsed = time.monotonic() - t0
            stop.set()
            watcher.join(timeout=5)
        timer.join()
    lock = item.locks["detach"]
    print(
        f"\n[lock-timeout] detach: {lock.attempts} attempts, waited {lock.waited_s:.3f}s, held {lock.held_s:.4f}s; "
        f"archive {elapsed:.2f}s; reader worst {readers.worst * 1000:.0f} ms over {len(readers.latencies)} "
        f"queries (replica reader worst {replica_readers.worst * 1000:.0f} ms over "
        f"{len(replica_readers.latencies)}, errors {replica_readers.errors}); locks seen {sorted(seen)}"
    )
    assert item.state == "archived"
    assert lock.attempts >= 2 and lock.waited_s >= 0.3  # it waited behind the long reader, in bounded slices
    assert lock.held_s < 0.5  # catalog work only once granted
    assert ("lock-parent", "AccessExclusiveLock", False) in seen  # ...and what it waited for was this lock
    assert not readers.errors
    # A reader queues behind the waiting request for at most one lock_timeout (0.3 s), never the whole wait.
    assert readers.worst < 1.5
    # Replicas replay the detach's ACCESS EXCLUSIVE lock; short reads there neither fail nor stall.
    assert not replica_readers.errors and replica_readers.worst < 2.0


def test_swap_default_blocks_no_reader_during_the_concurrent_wait(
    admin_dsn: str,
    admin_conn: Conn,
    stack_layout: StackLayout,
    own_years: list[int],
    tmp_path: Path,
) -> None:
    own_years.extend([1955, 1899])
    [name] = _names(admin_conn, 1955)
    _seed(admin_conn, 1955, 100)
    seen: set[tuple[str, str, bool]] = set()
    stop = threading.Event()
    window_insert: list[str] = []
    holders: list[Conn] = []

    def during(step: str, item: archive.ArchiveItem) -> None:
        if step != "default-detached":
            return
        # The window: DEFAULT is detached, so a date without a partition has nowhere to go.
        try:
            with psycopg.connect(admin_dsn, autocommit=True, prepare_threshold=None) as other:
                other.execute(
                    "INSERT INTO meeting_page (id, meeting_date, document_id, municipality_id, document_type,"
                    " page_number, text) VALUES ('arch-window', '1899-06-01', 0, 0, 'agenda', 1, 'x')"
                )
            window_insert.append("inserted")
        except psycopg.Error as exc:
            window_insert.append(exc.sqlstate or "")
        # A search that started before the concurrent detach and runs for 1 s: the detach must wait for it.
        holder = psycopg.connect(admin_dsn, prepare_threshold=None)
        holder.execute("SELECT count(*) FROM meeting_page").fetchone()
        holders.append(holder)
        threading.Timer(1.0, holder.rollback).start()

    with ReaderLoop(stack_layout.bouncer_dsn("node1")) as readers:
        watcher = _watch_locks(admin_dsn, stop, seen)
        [item] = archive.archive_partitions(
            admin_dsn,
            dest=tmp_path,
            older_than="2y",
            before=BEFORE,
            names=[name],
            strategy="swap-default",
            progress=during,
        )
        stop.set()
        watcher.join(timeout=5)
    for holder in holders:
        holder.close()
    default_detach, detach = item.locks["default-detach"], item.locks["detach"]
    print(
        f"\n[swap-default] DEFAULT detach waited {default_detach.waited_s:.3f}s held {default_detach.held_s:.4f}s; "
        f"CONCURRENTLY took {detach.waited_s:.3f}s (blocking no one); DEFAULT re-attach "
        f"{item.locks['default-attach'].held_s:.4f}s; reader worst {readers.worst * 1000:.0f} ms over "
        f"{len(readers.latencies)} queries; insert in the window: {window_insert}; locks seen {sorted(seen)}"
    )
    assert item.state == "archived"
    assert window_insert == ["23514"]  # "no partition of relation found for row": the window is real
    assert detach.waited_s >= 0.8  # CONCURRENTLY waited for the older search...
    # ...by waiting on its virtual transaction id, holding no lock on meeting_page meanwhile: nothing queues.
    assert ("concurrent", "virtualxid ShareLock", False) in seen
    # Its two short transactions take SHARE UPDATE EXCLUSIVE on the parent (which blocks no reader), never more
    # (ACCESS SHARE, from its catalog reads, blocks nothing either).
    assert {lock for kind, lock, _ in seen if kind == "concurrent"} <= {
        "AccessShareLock",
        "virtualxid ShareLock",
        "ShareUpdateExclusiveLock",
    }
    assert not readers.errors
    assert readers.worst < 2.0
    assert _default_partition(admin_conn) == "meeting_page_default"


def test_interrupted_concurrent_detach_is_finalized_on_retry(
    admin_dsn: str, admin_conn: Conn, own_years: list[int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own_years.append(1956)
    [name] = _names(admin_conn, 1956)
    rows = _seed(admin_conn, 1956, 50)
    monkeypatch.setattr(archive.ArchivePolicy, "concurrent_wait_s", 0.3)
    holders: list[Conn] = []

    def hold_the_parent(step: str, item: archive.ArchiveItem) -> None:
        if step == "default-detached":  # an older transaction the concurrent detach will time out waiting for
            holder = psycopg.connect(admin_dsn, prepare_threshold=None)
            holder.execute("SELECT count(*) FROM meeting_page").fetchone()
            holders.append(holder)

    try:
        with pytest.raises(archive.ArchiveError) as failed:
            archive.archive_partitions(
                admin_dsn,
                dest=tmp_path,
                older_than="2y",
                before=BEFORE,
                names=[name],
                strategy="swap-default",
                progress=hold_the_parent,
            )
    finally:
        for holder in holders:
            holder.close()
    assert failed.value.item is not None and failed.value.item.state == "detach-pending"
    assert "FINALIZE" in failed.value.hint
    # The finally re-attached DEFAULT even though the detach failed half-way.
    assert _default_partition(admin_conn) == "meeting_page_default"
    assert admin_conn.execute(
        "SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = to_regclass(%s)", [f"public.{name}"]
    ).fetchone() == (True,)
    # The CLI helper's dry run lists it, and a rerun finishes it with FINALIZE and archives it.
    out = io.StringIO()
    assert (
        archive.run_cli(
            admin_dsn, dest=None, older_than="2y", before=BEFORE, names=[name], dry_run=True, out=out
        )
        == 0
    )
    assert f"would archive {name} [1956-01-01, 1957-01-01) (detach-pending)" in out.getvalue()
    steps: list[str] = []
    [item] = archive.archive_partitions(
        admin_dsn,
        dest=tmp_path,
        older_than="2y",
        before=BEFORE,
        names=[name],
        progress=lambda step, i: steps.append(step),
    )
    assert steps[0] == "finalized" and item.state == "archived" and item.rows == rows
    assert _relation(admin_conn, name) is None


def test_archive_refuses_partitions_newer_than_the_cutoff(admin_dsn: str, tmp_path: Path) -> None:
    # The corpus years exist but end after 1960: naming one is an error, and nothing is touched.
    with pytest.raises(archive.ArchiveError, match="not archivable"):
        archive.archive_partitions(
            admin_dsn, dest=tmp_path, older_than="2y", before=BEFORE, names=["meeting_page_y2010"]
        )
    err = io.StringIO()
    assert archive.run_cli(admin_dsn, dest=tmp_path, older_than=None, before=None, err=err) == 2
    assert "--older-than" in err.getvalue()
