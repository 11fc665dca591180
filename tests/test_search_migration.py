"""The stemming migration (0005, 0006) on a populated table while searches run against it."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator

import psycopg
import pytest

from migrations import partitions, runner
from ops import stack
from tests.fixtures_db import scratch_database
from tests.helpers import eventually

DB = "civic_migration_test"
STEMMING = 5  # the first migration of the stemming change


@pytest.fixture()
def old_schema(stack_layout: stack.StackLayout) -> Iterator[str]:
    """A database of its own on the test primary, at the schema before stemming, holding 2,000 pages."""
    with scratch_database(stack_layout, DB, before=STEMMING) as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            partitions.ensure_range(conn, dt.date(2018, 1, 1), dt.date(2021, 12, 31))
            conn.execute("INSERT INTO municipality (id, subdomain, name, state) VALUES (1, 'mig.zz', 'Mig', 'ZZ')")
            conn.execute(
                "INSERT INTO meeting_document (id, municipality_id, meeting_name, meeting_date, document_type) "
                "VALUES (1, 1, 'CityCouncil', '2019-01-01', 'minutes')"
            )
            conn.execute(
                """INSERT INTO meeting_page (id, meeting_date, document_id, municipality_id, document_type,
                                             page_number, text)
                   SELECT 'm' || g, date '2018-01-01' + (g % 1400), 1, 1, 'minutes', g,
                          'The hearings on the budgets, item ' || g || '. ' || repeat('council water ', 50)
                     FROM generate_series(1, 2000) g"""
            )
            before = conn.execute(
                "SELECT count(*) FROM meeting_page WHERE search_vector @@ to_tsquery('simple', 'hearings')"
            ).fetchone()
            assert before == (2000,)  # the old vectors hold the word as written
        yield dsn


def test_migration_rebuilds_vectors_while_searches_run(old_schema: str) -> None:
    dsn = old_schema
    stop = threading.Event()
    errors: list[BaseException] = []
    searches = [0]

    def search() -> None:
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                while not stop.is_set():
                    conn.execute(
                        "SELECT id FROM meeting_page WHERE search_vector @@ websearch_to_tsquery('public.civic', "
                        "'council water') ORDER BY meeting_date DESC, id DESC LIMIT 20"
                    ).fetchall()
                    searches[0] += 1
                    stop.wait(0.01)  # a steady trickle of searches, ended at once by stop
        except BaseException as exc:  # reported by the test below
            errors.append(exc)

    worker = threading.Thread(target=search)
    worker.start()
    try:
        eventually(lambda: searches[0] > 0 or errors, what="the first search")
        applied = runner.migrate(dsn)
        during = searches[0]
    finally:
        stop.set()
        worker.join(30)
    assert not errors, errors
    assert [m.version for m in applied][:2] == [5, 6]
    assert during > 5  # searches ran (and succeeded) while the migration did
    with psycopg.connect(dsn, autocommit=True) as conn:
        stemmed = conn.execute(
            "SELECT count(*) FROM meeting_page WHERE search_vector @@ websearch_to_tsquery('public.civic', "
            "'hearing budget')"
        ).fetchone()
        assert stemmed == (2000,)
        old_form = conn.execute(
            "SELECT count(*) FROM meeting_page WHERE search_vector @@ to_tsquery('simple', 'hearings')"
        ).fetchone()
        assert old_form == (0,)  # every vector was rebuilt, none keeps the unstemmed lexeme
        names = conn.execute("SELECT name_vector::text FROM meeting_document").fetchone()
        assert names == ("'citi':1 'council':2",)
        indexes = dict(
            conn.execute(
                "SELECT c.relname, x.indisvalid FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid "
                "WHERE x.indrelid = 'public.meeting_page'::regclass"
            ).fetchall()
        )
        assert indexes.get("meeting_page_rum_idx") is True and "meeting_page_search_idx" not in indexes
        done = conn.execute("SELECT count(*) FROM public.search_vector_rebuild").fetchone()
        parts = conn.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'public.meeting_page'::regclass"
        ).fetchone()
        assert done == parts
        # A partition created afterwards gets the RUM index from its parent.
        partitions.ensure_range(conn, dt.date(2030, 1, 1), dt.date(2030, 1, 1))
        rum = conn.execute(
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'meeting_page_y2030' AND indexdef LIKE '%USING rum%'"
        ).fetchone()
        assert rum == (1,)
