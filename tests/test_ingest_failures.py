"""Ingest under bad input and failures (issue 12, item 10), against the real test stack.

* rows the database refuses, duplicate page numbers and oversize texts never stop a run, and are reported
  with their position;
* with two workers, a run that fails leaves every batch committed whole or not at all, exactly the batches
  before its checkpoint, and ``--resume`` ends in the state of a clean run;
* prepared transactions left by a run that died are settled by its checkpoint's decision.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ops.ingest import BadRow, IngestError, ingest_jsonl
from ops.ingest.checkpoint import FORMAT
from ops.ingest.loader import GID_PREFIX
from ops.ingest.oversize import CHECK_FROM_BYTES
from tests.test_ingest import check_counts, page, town_id, towns, write_jsonl

Conn = psycopg.Connection[tuple[object, ...]]
__all__ = ["towns"]  # the fixture, shared with test_ingest


def stored(conn: Conn, subdomain: str) -> dict[str, tuple[int, str]]:
    rows = conn.execute(
        "SELECT p.id, p.page_number, p.text FROM meeting_page p JOIN municipality m ON m.id = p.municipality_id "
        "WHERE m.subdomain = %s",
        [subdomain],
    ).fetchall()
    return {str(i): (int(str(n)), str(t)) for i, n, t in rows}


def leftover_prepared(conn: Conn) -> list[str]:
    rows = conn.execute("SELECT gid FROM pg_prepared_xacts WHERE gid LIKE %s", [GID_PREFIX + "%"]).fetchall()
    return [str(r[0]) for r in rows]


def overflowing_text(size_chars: int = 1_000_000) -> str:
    """Under 1 MiB of text whose search vector is over PostgreSQL's 1 MB: unique hyphenated codes (2.7 bytes of
    vector per byte of text, so from about 400,000 characters on)."""
    words = []
    size = 0
    i = 0
    while size < size_chars:
        words.append(f"q{i:06x}-r{i:06x}-s{i:06x}")
        size += len(words[-1]) + 1
        i += 1
    return "plooble " + " ".join(words)


def test_refused_rows_duplicate_pages_and_oversize_text_are_reported_and_the_run_goes_on(
    admin_dsn: str, admin_conn: Conn, towns: list[str], tmp_path: Path
) -> None:
    towns.append("ingest-f.ca")
    huge = overflowing_text()
    assert len(huge.encode()) < 1024 * 1024 and len(huge.encode()) > CHECK_FROM_BYTES
    rows: list[dict[str, Any] | str] = [
        page("ingest-f.ca", "if-1", meeting="Board", number=1),  # line 1
        page("ingest-f.ca", "if-2", meeting="Board", number=2),  # 2
        page("ingest-f.ca", "if-3", meeting="Board", number=2),  # 3: page 2 again, same chunk
        page("ingest-f.ca", "if-4", meeting="Board", number=3, text=huge),  # 4: vector too large: warned
        page("ingest-f.ca", "if-5", meeting="Board", number=1),  # 5: page 1 again, next chunk
        page("ingest-f.ca", "if-6", meeting="Other", number=1),  # 6: another document's page 1 is fine
    ]
    path = write_jsonl(tmp_path / "dup.jsonl", rows)
    seen: list[BadRow] = []
    summary = ingest_jsonl(admin_dsn, [path], batch_size=3, workers=2, on_bad_row=seen.append)
    assert summary.complete and summary.two_phase
    check_counts(summary)
    by_line = {b.position.rsplit(":", 1)[1]: b.reason for b in seen}
    assert set(by_line) == {"3", "5"}
    assert "page 2 of this document is already page id 'if-2'" in by_line["3"]
    assert "page 1 of this document is already page id 'if-1'" in by_line["5"]
    # The oversize page is no bad row: it is stored whole, and the warning says how much of it is searchable.
    assert [b.position for b in summary.partly_indexed] == [f"{path.resolve()}:4"]
    pages = stored(admin_conn, "ingest-f.ca")
    assert sorted(pages) == ["if-1", "if-2", "if-4", "if-6"]
    assert pages["if-4"][1] == huge
    row = admin_conn.execute(
        "SELECT public.civic_indexed_length(text) FROM meeting_page WHERE id = 'if-4'"
    ).fetchone()
    assert row is not None
    indexed = int(str(row[0]))
    assert len(huge) // 4 < indexed < len(huge) and huge[indexed] == " "  # the longest prefix, cut at a space
    reason = summary.partly_indexed[0].reason
    assert f"only the first {indexed:,} of {len(huge):,} characters are searchable" in reason
    first_code, last_code = huge.split()[1], huge.split()[-1]

    def found(words: str) -> bool:
        hit = admin_conn.execute(
            "SELECT count(*) FROM meeting_page WHERE id = 'if-4' "
            "AND search_vector @@ websearch_to_tsquery('public.civic', %s)",
            [words],
        ).fetchone()
        return hit == (1,)

    assert found("plooble") and found(first_code)  # words of the prefix are searchable
    assert not found(last_code)  # past the prefix: stored, not indexed

    # Against stored pages: a later run that gives page 2 to a new id is refused, by the database check.
    again = write_jsonl(tmp_path / "dup2.jsonl", [page("ingest-f.ca", "if-7", meeting="Board", number=2)])
    later: list[BadRow] = []
    second = ingest_jsonl(admin_dsn, [again], workers=2, on_bad_row=later.append)
    assert second.skipped == 1 and second.inserted == 0
    assert later[0].position == f"{again.resolve()}:1"
    assert "page 2 of this document is already another page's number" in later[0].reason
    assert "if-7" not in stored(admin_conn, "ingest-f.ca")


def test_a_row_the_database_refuses_is_isolated_and_the_rest_of_its_batch_lands(
    admin_dsn: str, admin_conn: Conn, towns: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With the reader's id length check switched off, a 201-character id reaches the server, which refuses it
    # (the column's CHECK, length 1-200): the batch is bisected under savepoints down to that row, which is
    # reported.
    import ops.ingest.records as records

    monkeypatch.setattr(records, "MAX_ID_CHARS", 10**6)
    towns.append("ingest-g.ca")
    rows: list[dict[str, Any] | str] = [
        page("ingest-g.ca", "ig-5" + "x" * 197 if i == 5 else f"ig-{i}", meeting=f"Board{i}", text=f"page {i}")
        for i in range(9)
    ]
    path = write_jsonl(tmp_path / "refused.jsonl", rows)
    seen: list[BadRow] = []
    summary = ingest_jsonl(admin_dsn, [path], batch_size=9, workers=2, on_bad_row=seen.append)
    assert summary.complete and (summary.inserted, summary.skipped) == (8, 1)
    check_counts(summary)
    assert seen[0].position == f"{path.resolve()}:6"
    assert "meeting_page_id_check" in seen[0].reason
    assert sorted(stored(admin_conn, "ingest-g.ca")) == sorted(f"ig-{i}" for i in range(9) if i != 5)


def test_failed_multi_worker_run_commits_no_batch_in_part_and_resume_ends_as_a_clean_run(
    admin_dsn: str, admin_conn: Conn, towns: list[str], tmp_path: Path
) -> None:
    towns.append("ingest-h.ca")
    batch = 4
    rows: list[dict[str, Any] | str] = []
    for i in range(40):
        # One document per row: every batch is split between both workers.
        row = page("ingest-h.ca", f"ih-{i}", meeting=f"Board{i}", text=f"page {i} wurbleton")
        rows.append(row)
    rows[21] = '{"subdomain": "ingest-h.ca", "id": '  # line 22, batch 5: a bad row in the middle
    path = write_jsonl(tmp_path / "fail.jsonl", rows)
    checkpoint = tmp_path / "checkpoint.json"

    def kill_a_worker(bad: BadRow) -> None:
        # The reader reports the bad row before handing its batch out: terminate one worker's backend now
        # (not the one holding the run's advisory lock), as a crashed server process would.
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(a.pid) FROM pg_stat_activity a "
                "WHERE a.application_name = 'civic-ingest' AND a.pid <> pg_backend_pid() "
                "AND NOT EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory') "
                "AND a.pid = (SELECT min(b.pid) FROM pg_stat_activity b WHERE b.application_name = 'civic-ingest' "
                "AND NOT EXISTS (SELECT 1 FROM pg_locks k WHERE k.pid = b.pid AND k.locktype = 'advisory'))"
            )

    with pytest.raises(IngestError):
        ingest_jsonl(admin_dsn, [path], batch_size=batch, workers=2, checkpoint=checkpoint, on_bad_row=kill_a_worker)
    assert leftover_prepared(admin_conn) == []
    line = json.loads(checkpoint.read_text())["positions"][str(path.resolve())]["line"]
    assert line % batch == 0 and line < 40
    # Exactly the batches before the checkpoint, each whole; nothing of any later batch.
    expected_before = {f"ih-{i}" for i in range(line) if i != 21}
    assert set(stored(admin_conn, "ingest-h.ca")) == expected_before

    summary = ingest_jsonl(admin_dsn, [path], batch_size=batch, workers=2, checkpoint=checkpoint, resume=True)
    assert summary.complete and summary.skipped == (1 if line <= 21 else 0)
    assert leftover_prepared(admin_conn) == []
    pages = stored(admin_conn, "ingest-h.ca")
    assert pages == {f"ih-{i}": (1, f"page {i} wurbleton") for i in range(40) if i != 21}
    docs = admin_conn.execute(
        "SELECT count(*) FROM meeting_document WHERE municipality_id = %s", [town_id(admin_conn, "ingest-h.ca")]
    ).fetchone()
    assert docs == (39,)


def test_prepared_shares_left_by_a_dead_run_are_settled_by_its_checkpoint(
    admin_dsn: str, admin_conn: Conn, towns: list[str], tmp_path: Path
) -> None:
    towns.append("ingest-i.ca")
    seed = write_jsonl(tmp_path / "seed.jsonl", [page("ingest-i.ca", "ii-0", meeting="Seed")])
    ingest_jsonl(admin_dsn, [seed], workers=1)
    town = town_id(admin_conn, "ingest-i.ca")
    doc = admin_conn.execute("SELECT id FROM meeting_document WHERE municipality_id = %s", [town]).fetchone()
    assert doc is not None
    decided, undecided = f"{GID_PREFIX}dead-0-0", f"{GID_PREFIX}dead-1-0"
    for gid, pid in ((decided, "ii-commit"), (undecided, "ii-rollback")):
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute("BEGIN")
            conn.execute(
                "INSERT INTO meeting_page (id, meeting_date, document_id, municipality_id, document_type, "
                "page_number, text) VALUES (%s, '2023-05-02', %s, %s, 'agenda', %s, 'left over')",
                [pid, doc[0], town, 1 + len(pid)],
            )
            conn.execute(psycopg.sql.SQL("PREPARE TRANSACTION {}").format(psycopg.sql.Literal(gid)))
    checkpoint = tmp_path / "checkpoint.json"
    checkpoint.write_text(json.dumps({"format": FORMAT, "positions": {}, "committing": [decided]}))
    empty = write_jsonl(tmp_path / "empty.jsonl", [])
    summary = ingest_jsonl(admin_dsn, [empty], workers=2, checkpoint=checkpoint)
    assert any("settled 2 prepared transactions" in n and "1 committed" in n for n in summary.notes)
    assert leftover_prepared(admin_conn) == []
    assert sorted(stored(admin_conn, "ingest-i.ca")) == ["ii-0", "ii-commit"]
