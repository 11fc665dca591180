"""Stemming, exact word forms, relevance over every match, phrases and honest counts, through the HTTP path."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from schema import search_sql
from schema.search import estimate_count, exact_forms
from tests.conftest import gql
from tests.fixtures_db import add_town

SEARCH = """
query S($q: String!, $order: SearchOrder, $first: Int, $after: String, $filter: SearchFilter) {
  search(query: $q, orderBy: $order, first: $first, after: $after, filter: $filter) {
    edges { rank headline node { sourceId } }
    pageInfo { hasNextPage endCursor }
    totalCount { value exact relativeError }
  }
}"""

# Pages of one made-up town, each a crafted text: (source id, date, text).
PAGES = [
    ("st-01", dt.date(2012, 3, 1), "The budgets were adopted after two hearings."),
    ("st-02", dt.date(2013, 3, 1), "The budget was adopted after one hearing."),
    ("st-03", dt.date(2014, 3, 1), "Budgeting for the hearing room."),
    ("st-04", dt.date(2015, 3, 1), "zebrafinch permits: the liquor licence board."),
    ("st-05", dt.date(2016, 3, 1), "The zebrafinch motion: liquor and license matters, then a license for liquor."),
    ("st-06", dt.date(2017, 3, 1), "Zebrafinch liquor license renewal; the liquor license fee."),
]
# Relevance: the best matches are the oldest pages, the newest are the weakest, so a ranking of recent pages
# alone would get the first page wrong.
RANKED = [
    (f"rk-{i:02d}", dt.date(2006, 1, 1) + dt.timedelta(days=40 * i), " ".join(["gryphonix"] * (30 - i)) + " filler")
    for i in range(30)
]


@pytest.fixture(scope="module")
def crafted(admin_dsn: str) -> Iterator[None]:
    add_town(admin_dsn, 'stemton.zx', 'Stemton', [*PAGES, *RANKED])
    yield


def ids(client: httpx.Client, q: str, order: str = "NEWEST", first: int = 50) -> list[str]:
    """The results among the crafted pages (the synthetic corpus under every test uses these words too)."""
    body = gql(client, SEARCH, {"q": q, "order": order, "first": first, "filter": {"municipalities": ["stemton.zx"]}})
    assert "errors" not in body, body
    return [e["node"]["sourceId"] for e in body["data"]["search"]["edges"]]


def ours(found: list[str]) -> set[str]:
    return {i for i in found if i.startswith("st-")}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("budgets", {"st-01", "st-02", "st-03"}),  # plural finds singular (and "Budgeting": same stem)
        ("budget", {"st-01", "st-02", "st-03"}),  # and the other way round
        ("hearings", {"st-01", "st-02", "st-03"}),
        ("hearing", {"st-01", "st-02", "st-03"}),
        ("adopted hearing", {"st-01", "st-02"}),
    ],
)
def test_stemming_finds_every_form(crafted: None, client: httpx.Client, query: str, expected: set[str]) -> None:
    found = ids(client, query, first=100)
    assert ours(found) == expected


def test_stemmed_vectors_and_queries(admin_conn: psycopg.Connection[Any]) -> None:
    row = admin_conn.execute(
        "SELECT to_tsvector('public.civic', 'Budgets and Hearings at the Café') @@ "
        "websearch_to_tsquery('public.civic', 'budget hearing cafe'), "
        "websearch_to_tsquery('public.civic', 'hearings')::text"
    ).fetchone()
    assert row == (True, "'hear'")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('"budgets"', {"st-01"}),
        ('"budget"', {"st-02"}),
        ('"hearings" budget', {"st-01"}),
        ('"Hearing"', {"st-02", "st-03"}),
    ],
)
def test_a_quoted_word_asks_for_that_exact_form(
    crafted: None, client: httpx.Client, query: str, expected: set[str]
) -> None:
    assert ours(ids(client, query, first=100)) == expected


def test_exact_forms_are_parsed_from_the_query() -> None:
    assert exact_forms('"budgets" hearing') == ("budgets",)
    assert exact_forms('"liquor license" "Fees"') == ("fees",)
    assert exact_forms('-"budgets" council') == ()
    assert exact_forms('"budgets" or "hearings"') == ()
    assert exact_forms("budgets") == ()


def test_phrase_needs_adjacent_words_in_order(crafted: None, client: httpx.Client) -> None:
    # st-04 says "licence" (another word), st-05 has both words but never "liquor license" in a row.
    assert ours(ids(client, '"liquor license" zebrafinch', first=100)) == {"st-06"}
    assert ours(ids(client, '"license liquor" zebrafinch', first=100)) == set()
    assert ours(ids(client, "liquor license zebrafinch", first=100)) == {"st-05", "st-06"}
    # Stemming applies inside a phrase too: "liquor licenses" is the same phrase.
    assert ours(ids(client, '"liquor licenses" zebrafinch', first=100)) == {"st-06"}


def test_relevance_is_the_documented_score_over_every_match(
    crafted: None, client: httpx.Client, admin_conn: psycopg.Connection[Any]
) -> None:
    # The documented score, computed row by row over every match: RUM's distance, lower is better.
    exact = [
        r[0]
        for r in admin_conn.execute(
            "SELECT id FROM meeting_page WHERE search_vector @@ websearch_to_tsquery('public.civic', 'gryphonix') "
            "ORDER BY search_vector <=> websearch_to_tsquery('public.civic', 'gryphonix'), "
            "meeting_date DESC, id DESC"
        ).fetchall()
    ]
    assert exact[:3] == ["rk-00", "rk-01", "rk-02"]  # the oldest pages hold the word most often
    body = gql(client, SEARCH, {"q": "gryphonix", "order": "RELEVANCE", "first": 10})
    first = body["data"]["search"]
    assert [e["node"]["sourceId"] for e in first["edges"]] == exact[:10]
    ranks = [e["rank"] for e in first["edges"]]
    assert ranks == sorted(ranks, reverse=True) and ranks[0] > ranks[-1] > 0
    scores = admin_conn.execute(
        "SELECT ts_rank(search_vector, websearch_to_tsquery('public.civic', 'gryphonix')) FROM meeting_page "
        "WHERE id = 'rk-00'"
    ).fetchone()
    assert scores is not None and ranks[0] == pytest.approx(scores[0], rel=1e-5)  # one word: rank is ts_rank
    body = gql(client, SEARCH, {"q": "gryphonix", "order": "RELEVANCE", "first": 25,
                                "after": first["pageInfo"]["endCursor"]})
    rest = body["data"]["search"]
    assert [e["node"]["sourceId"] for e in rest["edges"]] == exact[10:]
    assert rest["pageInfo"]["hasNextPage"] is False


def test_count_is_exact_below_the_cap_and_an_estimate_with_its_error_above(
    crafted: None, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = gql(client, SEARCH, {"q": "gryphonix", "first": 1})
    assert body["data"]["search"]["totalCount"] == {"value": 30, "exact": True, "relativeError": None}
    # The gateway runs in this process: lower the cap to reach the estimate on a small corpus.
    monkeypatch.setattr(search_sql, "COUNT_CAP", 5)
    body = gql(client, SEARCH + " ", {"q": "council", "first": 1})  # another document: no response cache hit
    count = body["data"]["search"]["totalCount"]
    assert count["exact"] is False and count["value"] >= 6
    assert count["relativeError"] is None or 0 < count["relativeError"] < 1


def test_estimate_arithmetic() -> None:
    floor = search_sql.COUNT_CAP + 1
    assert estimate_count(0, 5000, 1e6).value == floor  # nothing in the sample: only the lower bound is known
    est = estimate_count(500, 5000, 1_000_000)
    assert est.value == 100_000 and est.exact is False
    assert est.relative_error == pytest.approx(1.96 * (0.9 / 500) ** 0.5, abs=1e-3)
    assert estimate_count(5, 5000, 1_000_000).value == floor  # never below what the exact count proved


@pytest.mark.parametrize(
    ("query", "selective"),
    [
        ("council", False),  # common in the test corpus: the bounded date walk finds a page at once
        ("zyzzyvaquux", True),  # in no statistics: the index is asked first
        ('"liquor license"', True),  # a phrase: positions are checked in the index
        ("council -zyzzyvaquux", False),  # an excluded word is not a required one
        ("council or zyzzyvaquux", False),  # one common alternative makes the query common
    ],
)
def test_rare_words_and_phrases_ask_the_index_first(
    admin_conn: psycopg.Connection[Any], query: str, selective: bool
) -> None:
    row = admin_conn.execute(
        "SELECT public.civic_is_selective(websearch_to_tsquery('public.civic', %s))", [query]
    ).fetchone()
    assert row == (selective,)
