"""Rows land in the partition for their date; a date with no partition lands in DEFAULT and never fails."""

from __future__ import annotations

import datetime as dt

import psycopg

from migrations import partitions
from ops.maintenance.partitions import drain_default


def _insert_page(conn: psycopg.Connection[tuple[object, ...]], page_id: str, day: dt.date) -> str:
    conn.execute(
        "INSERT INTO municipality (subdomain, name, state) VALUES ('parttown.tx', 'Parttown', 'TX') "
        "ON CONFLICT (subdomain) DO NOTHING"
    )
    conn.execute(
        "INSERT INTO meeting_page (id, meeting_date, document_id, municipality_id, document_type, page_number, text)"
        " SELECT %s, %s, 0, id, 'agenda', 1, 'partition probe' FROM municipality WHERE subdomain = 'parttown.tx'",
        [page_id, day],
    )
    row = conn.execute(
        "SELECT tableoid::regclass::text FROM meeting_page WHERE id = %s AND meeting_date = %s",
        [page_id, day],
    ).fetchone()
    assert row is not None
    return str(row[0])


def test_rows_land_in_their_partition_and_default_catches_the_rest(
    admin_conn: psycopg.Connection[tuple[object, ...]],
) -> None:
    partitions.ensure_range(admin_conn, dt.date(2011, 1, 1), dt.date(2011, 12, 31))
    assert _insert_page(admin_conn, "p-2011", dt.date(2011, 6, 1)) == "meeting_page_y2011"
    # 1901 has no partition: the insert succeeds into DEFAULT...
    assert _insert_page(admin_conn, "p-1901", dt.date(1901, 3, 4)) == "meeting_page_default"
    # ...and draining DEFAULT later moves the row into a partition of its own period, atomically.
    created = drain_default(admin_conn)
    assert "meeting_page_y1901" in created
    row = admin_conn.execute(
        "SELECT tableoid::regclass::text, search_vector::text FROM meeting_page WHERE id = 'p-1901'"
    ).fetchone()
    assert row == ("meeting_page_y1901", "'partit':1 'probe':2")  # English stemming (docs/search.md)
    assert admin_conn.execute("SELECT count(*) FROM meeting_page_default").fetchone() == (0,)
    admin_conn.execute("DELETE FROM meeting_page WHERE id IN ('p-2011', 'p-1901')")


def test_periods_cover_range_for_both_widths() -> None:
    months = list(partitions.periods(dt.date(2020, 11, 15), dt.date(2021, 2, 1), "month"))
    assert months[0] == (dt.date(2020, 11, 1), dt.date(2020, 12, 1))
    assert months[-1] == (dt.date(2021, 2, 1), dt.date(2021, 3, 1))
    assert len(months) == 4
    years = list(partitions.periods(dt.date(2020, 11, 15), dt.date(2021, 2, 1), "year"))
    assert years == [(dt.date(2020, 1, 1), dt.date(2021, 1, 1)), (dt.date(2021, 1, 1), dt.date(2022, 1, 1))]
