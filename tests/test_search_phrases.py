"""Phrase RELEVANCE: one documented score, the same in the RUM index and on the row (docs/search.md)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from schema import search_sql
from schema.search_sql import SearchSpec
from tests.conftest import gql
from tests.fixtures_db import add_town

SEARCH = """
query S($q: String!, $first: Int, $after: String, $last: Int, $before: String) {
  search(query: $q, orderBy: RELEVANCE, first: $first, after: $after, last: $last, before: $before) {
    edges { rank cursor node { sourceId } }
    pageInfo { hasNextPage hasPreviousPage endCursor startCursor }
    totalCount { value exact }
  }
}"""

PHRASE = '"quillfeather permit"'
# The same words without the adjacency: the query the score is computed with.
LOOSE = "'quillfeath' & 'permit'"
# One year (one partition), the strongest page stored last: before, RUM gave every phrase match the in-index
# distance Infinity and returned them in storage order, so the statement's first 100-odd rows by the index
# missed the best page; the weaker pages' scores differ, so no tie group made it fetch further.
WEAK = 124
PAGES = [
    (f"ph-{i:03d}", dt.date(2011, 1, 1) + dt.timedelta(days=i), "quillfeather permit " * (1 + i % 4) + "filler " * 30)
    for i in range(WEAK)
]
PAGES.append(("ph-best", dt.date(2011, 1, 1), "quillfeather permit " * 9 + "filler " * 30))
# Both words, never adjacent: no match of the phrase, whatever its score would be.
PAGES.append(("ph-loose", dt.date(2011, 6, 1), "quillfeather and the permit " * 9))


@pytest.fixture(scope="module")
def phrased(admin_dsn: str) -> Iterator[None]:
    add_town(admin_dsn, 'phraseton.zx', 'Phraseton', PAGES)
    yield


def exact_order(conn: psycopg.Connection[Any]) -> list[tuple[str, float]]:
    """The documented score computed row by row over every match, best first."""
    return [
        (str(r[0]), float(r[1]))
        for r in conn.execute(
            "SELECT id, search_vector <=> %s::tsquery AS d FROM meeting_page "
            "WHERE search_vector @@ websearch_to_tsquery('public.civic', %s) "
            "ORDER BY d, meeting_date DESC, id DESC",
            [LOOSE, PHRASE],
        ).fetchall()
    ]


def test_the_score_query_loosens_phrases_only(admin_conn: psycopg.Connection[Any]) -> None:
    cases = {
        '"liquor license"': "'liquor' & 'licens'",
        '"zoning of the variance" budget': "'zone' & 'varianc' & 'budget'",  # stop words: <3>
        '"liquor license" or permit': "'liquor' & 'licens' | 'permit'",
        "cannabis -license": "'cannabi' & !'licens'",  # no phrase: the query itself
    }
    for q, loose in cases.items():
        got = admin_conn.execute(
            sql.SQL("SELECT {}::text").format(search_sql.RANK_TSQ), {"q": q}
        ).fetchone()
        assert got == (loose,), q


def test_phrase_relevance_follows_the_score_in_the_index(
    phrased: None, admin_conn: psycopg.Connection[Any]
) -> None:
    exact = exact_order(admin_conn)
    assert len(exact) == WEAK + 1 and exact[0][0] == "ph-best"  # most occurrences first
    assert exact[0][1] < exact[1][1] < exact[-1][1]
    # The gateway's statement with the planner held to the RUM index's order: the index, not a sort of the
    # rows, must put the best phrase matches first (it used to return them in storage order).
    text, params = search_sql.relevance_page(
        SearchSpec(query=PHRASE, order="RELEVANCE"), forward=True, size=5, cursor=None
    )
    with admin_conn.transaction(force_rollback=True):
        admin_conn.execute("SET LOCAL enable_seqscan = off")
        admin_conn.execute("SET LOCAL enable_bitmapscan = off")
        plan = "\n".join(str(r[0]) for r in admin_conn.execute(b"EXPLAIN " + text.as_bytes(admin_conn), params))
        assert "Order By: (search_vector <=>" in plan, plan
        rows = [r for r in admin_conn.execute(text, params).fetchall() if r[0] is not None]
    got = [(str(r[0]), float(r[8])) for r in rows]
    assert [i for i, _ in got] == [i for i, _ in exact[:6]]
    assert [d for _, d in got] == pytest.approx([d for _, d in exact[:6]], rel=1e-6)


def test_phrase_relevance_pages_through_the_gateway(
    phrased: None, client: httpx.Client, admin_conn: psycopg.Connection[Any]
) -> None:
    exact = exact_order(admin_conn)
    body = gql(client, SEARCH, {"q": PHRASE, "first": 3})
    first = body["data"]["search"]
    assert [e["node"]["sourceId"] for e in first["edges"]] == [i for i, _ in exact[:3]]
    assert first["totalCount"] == {"value": WEAK + 1, "exact": True}  # the non-adjacent page is no match
    ranks = [e["rank"] for e in first["edges"]]
    assert ranks == pytest.approx([1 / d for _, d in exact[:3]], rel=1e-5)
    seen = [e["node"]["sourceId"] for e in first["edges"]]
    page = first
    while page["pageInfo"]["hasNextPage"]:
        body = gql(client, SEARCH, {"q": PHRASE, "first": 100, "after": page["pageInfo"]["endCursor"]})
        assert "errors" not in body, body
        page = body["data"]["search"]
        seen += [e["node"]["sourceId"] for e in page["edges"]]
    assert seen == [i for i, _ in exact]  # keyset paging on the same score reaches every match, in order
    # Backward from the 10th match: the 3 before it, in order, and more before those.
    body = gql(client, SEARCH, {"q": PHRASE, "first": 10})
    tenth = body["data"]["search"]["edges"][-1]["cursor"]
    body = gql(client, SEARCH, {"q": PHRASE, "last": 3, "before": tenth})
    assert "errors" not in body, body
    back = body["data"]["search"]
    assert [e["node"]["sourceId"] for e in back["edges"]] == [i for i, _ in exact[6:9]]
    assert back["pageInfo"]["hasPreviousPage"] is True
