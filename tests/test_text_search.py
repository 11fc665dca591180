"""The civic text search configuration unaccents documents and queries alike."""

from __future__ import annotations

import psycopg
import pytest


@pytest.mark.parametrize(
    ("document", "query"),
    [("Reunión en el Café Central", "cafe"), ("the cafe on main street", "Café"), ("Año fiscal", "ano")],
)
def test_unaccent_both_ways(
    admin_conn: psycopg.Connection[tuple[object, ...]], document: str, query: str
) -> None:
    row = admin_conn.execute(
        "SELECT to_tsvector('public.civic', %s) @@ websearch_to_tsquery('public.civic', %s)",
        [document, query],
    ).fetchone()
    assert row == (True,)


def test_stored_page_vector_is_unaccented(admin_conn: psycopg.Connection[tuple[object, ...]]) -> None:
    admin_conn.execute("SELECT public.civic_split_name('CityCouncil')")
    row = admin_conn.execute(
        "SELECT to_tsvector('public.civic', public.civic_split_name('ZBAHearing'))::text"
    ).fetchone()
    assert row == ("'hear':2 'zba':1",)  # stemmed: "Hearing" and "hearings" are one lexeme
