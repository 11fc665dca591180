"""Search through the real HTTP path: keyset cursors in every order, filters, headlines, counts, N+1."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import psycopg.sql
import pytest

from schema import search_sql
from tests.conftest import gql

SEARCH = """
query S($q: String!, $order: SearchOrder, $first: Int, $after: String, $last: Int, $before: String,
        $filter: SearchFilter) {
  search(query: $q, orderBy: $order, first: $first, after: $after, last: $last, before: $before,
         filter: $filter) {
    edges { cursor rank node { id sourceId } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}"""


@pytest.fixture(scope="session")
def search_data(admin_dsn: str) -> Iterator[None]:
    """Hand-made pages with a marker word, many of them tied on date, on top of the synthetic corpus."""
    with psycopg.connect(admin_dsn, autocommit=True, prepare_threshold=None) as conn:
        conn.execute(
            "INSERT INTO municipality (subdomain, name, state, kind) VALUES "
            "('tiesville.zz', 'Tiesville', 'ZZ', 'town'), ('otherton.zy', 'Otherton', 'ZY', 'city')"
        )
        town = dict(
            conn.execute("SELECT subdomain, id FROM municipality WHERE state IN ('ZZ','ZY')").fetchall()
        )
        docs = [
            ("tiesville.zz", "CityCouncil", dt.date(2019, 5, 1), "minutes", 5),
            ("tiesville.zz", "PlanningCommission", dt.date(2019, 5, 1), "agenda", 5),
            ("tiesville.zz", "ParksBoard", dt.date(2019, 5, 1), "minutes", 5),
            ("otherton.zy", "CityCouncil", dt.date(2011, 2, 3), "agenda", 4),
            ("otherton.zy", "ZoningBoardOfAppeals", dt.date(2023, 8, 9), "minutes", 4),
            ("otherton.zy", "CityCouncil", dt.date(2006, 1, 10), "minutes", 2),
        ]
        for d_i, (sub, name, day, kind, npages) in enumerate(docs):
            doc_id = conn.execute(
                "INSERT INTO meeting_document (municipality_id, meeting_name, meeting_date, document_type) "
                "VALUES (%s, %s, %s, %s) RETURNING id",
                [town[sub], name, day, kind],
            ).fetchone()[0]  # type: ignore[index]
            for n in range(1, npages + 1):
                if d_i == 5:
                    text = f"Old business: the wombatine report, page {n}."
                else:
                    text = " ".join(["quokka"] * (1 + (n % 3))) + f" council discussed item {n} of {name}."
                if d_i == 0 and n == 1:
                    text = "quokka bids < 5 and > 2 <script>alert(1)</script> & <b>bold</b> caf\u00e9 quokka"
                conn.execute(
                    "INSERT INTO meeting_page (id, meeting_date, document_id, municipality_id, document_type,"
                    " page_number, text) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    [f"t{d_i}-p{n:02d}", day, doc_id, town[sub], kind, n, text],
                )
        conn.execute("ANALYZE meeting_page")
    yield


def truth(
    admin_conn: psycopg.Connection[Any],
    q: str,
    order: str,
    where: str = "true",
    params: list[Any] | None = None,
) -> list[str]:
    """The expected order, computed the slow, obvious way."""
    orders = {
        "NEWEST": "meeting_date DESC, id DESC",
        "OLDEST": "meeting_date ASC, id ASC",
        "RELEVANCE": "search_vector <=> websearch_to_tsquery('public.civic', %s), "
        "meeting_date DESC, id DESC",
    }
    args = [q, *(params or [])] + ([q] if order == "RELEVANCE" else [])
    rows = admin_conn.execute(
        f"SELECT id FROM meeting_page WHERE search_vector @@ websearch_to_tsquery('public.civic', %s) AND {where} "
        f"ORDER BY {orders[order]}",
        args,
    ).fetchall()
    return [r[0] for r in rows]


def page(client: httpx.Client, **variables: Any) -> dict[str, Any]:
    body = gql(client, SEARCH, variables)
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["search"]
    return result


@pytest.mark.parametrize("order", ["NEWEST", "OLDEST", "RELEVANCE"])
@pytest.mark.parametrize("query", ["quokka", "wombatine"])
def test_forward_to_the_end_then_backward_to_the_start(
    search_data: None, client: httpx.Client, admin_conn: psycopg.Connection[Any], order: str, query: str
) -> None:
    expected = truth(admin_conn, query, order)
    assert len(expected) >= 2
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        result = page(client, q=query, order=order, first=4, after=after)
        info = result["pageInfo"]
        assert info["hasPreviousPage"] is (pages > 0)
        seen += [e["node"]["sourceId"] for e in result["edges"]]
        pages += 1
        if not info["hasNextPage"]:
            break
        after = info["endCursor"]
        assert pages < 50
    assert seen == expected
    if order == "RELEVANCE":
        ranks = [e["rank"] for e in result["edges"]]
        assert all(r is not None for r in ranks)
    # Now backward from the last edge to the start.
    back: list[str] = []
    before = result["pageInfo"]["endCursor"]
    back = [seen[-1]]
    while True:
        result = page(client, q=query, order=order, last=3, before=before)
        back = [e["node"]["sourceId"] for e in result["edges"]] + back
        if not result["pageInfo"]["hasPreviousPage"]:
            break
        assert result["pageInfo"]["hasNextPage"] is True
        before = result["pageInfo"]["startCursor"]
    assert back == expected


def test_rare_word_uses_the_bounded_walk_fallback_and_is_still_exact(
    search_data: None, client: httpx.Client, admin_conn: psycopg.Connection[Any]
) -> None:
    total = admin_conn.execute("SELECT count(*) FROM meeting_page").fetchone()
    assert total is not None and total[0] > search_sql.DATE_WINDOW  # the walk cannot reach 2006 pages
    result = page(client, q="wombatine", order="NEWEST", first=20)
    assert [e["node"]["sourceId"] for e in result["edges"]] == ["t5-p02", "t5-p01"]
    result = page(client, q="nosuchwordanywhere", order="NEWEST", first=20)
    assert result["edges"] == [] and result["pageInfo"]["hasNextPage"] is False


def test_ties_on_date_are_broken_by_id(search_data: None, client: httpx.Client) -> None:
    result = page(client, q="quokka", order="NEWEST", first=100, filter={"municipalities": ["tiesville.zz"]})
    ids = [e["node"]["sourceId"] for e in result["edges"]]
    assert len(ids) == 15 and ids == sorted(ids, reverse=True)


@pytest.mark.parametrize(
    ("flt", "where", "params"),
    [
        (
            {"municipalities": ["tiesville.zz"]},
            "municipality_id = (SELECT id FROM municipality WHERE subdomain = %s)",
            ["tiesville.zz"],
        ),
        (
            {"municipalities": ["Tiesville.ZZ", "nowhere.xx"]},
            "municipality_id = (SELECT id FROM municipality WHERE subdomain = 'tiesville.zz')",
            [],
        ),
        ({"states": ["zy"]}, "municipality_id IN (SELECT id FROM municipality WHERE state = 'ZY')", []),
        (
            {"dateFrom": "2011-01-01", "dateTo": "2019-12-31"},
            "meeting_date BETWEEN '2011-01-01' AND '2019-12-31'",
            [],
        ),
        ({"documentType": "AGENDA"}, "document_type = 'agenda'", []),
        (
            {"meetingName": "council"},
            "document_id IN (SELECT id FROM meeting_document WHERE meeting_name ~ 'Council')",
            [],
        ),
    ],
)
def test_filters_narrow_results(
    search_data: None,
    client: httpx.Client,
    admin_conn: psycopg.Connection[Any],
    flt: dict[str, Any],
    where: str,
    params: list[Any],
) -> None:
    everything = truth(admin_conn, "quokka", "NEWEST")
    expected = truth(admin_conn, "quokka", "NEWEST", where, params)
    assert 0 < len(expected) < len(everything)
    result = page(client, q="quokka", order="NEWEST", first=100, filter=flt)
    assert [e["node"]["sourceId"] for e in result["edges"]] == expected


def test_unknown_municipality_is_an_empty_result(search_data: None, client: httpx.Client) -> None:
    result = page(client, q="quokka", filter={"municipalities": ["nowhere.xx"]})
    assert result["edges"] == []


def test_headline_is_escaped_and_marked(search_data: None, client: httpx.Client) -> None:
    body = gql(
        client,
        """{ search(query: "quokka cafe", filter: {municipalities: ["tiesville.zz"]}, first: 20) {
        edges { headline node { sourceId text } } } }""",
    )
    edges = {e["node"]["sourceId"]: e for e in body["data"]["search"]["edges"]}
    headline = edges["t0-p01"]["headline"]
    assert "<script>" not in headline and "&lt;/script&gt;" in headline and "&lt;b&gt;bold&lt;/b&gt;" in headline
    assert "<mark>quokka</mark>" in headline and "<mark>café</mark>" in headline
    assert "&amp;" in headline and "&lt; 5" in headline and "&gt; 2" in headline
    stripped = headline.replace("<mark>", "").replace("</mark>", "")
    assert "<" not in stripped and ">" not in stripped


@pytest.mark.parametrize("size", [5, 20])
def test_statement_count_is_fixed_whatever_the_page_size(
    search_data: None, client: httpx.Client, size: int
) -> None:
    body = gql(
        client,
        """query($n: Int) { search(query: "council", first: $n) {
        edges { headline node { document { meetingName municipality { name state } } } } } }""",
        {"n": size},
    )
    assert "errors" not in body, body
    assert len(body["data"]["search"]["edges"]) == size
    assert body["extensions"]["statements"] <= 4


def test_headline_costs_nothing_when_not_selected(search_data: None, client: httpx.Client) -> None:
    body = gql(client, '{ search(query: "council", first: 20) { edges { node { sourceId } } } }')
    assert body["extensions"]["statements"] <= 1  # 0 when the page came from the cache; never a headline batch


def test_total_count_exact_and_capped(
    search_data: None,
    client: httpx.Client,
    admin_conn: psycopg.Connection[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    q = '{ search(query: "quokka") { totalCount { value exact } } }'
    body = gql(client, q)
    assert body["data"]["search"]["totalCount"] == {
        "value": len(truth(admin_conn, "quokka", "NEWEST")),
        "exact": True,
    }
    # The gateway runs in this process: lower the cap to see the inexact branch on a small corpus.
    monkeypatch.setattr(search_sql, "COUNT_CAP", 5)
    body = gql(client, q + " ")  # another document: the first response is in the response cache
    count = body["data"]["search"]["totalCount"]
    assert count["exact"] is False and count["value"] >= 5


BAD_CURSOR_CASES = ["garbage", "", "a.b", "x" * 2000]


def test_cursor_misuse_is_bad_user_input(search_data: None, client: httpx.Client) -> None:
    first = page(client, q="quokka", first=2)
    cursor = first["pageInfo"]["endCursor"]
    forged = cursor[:-3] + ("AAA" if not cursor.endswith("AAA") else "BBB")
    other_search = {"q": "council", "after": cursor}
    other_order = {"q": "quokka", "order": "OLDEST", "after": cursor}
    other_filter = {"q": "quokka", "after": cursor, "filter": {"states": ["ZZ"]}}
    cases = [
        {"q": "quokka", "after": forged},
        {"q": "quokka", "after": cursor[: len(cursor) // 2]},
        other_search,
        other_order,
        other_filter,
        *({"q": "quokka", "after": c} for c in BAD_CURSOR_CASES),
    ]
    for variables in cases:
        body = gql(client, SEARCH, {"first": 2, **variables})
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", variables


@pytest.mark.parametrize(
    "variables",
    [
        {"q": "quokka", "first": 2, "last": 2},
        {"q": "quokka", "first": -1},
        {"q": "quokka", "last": -5},
        {"q": "quokka", "first": 101},
        {"q": ""},
        {"q": "   "},
        {"q": "x" * 501},
        {"q": "quokka", "filter": {"dateFrom": "2020-01-01", "dateTo": "2019-01-01"}},
        {"q": "quokka", "filter": {"dateFrom": "2020-02-30"}},
        {"q": "quokka", "filter": {"states": ["California"]}},
        {"q": '"" - or'},
    ],
)
def test_bad_arguments_are_bad_user_input(
    search_data: None, client: httpx.Client, variables: dict[str, Any]
) -> None:
    body = gql(client, SEARCH, variables)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body


def test_default_page_size_is_20(search_data: None, client: httpx.Client) -> None:
    assert len(page(client, q="council")["edges"]) == 20


def test_node_lookup_by_global_id(search_data: None, client: httpx.Client) -> None:
    result = page(client, q="wombatine", first=1)
    page_id = result["edges"][0]["node"]["id"]
    body = gql(
        client,
        """query($id: ID!) { node(id: $id) { id ... on MeetingPage { sourceId
        document { id meetingName meetingDate documentType municipality { id subdomain } } } } }""",
        {"id": page_id},
    )
    node = body["data"]["node"]
    assert node["sourceId"] == "t5-p02"
    doc = node["document"]
    assert doc["meetingName"] == "CityCouncil" and doc["meetingDate"] == "2006-01-10"
    body = gql(
        client,
        """query($ids: [ID!]!) { nodes(ids: $ids) { id __typename } }""",
        {"ids": [page_id, doc["id"], doc["municipality"]["id"], "TWVldGluZ1BhZ2U6MjAwMS0wMS0wMTpub3Bl"]},
    )
    assert [n and n["__typename"] for n in body["data"]["nodes"]] == [
        "MeetingPage",
        "MeetingDocument",
        "Municipality",
        None,
    ]
    assert body["extensions"]["statements"] <= 3
    body = gql(client, '{ node(id: "not-an-id!") { id } }')
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def test_municipality_documents_and_pages_connections(search_data: None, client: httpx.Client) -> None:
    body = gql(
        client,
        """{ municipality(subdomain: "otherton.zy") { name documents(first: 2) {
        edges { cursor node { meetingName meetingDate pages(first: 3) { edges { node { pageNumber } }
        pageInfo { hasNextPage } } } } pageInfo { hasNextPage endCursor } } } }""",
    )
    m = body["data"]["municipality"]
    dates = [e["node"]["meetingDate"] for e in m["documents"]["edges"]]
    assert dates == ["2023-08-09", "2011-02-03"]
    assert [p["node"]["pageNumber"] for p in m["documents"]["edges"][0]["node"]["pages"]["edges"]] == [
        1,
        2,
        3,
    ]
    assert m["documents"]["edges"][0]["node"]["pages"]["pageInfo"]["hasNextPage"] is True
    after = m["documents"]["pageInfo"]["endCursor"]
    body = gql(
        client,
        """query($a: String) { municipality(subdomain: "otherton.zy") { documents(first: 2, after: $a)
        { edges { node { meetingDate } } pageInfo { hasNextPage hasPreviousPage } } } }""",
        {"a": after},
    )
    docs = body["data"]["municipality"]["documents"]
    assert [e["node"]["meetingDate"] for e in docs["edges"]] == ["2006-01-10"]
    assert docs["pageInfo"] == {"hasNextPage": False, "hasPreviousPage": True}
    assert gql(client, '{ municipality(subdomain: "nowhere.xx") { name } }')["data"]["municipality"] is None


def test_municipalities_connection_by_state(search_data: None, client: httpx.Client) -> None:
    body = gql(client, '{ municipalities(state: "zy", first: 5) { edges { node { subdomain } } } }')
    assert [e["node"]["subdomain"] for e in body["data"]["municipalities"]["edges"]] == ["otherton.zy"]
    body = gql(
        client, "{ municipalities(first: 3) { edges { node { subdomain } } pageInfo { hasNextPage } } }"
    )
    subs = [e["node"]["subdomain"] for e in body["data"]["municipalities"]["edges"]]
    assert subs == sorted(subs) and len(subs) == 3


def test_date_filters_prune_partitions(search_data: None, admin_conn: psycopg.Connection[Any]) -> None:
    from schema.search_sql import SearchSpec, date_page

    spec = SearchSpec(query="quokka", date_from=dt.date(2019, 1, 1), date_to=dt.date(2019, 12, 31))
    query, params = date_page(spec, forward=True, size=20, cursor=None)
    plan = admin_conn.execute(psycopg.sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) ") + query, params).fetchone()
    assert plan is not None
    executed: set[str] = set()

    def walk(node: dict[str, Any]) -> None:
        name = node.get("Relation Name", "")
        if name.startswith("meeting_page_") and node.get("Actual Loops", 0) > 0:
            executed.add(name)
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0][0]["Plan"])
    # Only the 2019 partition (and DEFAULT, which may hold any date) is read; the rest are pruned.
    assert executed and executed <= {"meeting_page_y2019", "meeting_page_default"}, executed
