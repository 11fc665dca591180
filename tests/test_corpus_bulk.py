"""The corpus loader's bulk path (ops.corpus.bulk): every period loaded into a table of its own, indexed after.

The session's stack was loaded by that path (tests/conftest.py), so these tests check what it left: nothing
pending, every partition attached with every parent index, the migrations' own partitions back under their
names, and the rows where a search finds them.
"""

from __future__ import annotations

import datetime as dt

import psycopg

from migrations import partitions
from ops.corpus import bulk
from ops.ingest import newparts


def test_nothing_is_left_pending_and_every_partition_has_every_parent_index(
    admin_conn: psycopg.Connection[tuple[object, ...]],
) -> None:
    assert newparts.find_pending(admin_conn) == []
    missing = admin_conn.execute(
        """
        SELECT c.relname, pc.relname
          FROM pg_inherits t
          JOIN pg_class c ON c.oid = t.inhrelid
          JOIN pg_index pi ON pi.indrelid = 'public.meeting_page'::regclass
          JOIN pg_class pc ON pc.oid = pi.indexrelid
         WHERE t.inhparent = 'public.meeting_page'::regclass
           AND NOT EXISTS (SELECT 1 FROM pg_inherits ii JOIN pg_index ci ON ci.indexrelid = ii.inhrelid
                            WHERE ii.inhparent = pi.indexrelid AND ci.indrelid = c.oid)
        """
    ).fetchall()
    assert missing == []
    # The parent's indexes are valid only when every partition's index is attached.
    invalid = admin_conn.execute(
        "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = 'public.meeting_page'::regclass "
        "AND NOT indisvalid"
    ).fetchall()
    assert invalid == []
    rum = admin_conn.execute(
        "SELECT count(*) FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid JOIN pg_am a ON a.oid = c.relam "
        "WHERE x.indrelid = 'public.meeting_page'::regclass AND a.amname = 'rum'"
    ).fetchone()
    assert rum == (1,)


def test_loaded_rows_sit_in_their_year_and_are_found_through_the_index(
    admin_conn: psycopg.Connection[tuple[object, ...]],
) -> None:
    parts = [p for p in partitions.list_partitions(admin_conn, exact=True) if p.start is not None]
    assert sum(p.rows for p in parts) > 0
    for part in parts:
        assert part.name == partitions.partition_name(part.start, "year")  # type: ignore[arg-type]
    wrong = admin_conn.execute(
        "SELECT count(*) FROM meeting_page WHERE tableoid::regclass::text "
        "<> 'meeting_page_y' || extract(year FROM meeting_date)::int"
    ).fetchone()
    assert wrong == (0,)
    with admin_conn.transaction():
        admin_conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(
            str(r[0])
            for r in admin_conn.execute(
                "EXPLAIN SELECT count(*) FROM meeting_page WHERE search_vector @@ 'council'::tsquery"
            ).fetchall()
        )
        assert "Seq Scan" not in plan  # with sequential scans off, only a missing index would leave one
        found = admin_conn.execute(
            "SELECT count(*) FROM meeting_page WHERE search_vector @@ 'council'::tsquery"
        ).fetchone()
    assert found is not None and int(found[0]) > 0


def test_targets_route_each_date_to_its_period_and_the_rest_to_the_parent() -> None:
    targets = bulk.Targets(
        starts=(dt.date(2020, 1, 1), dt.date(2021, 1, 1)),
        ends=(dt.date(2021, 1, 1), dt.date(2022, 1, 1)),
        tables=("t2020", "t2021"),
        pending=(),
    )
    assert targets.table(dt.date(2020, 1, 1)) == "t2020"
    assert targets.table(dt.date(2020, 12, 31)) == "t2020"
    assert targets.table(dt.date(2021, 6, 1)) == "t2021"
    assert targets.table(dt.date(2019, 12, 31)) == partitions.PARENT
    assert targets.table(dt.date(2022, 1, 1)) == partitions.PARENT
