"""Bulk ingest (ops.ingest) against the real test stack, and against a real Datasette subprocess.

The database already holds the session's synthetic corpus and other tests' rows, so every test uses its own
municipality subdomains (``ingest-*.ca``) and removes its rows afterwards.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from gateway.settings import Settings
from migrations import partitions
from ops import stack
from ops.ingest import BadRow, IngestSummary, cli, ingest_datasette, ingest_jsonl
from ops.ingest.newparts import PENDING_TAG
from ops.ingest.sources import parse_reply
from tests.helpers import eventually, free_port

Conn = psycopg.Connection[tuple[object, ...]]


# --- helpers ------------------------------------------------------------------------------------------------


def page(
    sub: str,
    pid: str,
    *,
    meeting: str = "CityCouncil",
    date: str = "2023-05-02",
    number: int = 1,
    text: str = "call to order",
    kind: str = "agenda",
) -> dict[str, Any]:
    return {
        "subdomain": sub,
        "id": pid,
        "meeting": meeting,
        "date": date,
        "page": number,
        "text": text,
        "page_image": f"/_agendas/{meeting}/{date}/{number}.png",
        "kind": kind,
        "municipality_name": "Ingest Town",
        "state": "CA",
    }


def write_jsonl(path: Path, rows: list[dict[str, Any] | str]) -> Path:
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            text = row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)
            if not isinstance(row, str) and not text.isascii():
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    text = json.dumps(row)  # a lone surrogate travels escaped, as a hostile file would carry it
            out.write(text + "\n")
    return path


def town_id(conn: Conn, subdomain: str) -> int:
    row = conn.execute("SELECT id FROM municipality WHERE subdomain = %s", [subdomain]).fetchone()
    assert row is not None, subdomain
    return int(str(row[0]))


def xmins(conn: Conn, subdomain: str) -> dict[str, str]:
    rows = conn.execute(
        "SELECT p.id, p.xmin::text FROM meeting_page p JOIN municipality m ON m.id = p.municipality_id "
        "WHERE m.subdomain = %s",
        [subdomain],
    ).fetchall()
    return {str(i): str(x) for i, x in rows}


def search_count(conn: Conn, subdomain: str, query: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM meeting_page p JOIN municipality m ON m.id = p.municipality_id "
        "WHERE m.subdomain = %s AND p.search_vector @@ websearch_to_tsquery('public.civic', %s)",
        [subdomain, query],
    ).fetchone()
    assert row is not None
    return int(str(row[0]))


def drop_towns(conn: Conn, *subdomains: str) -> None:
    ids = [
        r[0]
        for r in conn.execute("SELECT id FROM municipality WHERE subdomain = ANY(%s)", [list(subdomains)])
    ]
    if ids:
        conn.execute("DELETE FROM meeting_page WHERE municipality_id = ANY(%s)", [ids])
        conn.execute("DELETE FROM meeting_document WHERE municipality_id = ANY(%s)", [ids])
        conn.execute("DELETE FROM municipality WHERE id = ANY(%s)", [ids])


@pytest.fixture()
def towns(admin_conn: Conn) -> Iterator[list[str]]:
    """Subdomains the test may create; their pages, documents and rows are deleted afterwards."""
    names: list[str] = []
    yield names
    drop_towns(admin_conn, *names)


def check_counts(summary: IngestSummary) -> None:
    assert summary.read == (
        summary.inserted + summary.updated + summary.unchanged + summary.superseded + summary.skipped
    )


# --- JSONL ----------------------------------------------------------------------------------------------------


def test_jsonl_ingest_lands_searchable_and_reingest_changes_nothing(
    admin_dsn: str, admin_conn: Conn, towns: list[str], tmp_path: Path
) -> None:
    towns.append("ingest-a.ca")
    rows: list[dict[str, Any] | str] = [
        page("ingest-a.ca", "ia-1", number=1, text="Call to order. The zorblat ordinance."),
        page("ingest-a.ca", "ia-2", number=2, text="Public hearing on the Café Zorblat permit."),
        page("ingest-a.ca", "ia-3", number=3, text="Adjourned."),
        page("ingest-a.ca", "im-1", number=1, text="Minutes: zorblat approved 5-0.", kind="minutes"),
        page(
            "ingest-a.ca", "ip-1", meeting="PlanningCommission", date="2022-11-15", text="Site plan review."
        ),
    ]
    path = write_jsonl(tmp_path / "pages.jsonl", rows)
    first = ingest_jsonl(admin_dsn, [path], workers=2, batch_size=2)
    assert (first.read, first.inserted, first.updated, first.unchanged, first.skipped) == (5, 5, 0, 0, 0)
    assert first.complete and first.batches == 3 and first.documents_created == 3
    assert first.municipalities_created == 1
    check_counts(first)

    town = town_id(admin_conn, "ingest-a.ca")
    # Accents are folded on both sides by the civic configuration.
    assert search_count(admin_conn, "ingest-a.ca", "zorblat") == 3
    assert search_count(admin_conn, "ingest-a.ca", '"cafe zorblat"') == 1
    # Pages carry copies of the document's date, town and type, and point at the right document.
    docs = admin_conn.execute(
        "SELECT d.meeting_name, d.meeting_date, d.document_type::text, count(p.id), "
        "bool_and(p.meeting_date = d.meeting_date AND p.municipality_id = d.municipality_id "
        "AND p.document_type = d.document_type) "
        "FROM meeting_document d JOIN meeting_page p ON p.document_id = d.id "
        "WHERE d.municipality_id = %s GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        [town],
    ).fetchall()
    assert docs == [
        ("CityCouncil", dt.date(2023, 5, 2), "agenda", 3, True),
        ("CityCouncil", dt.date(2023, 5, 2), "minutes", 1, True),
        ("PlanningCommission", dt.date(2022, 11, 15), "agenda", 1, True),
    ]

    before = xmins(admin_conn, "ingest-a.ca")
    doc_before = admin_conn.execute(
        "SELECT id, xmin::text FROM meeting_document WHERE municipality_id = %s ORDER BY id", [town]
    ).fetchall()
    again = ingest_jsonl(admin_dsn, [path], workers=2, batch_size=2)
    assert (again.read, again.inserted, again.updated, again.unchanged) == (5, 0, 0, 5)
    assert again.documents_created == 0 and again.municipalities_created == 0
    assert xmins(admin_conn, "ingest-a.ca") == before  # no row rewritten
    assert (
        admin_conn.execute(
            "SELECT id, xmin::text FROM meeting_document WHERE municipality_id = %s ORDER BY id", [town]
        ).fetchall()
        == doc_before
    )

    # One page changed, one image path changed: exactly those two are updated.
    rows[1] = page("ingest-a.ca", "ia-2", number=2, text="Public hearing on the quuxbar permit.")
    changed_image = page("ingest-a.ca", "ia-3", number=3, text="Adjourned.")
    changed_image["page_image"] = "/_agendas/elsewhere.png"
    rows[2] = changed_image
    write_jsonl(path, rows)
    third = ingest_jsonl(admin_dsn, [path], workers=2, batch_size=10)
    assert (third.inserted, third.updated, third.unchanged) == (0, 2, 3)
    after = xmins(admin_conn, "ingest-a.ca")
    assert {k for k in after if after[k] != before[k]} == {"ia-2", "ia-3"}
    assert search_count(admin_conn, "ingest-a.ca", "quuxbar") == 1
    assert search_count(admin_conn, "ingest-a.ca", "zorblat") == 2


def test_bad_rows_are_reported_with_position_and_skipped(
    admin_dsn: str, admin_conn: Conn, towns: list[str], tmp_path: Path
) -> None:
    towns.append("ingest-b.ca")
    huge = "x" * (1024 * 1024 + 1)
    no_text = page("ingest-b.ca", "ib-nt")
    del no_text["text"]
    rows: list[dict[str, Any] | str] = [
        page("ingest-b.ca", "ib-1", text="good first"),  # line 1
        '{"subdomain": "ingest-b.ca", "id": ',  # 2: invalid JSON
        page("ingest-b.ca", "ib-2", date="2023-02-30"),  # 3: not a calendar date
        no_text,  # 4: missing field
        page("ingest-b.ca", "ib-3", text="nul \x00 byte"),  # 5: NUL in text
        {**page("ingest-b.ca", "ib-4"), "page": 2.5},  # 6: non-integer page
        page("ingest-b.ca", "ib-5", text=huge),  # 7: text over 1 MB
        "",  # 8: blank lines are ignored, not errors
        {**page("ingest-b.ca", "ib-6"), "kind": "memo"},  # 9: unknown document type
        {**page("ingest-b.ca", "ib-7"), "subdomain": "ingest-nowhere.ca", "municipality_name": None},  # 10
        page("ingest-b.ca", "ib-8", number=2, text="good last"),  # 11
        {**page("ingest-b.ca", "ib-9"), "meeting": "City\ud800Council"},  # 12: lone surrogate, not in 'text'
        page("ingest-b.ca", "ib-10", text="lone \udc00 surrogate"),  # 13: and in 'text'
        {**page("ingest-b.ca", "ib-11"), "page": "\u0661\u0662"},  # 14: Arabic-Indic digits
        {**page("ingest-b.ca", "ib-12"), "date": "\uff12\uff10\uff12\uff14-01-01"},  # 15: full-width digits
    ]
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    seen: list[BadRow] = []
    summary = ingest_jsonl(admin_dsn, [path], batch_size=4, on_bad_row=seen.append)
    assert (summary.read, summary.inserted, summary.skipped) == (14, 2, 12)
    assert summary.complete
    check_counts(summary)
    assert seen == summary.bad_rows
    by_line = {b.position.rsplit(":", 1)[1]: b.reason for b in seen}
    assert all(b.position.startswith(f"{path.resolve()}:") for b in seen)
    assert set(by_line) == {"2", "3", "4", "5", "6", "7", "9", "10", "12", "13", "14", "15"}
    assert by_line["2"].startswith("invalid JSON")
    assert "calendar date" in by_line["3"]
    assert "missing field 'text'" in by_line["4"]
    assert "NUL" in by_line["5"]
    assert "'page' must be an integer" in by_line["6"]
    assert "longer than" in by_line["7"]
    assert "'kind'" in by_line["9"]
    assert "unknown municipality 'ingest-nowhere.ca'" in by_line["10"]
    assert "'meeting' is not valid Unicode" in by_line["12"] and "'text' is not valid Unicode" in by_line["13"]
    assert "'page' must be an integer" in by_line["14"] and "'date' must be YYYY-MM-DD" in by_line["15"]
    assert sorted(xmins(admin_conn, "ingest-b.ca")) == ["ib-1", "ib-8"]


def test_interrupted_run_resumes_from_checkpoint(
    admin_dsn: str, admin_conn: Conn, towns: list[str], tmp_path: Path
) -> None:
    towns.append("ingest-c.ca")
    rows: list[dict[str, Any] | str] = [
        page("ingest-c.ca", f"ic-{i}", meeting=f"Board{i // 4}", number=i % 4, text=f"item {i}")
        for i in range(10)
    ]
    # The type comes from the file name when lines leave it out.
    for row in rows:
        assert isinstance(row, dict)
        del row["kind"]
    path = write_jsonl(tmp_path / "ingest-c-minutes.jsonl", rows)
    checkpoint = tmp_path / "state" / "checkpoint.json"

    first = ingest_jsonl(admin_dsn, [path], batch_size=3, checkpoint=checkpoint, max_batches=2)
    assert not first.complete and (first.read, first.inserted, first.batches) == (6, 6, 2)
    saved = json.loads(checkpoint.read_text())["positions"][str(path.resolve())]
    assert saved["line"] == 6 and not saved["done"]
    assert saved["offset"] == len(b"".join(path.read_bytes().splitlines(keepends=True)[:6]))

    second = ingest_jsonl(admin_dsn, [path], batch_size=3, checkpoint=checkpoint, resume=True)
    assert second.complete and (second.read, second.inserted, second.unchanged) == (4, 4, 0)
    assert json.loads(checkpoint.read_text())["positions"][str(path.resolve())]["done"] is True
    types = admin_conn.execute(
        "SELECT DISTINCT document_type::text FROM meeting_page WHERE municipality_id = %s",
        [town_id(admin_conn, "ingest-c.ca")],
    ).fetchall()
    assert types == [("minutes",)]

    # Resuming a finished run reads nothing; a run without --resume starts over (and finds all unchanged).
    done = ingest_jsonl(admin_dsn, [path], batch_size=3, checkpoint=checkpoint, resume=True)
    assert done.complete and done.read == 0
    fresh = ingest_jsonl(admin_dsn, [path], batch_size=3, checkpoint=checkpoint)
    assert (fresh.read, fresh.unchanged) == (10, 10)


def test_brand_new_partition_is_loaded_indexed_then_attached(
    admin_dsn: str, admin_conn: Conn, towns: list[str], tmp_path: Path
) -> None:
    towns.append("ingest-d.ca")
    width = partitions.get_width(admin_conn)
    start = partitions.period_start(dt.date(2091, 3, 1), width)
    name = partitions.partition_name(start, width)
    assert name not in {p.name for p in partitions.list_partitions(admin_conn)}
    rows: list[dict[str, Any] | str] = [
        page("ingest-d.ca", f"id-{i}", date="2091-03-06", number=i, text=f"far future page {i} plooble")
        for i in range(6)
    ]
    path = write_jsonl(tmp_path / "future.jsonl", rows)
    checkpoint = tmp_path / "ck.json"
    try:
        # Another writer's row for the same range sits in DEFAULT, and one of ours too (same key).
        first = ingest_jsonl(admin_dsn, [path], batch_size=3, checkpoint=checkpoint, max_batches=1)
        town = town_id(admin_conn, "ingest-d.ca")
        admin_conn.execute(
            "INSERT INTO meeting_page (id, meeting_date, document_id, municipality_id, document_type, "
            "page_number, text) VALUES ('id-other', '2091-03-07', 0, %s, 'agenda', 1, 'written meanwhile'), "
            "('id-5', '2091-03-06', 0, %s, 'agenda', 5, 'older copy')",
            [town, town],
        )
        in_default = (
            "SELECT count(*) FROM meeting_page_default WHERE meeting_date >= %s AND meeting_date < %s"
        )
        end = partitions.period_end(start, width)
        assert admin_conn.execute(in_default, [start, end]).fetchone() == (2,)
        # Interrupted: the standalone table holds the first batch and is still pending, not a partition.
        assert first.inserted == 3 and not first.complete
        pending = admin_conn.execute(
            "SELECT c.relispartition, obj_description(c.oid, 'pg_class') FROM pg_class c "
            "WHERE c.relname = %s",
            [name],
        ).fetchone()
        assert pending is not None and pending[0] is False and str(pending[1]).startswith(PENDING_TAG)

        second = ingest_jsonl(admin_dsn, [path], batch_size=3, checkpoint=checkpoint, resume=True)
        assert second.complete and second.partitions_created == [name]
        assert any(f"attached {name}" in n and "1 rows from DEFAULT" in n for n in second.notes), second.notes
        part = {p.name: p for p in partitions.list_partitions(admin_conn, exact=True)}[name]
        assert part.start == start and part.end == end
        assert part.rows == 7  # six ingested + the one written meanwhile
        assert admin_conn.execute(in_default, [start, end]).fetchone() == (0,)
        # The ingested row won over the older copy that was in DEFAULT.
        assert admin_conn.execute(
            "SELECT text FROM meeting_page WHERE id = 'id-5' AND meeting_date = '2091-03-06'"
        ).fetchone() == ("far future page 5 plooble",)
        # Every index of the parent has its child on the new partition (adopted at ATTACH), and no range
        # CHECK or pending mark is left behind.
        missing = admin_conn.execute(
            "SELECT pi.indexrelid::regclass::text FROM pg_index pi "
            "WHERE pi.indrelid = 'public.meeting_page'::regclass AND NOT EXISTS ("
            "  SELECT 1 FROM pg_inherits h JOIN pg_index ci ON ci.indexrelid = h.inhrelid "
            "  WHERE h.inhparent = pi.indexrelid AND ci.indrelid = %s::regclass)",
            [f"public.{name}"],
        ).fetchall()
        assert missing == []
        assert admin_conn.execute(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = %s::regclass AND conname LIKE '%%ingest_range'",
            [f"public.{name}"],
        ).fetchone() == (0,)
        assert search_count(admin_conn, "ingest-d.ca", "plooble") == 6
        assert name in second.analyzed
    finally:
        admin_conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier("public", name)))


# --- Datasette ------------------------------------------------------------------------------------------------




def _datasette_rows(kind: str, count: int, first_day: int) -> list[tuple[object, ...]]:
    table = "agendas" if kind == "agenda" else "minutes"
    return [
        (
            f"{table}-{first_day}-{i}",
            "CityCouncil",
            f"2024-02-{first_day + i // 3:02d}",
            i % 3 + 1,
            f"{table} page {i} ratoblix",
            f"/_{table}/CityCouncil/{i}.png",
        )
        for i in range(count)
    ]


@pytest.fixture()
def datasette(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real ``datasette serve`` of a meetings.db with agendas (7 rows) and minutes (5 rows)."""
    if importlib.util.find_spec("datasette") is None:
        pytest.skip("datasette not installed: pip install datasette")
    db = tmp_path / "meetings.db"
    with sqlite3.connect(db) as lite:
        for kind, table, count in (("agenda", "agendas", 7), ("minutes", "minutes", 5)):
            lite.execute(
                f"CREATE TABLE {table} (id TEXT PRIMARY KEY, meeting TEXT, date TEXT, page INTEGER, "
                "text TEXT, page_image TEXT)"
            )
            lite.executemany(
                f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?)", _datasette_rows(kind, count, 1)
            )
    lite.close()
    port = free_port()
    log = (tmp_path / "datasette.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "datasette", "serve", str(db), "-p", str(port), "-h", "127.0.0.1"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def serving() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"datasette exited: {(tmp_path / 'datasette.log').read_text()}")
            try:
                return httpx.get(f"{url}/-/versions.json", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        eventually(serving, timeout_s=30, interval_s=0.1, what="datasette serving")
        yield url, db
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_datasette_source_pages_with_next_and_runs_incrementally(
    admin_dsn: str, admin_conn: Conn, towns: list[str], datasette: tuple[str, Path], tmp_path: Path
) -> None:
    url, db = datasette
    towns.append("ingest-e.ca")
    checkpoint = tmp_path / "ds.json"
    first = ingest_datasette(
        admin_dsn, url, "ingest-e.ca", name="Ingest E", state="CA", page_size=3, checkpoint=checkpoint
    )
    # 7 agendas in pages of 3,3,1 and 5 minutes in pages of 3,2: five _next pages.
    assert (first.read, first.inserted, first.skipped, first.batches) == (12, 12, 0, 5)
    assert first.complete and first.municipalities_created == 1
    assert search_count(admin_conn, "ingest-e.ca", "ratoblix") == 12
    docs = admin_conn.execute(
        "SELECT meeting_date, document_type::text, count(*) FROM meeting_page WHERE municipality_id = %s "
        "GROUP BY 1, 2 ORDER BY 1, 2",
        [town_id(admin_conn, "ingest-e.ca")],
    ).fetchall()
    assert docs == [
        (dt.date(2024, 2, 1), "agenda", 3),
        (dt.date(2024, 2, 1), "minutes", 3),
        (dt.date(2024, 2, 2), "agenda", 3),
        (dt.date(2024, 2, 2), "minutes", 2),
        (dt.date(2024, 2, 3), "agenda", 1),
    ]
    positions = json.loads(checkpoint.read_text())["positions"]
    assert positions == {
        f"{url}/meetings/agendas.json": {"next": None, "since": None, "rows": 7, "done": True},
        f"{url}/meetings/minutes.json": {"next": None, "since": None, "rows": 5, "done": True},
    }

    # New pages appear upstream, plus one bad row; an incremental run reads only dates >= since.
    with sqlite3.connect(db) as lite:
        lite.executemany("INSERT INTO agendas VALUES (?, ?, ?, ?, ?, ?)", _datasette_rows("agenda", 4, 10))
        lite.execute("INSERT INTO agendas VALUES ('bad-1', 'CityCouncil', '2024-02-11', 'two', 'x', NULL)")
    lite.close()
    seen: list[BadRow] = []
    second = ingest_datasette(
        admin_dsn,
        url,
        "ingest-e.ca",
        document_types=["agenda"],
        since=dt.date(2024, 2, 10),
        page_size=2,
        on_bad_row=seen.append,
    )
    assert (second.read, second.inserted, second.unchanged, second.skipped) == (5, 4, 0, 1)
    assert len(seen) == 1 and f"{url}/meetings/agendas.json _next=" in seen[0].position
    assert seen[0].position.endswith("row 0") and "'page' must be an integer" in seen[0].reason

    # since="auto" starts at the newest stored date: its pages are read again and found unchanged.
    third = ingest_datasette(admin_dsn, url, "ingest-e.ca", document_types=["agenda"], since="auto")
    assert (third.inserted, third.updated, third.unchanged, third.skipped) == (0, 0, 1, 1)


def test_datasette_reply_shapes() -> None:
    arrays = parse_reply(
        {"columns": ["id", "page"], "rows": [["a", 1], ["b"]], "next": "a", "filtered_table_rows_count": 9}
    )
    assert arrays.rows == [{"id": "a", "page": 1}, None] and arrays.next == "a" and arrays.count == 9
    objects = parse_reply({"ok": True, "rows": [{"id": "a"}], "next": None})
    assert objects.rows == [{"id": "a"}] and objects.next is None and objects.count is None


# --- the command line -----------------------------------------------------------------------------------------


def test_cli_ingests_jsonl(
    stack_layout: stack.StackLayout, towns: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    towns.append("ingest-f.ca")
    path = write_jsonl(
        tmp_path / "f.jsonl",
        [
            {k: v for k, v in page("ingest-f.ca", f"if-{i}", number=i).items() if k != "subdomain"}
            for i in range(3)
        ]
        + ["not json"],
    )
    env = stack_layout.gateway_env()
    settings = Settings(nodes=env["GATEWAY_NODES"], admin_nodes=env["GATEWAY_ADMIN_NODES"])
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(
        [
            "jsonl",
            str(path),
            "--municipality",
            "ingest-f.ca",
            "--name",
            "Ingest F",
            "--state",
            "CA",
            "--no-progress",
            "--checkpoint",
            str(tmp_path / "cli.json"),
        ]
    )
    assert cli.run(args, settings) == 0
    out, err = capsys.readouterr()
    assert "read 4 rows: 3 inserted" in out and "1 skipped" in out
    assert f"skipped {path.resolve()}:4: invalid JSON" in err
