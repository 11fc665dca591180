"""The whole text stored, a prefix indexed (migration 0011, issue 12 item 10), against the real test stack.

``search_vector`` is kept by a trigger on ``meeting_page``, cloned to every partition: the vector of the text
for an ordinary page, the vector of the longest prefix that fits for a page whose whole vector would pass
PostgreSQL's 1 MB. These tests write through SQL, through ``ops ingest`` into a pending (standalone) table
that is attached later, and migrate a populated database from the schema before 0011.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from migrations import partitions, runner
from ops import stack
from ops.ingest import ingest_jsonl
from ops.ingest.newparts import PENDING_TAG, PENDING_TRIGGER, create_pending
from ops.ingest.oversize import CHECK_FROM_BYTES, VectorCheck
from tests.fixtures_db import scratch_database
from tests.test_ingest import page, town_id, towns, write_jsonl
from tests.test_ingest_failures import overflowing_text

Conn = psycopg.Connection[tuple[object, ...]]
__all__ = ["towns"]  # the fixture, shared with test_ingest
INDEX_PREFIX = 11  # the migration this file is about
_INSERT = (
    "INSERT INTO meeting_page (id, meeting_date, document_id, municipality_id, document_type, page_number, text) "
    "VALUES (%s, %s, 0, %s, 'minutes', %s, %s)"
)


def _matches(conn: Conn, page_id: str, words: str) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM meeting_page WHERE id = %s AND search_vector @@ websearch_to_tsquery('public.civic', %s)",
        [page_id, words],
    ).fetchone()
    return row == (1,)


def _stale(conn: Conn, table: str = "meeting_page", town: int | None = None) -> int:
    """Rows of ``table`` (of one town) whose vector is not that of their whole text, or for a text over the
    threshold, of the prefix ``civic_indexed_length`` names (checked on its own in the overflow test)."""
    row = conn.execute(
        sql.SQL(
            "SELECT count(*) FROM {} WHERE (%(town)s::int IS NULL OR municipality_id = %(town)s) AND "
            "search_vector IS DISTINCT FROM to_tsvector('public.civic', CASE WHEN octet_length(text) <= %(limit)s "
            "THEN text ELSE left(text, public.civic_indexed_length(text)) END)"
        ).format(sql.Identifier("public", table)),
        {"town": town, "limit": CHECK_FROM_BYTES},
    ).fetchone()
    assert row is not None
    return int(str(row[0]))


def _whole(conn: Conn, table: str = "meeting_page") -> int:
    """Rows of ``table`` whose vector is not the vector of their whole text (texts under the threshold only)."""
    row = conn.execute(
        sql.SQL(
            "SELECT count(*) FROM {} WHERE octet_length(text) <= %s "
            "AND search_vector IS DISTINCT FROM to_tsvector('public.civic', text)"
        ).format(sql.Identifier("public", table)),
        [CHECK_FROM_BYTES],
    ).fetchone()
    assert row is not None
    return int(str(row[0]))


def _vector_triggers(conn: Conn, table: str) -> list[tuple[str, bool]]:
    """(name, cloned from the parent) of every trigger on ``table`` that runs the search_vector function."""
    rows = conn.execute(
        "SELECT t.tgname, t.tgparentid <> 0 FROM pg_trigger t WHERE t.tgrelid = %s::regclass "
        "AND t.tgfoid = 'public.civic_page_search_vector'::regproc ORDER BY 1",
        [f"public.{table}"],
    ).fetchall()
    return [(str(n), bool(c)) for n, c in rows]


def test_an_ordinary_page_s_vector_is_that_of_its_text_on_every_write(admin_conn: Conn, towns: list[str]) -> None:
    towns.append("prefix-a.ca")
    admin_conn.execute("INSERT INTO municipality (subdomain, name, state) VALUES ('prefix-a.ca', 'Prefix A', 'CA')")
    town = town_id(admin_conn, "prefix-a.ca")
    admin_conn.execute(_INSERT, ["pa-1", dt.date(2022, 4, 5), town, 1, "The Hearings on the Budgets of Montréal"])
    vector = admin_conn.execute(
        "SELECT search_vector::text, to_tsvector('public.civic', text)::text FROM meeting_page WHERE id = 'pa-1'"
    ).fetchone()
    assert vector is not None and vector[0] == vector[1] and "'montreal'" in str(vector[0])
    # A new text gives a new vector; a direct write of the column is overwritten with the text's vector.
    admin_conn.execute("UPDATE meeting_page SET text = 'zoning variance' WHERE id = 'pa-1'")
    assert _matches(admin_conn, "pa-1", "variance") and not _matches(admin_conn, "pa-1", "budget")
    admin_conn.execute("UPDATE meeting_page SET search_vector = 'forged'::tsvector WHERE id = 'pa-1'")
    assert not _matches(admin_conn, "pa-1", "forged") and _matches(admin_conn, "pa-1", "zoning")
    # The trigger sits on every partition (cloned from the parent), DEFAULT included.
    parts = [p.name for p in partitions.list_partitions(admin_conn)]
    assert partitions.DEFAULT_PARTITION in parts
    assert all(_vector_triggers(admin_conn, p) == [("meeting_page_search_vector", True)] for p in parts)


def test_an_overflowing_page_is_stored_whole_and_its_prefix_is_searchable(
    admin_conn: Conn, towns: list[str]
) -> None:
    towns.append("prefix-b.ca")
    admin_conn.execute("INSERT INTO municipality (subdomain, name, state) VALUES ('prefix-b.ca', 'Prefix B', 'CA')")
    town = town_id(admin_conn, "prefix-b.ca")
    huge = overflowing_text()
    with pytest.raises(psycopg.errors.ProgramLimitExceeded):
        admin_conn.execute("SELECT to_tsvector('public.civic', %s::text)", [huge])  # the whole would not fit
    admin_conn.execute(_INSERT, ["pb-1", dt.date(2022, 4, 6), town, 1, huge])
    row = admin_conn.execute(
        "SELECT length(text), text = %s, public.civic_indexed_length(text), "
        "search_vector = to_tsvector('public.civic', left(text, public.civic_indexed_length(text))) "
        "FROM meeting_page WHERE id = 'pb-1'",
        [huge],
    ).fetchone()
    assert row is not None
    length, same, indexed, prefix_vector = row
    assert (length, same, prefix_vector) == (len(huge), True, True)  # stored whole; the vector is the prefix's
    indexed = int(str(indexed))
    assert len(huge) // 4 < indexed < len(huge) and huge[indexed] == " "  # the longest prefix, cut at a space
    with pytest.raises(psycopg.errors.ProgramLimitExceeded):  # and it is the longest: 2 KB more do not fit
        admin_conn.execute("SELECT to_tsvector('public.civic', left(%s::text, %s))", [huge, indexed + 2048])
    codes = huge.split()
    assert _matches(admin_conn, "pb-1", "plooble") and _matches(admin_conn, "pb-1", codes[1])
    assert not _matches(admin_conn, "pb-1", codes[-1])  # stored, past the prefix, not searchable
    # The ingest's probe tells the same number of characters; texts under its threshold are not sent.
    assert VectorCheck(admin_conn).indexed_chars(huge) == indexed
    assert VectorCheck(admin_conn).indexed_chars("short text") is None
    # A text over the threshold that fits is indexed whole.
    long_fitting = ("council water budget " * (CHECK_FROM_BYTES // 10))[: 2 * CHECK_FROM_BYTES]
    admin_conn.execute(_INSERT, ["pb-2", dt.date(2022, 4, 6), town, 2, long_fitting])
    assert _stale(admin_conn, town=town) == 0
    assert VectorCheck(admin_conn).indexed_chars(long_fitting) is None


def test_the_ingest_threshold_is_the_trigger_s(admin_conn: Conn) -> None:
    body = admin_conn.execute(
        "SELECT pg_get_functiondef('public.civic_page_search_vector'::regproc)"
    ).fetchone()
    assert body is not None and f"octet_length(NEW.text) <= {CHECK_FROM_BYTES}" in str(body[0])


def test_a_pending_table_has_vectors_while_loaded_and_one_trigger_once_attached(
    admin_dsn: str, admin_conn: Conn, towns: list[str], tmp_path: Path
) -> None:
    towns.append("prefix-c.ca")
    width = partitions.get_width(admin_conn)
    start = partitions.period_start(dt.date(2093, 5, 1), width)
    name = partitions.partition_name(start, width)
    assert name not in {p.name for p in partitions.list_partitions(admin_conn)}
    rows: list[dict[str, Any] | str] = [
        page("prefix-c.ca", f"pc-{i}", date="2093-05-06", number=i, text=f"page {i} of the gryphon hearings")
        for i in range(6)
    ]
    path = write_jsonl(tmp_path / "pending.jsonl", rows)
    checkpoint = tmp_path / "ck.json"
    try:
        first = ingest_jsonl(admin_dsn, [path], batch_size=3, checkpoint=checkpoint, max_batches=1)
        assert not first.complete and first.pending == [name]
        # Pending: a standalone table with a trigger of its own (LIKE copies none), which filled the vectors.
        assert _vector_triggers(admin_conn, name) == [(PENDING_TRIGGER, False)]
        counted = admin_conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("public", name)))
        assert counted.fetchone() == (3,) and _whole(admin_conn, name) == 0

        second = ingest_jsonl(admin_dsn, [path], batch_size=3, checkpoint=checkpoint, resume=True)
        assert second.complete and second.partitions_created == [name]
        # Attached: the parent's clone alone, and every row has the vector of its text.
        assert _vector_triggers(admin_conn, name) == [("meeting_page_search_vector", True)]
        assert _whole(admin_conn, name) == 0
        assert all(_matches(admin_conn, f"pc-{i}", "gryphon hearing") for i in range(6))
        # It fires once per row written: count the function's calls within one transaction.
        with admin_conn.transaction():
            admin_conn.execute("SET LOCAL track_functions = 'pl'")
            updated = admin_conn.execute(
                "UPDATE meeting_page SET text = text || ' amended' WHERE meeting_date = '2093-05-06'"
            ).rowcount
            calls = admin_conn.execute(
                "SELECT pg_stat_get_xact_function_calls('public.civic_page_search_vector'::regproc)"
            ).fetchone()
        assert updated == 6 and calls == (6,)
        assert all(_matches(admin_conn, f"pc-{i}", "amended") for i in range(6))
    finally:
        admin_conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier("public", name)))


# --- the migration on a populated database --------------------------------------------------------------------

DB = "civic_index_prefix_test"


@pytest.fixture()
def before_0011(stack_layout: stack.StackLayout) -> Iterator[str]:
    """A database of its own on the test primary at the schema before 0011: 1,000 pages, a pending table."""
    with scratch_database(stack_layout, DB, before=INDEX_PREFIX) as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            partitions.ensure_range(conn, dt.date(2018, 1, 1), dt.date(2019, 12, 31))
            conn.execute("INSERT INTO municipality (id, subdomain, name, state) VALUES (1, 'mig.zz', 'Mig', 'ZZ')")
            conn.execute(
                "INSERT INTO meeting_page (id, meeting_date, document_id, municipality_id, document_type, "
                "page_number, text) SELECT 'm' || g, date '2018-01-01' + (g % 700), 1, 1, 'minutes', g, "
                "'The hearings on the budgets, item ' || g FROM generate_series(1, 1000) g"
            )
            # A pending table an interrupted ingest left, made as the code before 0011 made it.
            conn.execute(
                "CREATE TABLE public.meeting_page_y2025 (LIKE public.meeting_page INCLUDING DEFAULTS "
                "INCLUDING GENERATED INCLUDING CONSTRAINTS, PRIMARY KEY (id, meeting_date), "
                "CONSTRAINT meeting_page_y2025_ingest_range "
                "CHECK (meeting_date >= '2025-01-01' AND meeting_date < '2026-01-01'))"
            )
            conn.execute(
                sql.SQL("COMMENT ON TABLE public.meeting_page_y2025 IS {}").format(
                    sql.Literal(f"{PENDING_TAG} FROM 2025-01-01 TO 2026-01-01")
                )
            )
            conn.execute(
                "INSERT INTO public.meeting_page_y2025 (id, meeting_date, document_id, municipality_id, "
                "document_type, page_number, text) VALUES ('p1', '2025-02-02', 1, 1, 'agenda', 1, 'pending hearings')"
            )
            with pytest.raises(psycopg.errors.ProgramLimitExceeded):  # before 0011 the page cannot be written
                conn.execute(_INSERT, ["big", dt.date(2019, 3, 3), 1, 1, overflowing_text()])
        yield dsn


def test_the_migration_keeps_a_populated_database_s_vectors_and_then_maintains_them(before_0011: str) -> None:
    dsn = before_0011
    with psycopg.connect(dsn, autocommit=True) as conn:
        old = dict(conn.execute("SELECT id, search_vector::text FROM meeting_page").fetchall())
    applied = runner.migrate(dsn)
    assert [m.version for m in applied] == [INDEX_PREFIX]
    with psycopg.connect(dsn, autocommit=True) as conn:
        generated = conn.execute(
            "SELECT attrelid::regclass::text FROM pg_attribute WHERE attname = 'search_vector' AND attgenerated <> ''"
        ).fetchall()
        assert generated == []  # no table (parent, partitions, the pending table) keeps the expression
        assert dict(conn.execute("SELECT id, search_vector::text FROM meeting_page").fetchall()) == old
        assert _whole(conn) == 0
        for part in partitions.list_partitions(conn):
            assert _vector_triggers(conn, part.name) == [("meeting_page_search_vector", True)], part.name
        assert _vector_triggers(conn, "meeting_page_y2025") == [(PENDING_TRIGGER, False)]
        # The page that could not be written is, whole; writes to the pending table get vectors.
        huge = overflowing_text()
        conn.execute(_INSERT, ["big", dt.date(2019, 3, 3), 1, 1, huge])
        assert conn.execute("SELECT length(text) FROM meeting_page WHERE id = 'big'").fetchone() == (len(huge),)
        assert _matches(conn, "big", "plooble")
        conn.execute(
            "INSERT INTO public.meeting_page_y2025 (id, meeting_date, document_id, municipality_id, "
            "document_type, page_number, text) VALUES ('p2', '2025-02-03', 1, 1, 'agenda', 2, 'more hearings')"
        )
        assert _whole(conn, "meeting_page_y2025") == 0
        # A partition created after the migration gets the trigger from the parent.
        partitions.ensure_range(conn, dt.date(2031, 1, 1), dt.date(2031, 1, 1))
        conn.execute(_INSERT, ["later", dt.date(2031, 6, 1), 1, 1, "later hearings"])
        assert _matches(conn, "later", "hearing")

        # The rebuild procedure of 0005 still recomputes every vector (UPDATE ... SET text = text fires the
        # trigger): make some stale behind the trigger's back (replica mode skips ordinary triggers), rebuild.
        with conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")
            conn.execute("UPDATE meeting_page SET search_vector = 'stale'::tsvector WHERE id LIKE 'm1%'")
        assert _whole(conn) > 100
        conn.execute("TRUNCATE public.search_vector_rebuild")
        conn.execute("CALL public.civic_rebuild_search_vectors()")
        assert _whole(conn) == 0 and _stale(conn) == 0  # 'big' too: its vector is its prefix's
        assert _matches(conn, "m100", "hearing budget")


def test_create_pending_gives_the_table_its_trigger(admin_conn: Conn) -> None:
    name = "meeting_page_pending_probe"
    try:
        create_pending(admin_conn, dt.date(2094, 1, 1), dt.date(2095, 1, 1), name)
        assert _vector_triggers(admin_conn, name) == [(PENDING_TRIGGER, False)]
        generated = admin_conn.execute(
            "SELECT attgenerated FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'search_vector'",
            [f"public.{name}"],
        ).fetchone()
        assert generated == ("",)
    finally:
        admin_conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier("public", name)))
