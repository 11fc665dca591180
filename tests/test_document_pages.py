"""A document's own pages through the real gateway: matching pages grouped per document, the statement count of
the search page's query, the whole text marked, and the document view at /documents/<id> (HTML, 404s, escaping).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import WRITER_TOKEN, ServedGateway, gql
from tests.helpers import eventually

WRITER = {"Authorization": f"Bearer {WRITER_TOKEN}"}
STATIC = Path(__file__).resolve().parent.parent / "gateway" / "static"

#: The search page's own operation, read from its script (so this is the query people's browsers send).
SEARCH_PAGE = re.search(  # type: ignore[union-attr]
    r"export const SEARCH = `(.*?)`;", (STATIC / "js" / "queries.js").read_text(), re.S
).group(1)

DOC = """query($id: ID!, $q: String!, $first: Int!) { node(id: $id) { ... on MeetingDocument {
  pageNumbers matchingPageNumbers(query: $q)
  matchingPages(query: $q, first: $first) { count edges { headline page { sourceId pageNumber
    document { id } } } }
  page(number: 4) { pageNumber highlightedText(query: $q) text }
  missing: page(number: 99) { pageNumber } } } }"""


@pytest.fixture(scope="module")
def meeting(gateway: ServedGateway) -> Iterator[dict[str, Any]]:
    """A document of six pages whose marker word is on pages 2, 4 and 5 (page 4 also carries markup)."""
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        yield from _meeting(client)


def _meeting(client: httpx.Client) -> Iterator[dict[str, Any]]:
    word = f"platy{uuid.uuid4().hex[:8]}"
    gql(client, """mutation { upsertMunicipality(input: {subdomain: "docview.zz", name: "Docview", state: "ZZ"})
        { consistencyToken } }""", headers=WRITER)
    texts = {
        1: "Call to order.",
        2: f"Item one: the {word} report.",
        3: "Public comment.",
        4: f"<script>alert(1)</script> & the {word} budget <b>adopted</b>; {word} again.",
        5: f"Closing: {word}.",
        6: "Adjourned.",
    }
    body = gql(client, """mutation($pages: [PageInput!]!) { upsertDocument(input: {municipality: "docview.zz",
        meetingName: "ParksAndRecreationBoard", meetingDate: "2021-03-04", documentType: MINUTES,
        pages: $pages}) { consistencyToken document { id } } }""",
        {"pages": [{"sourceId": f"{word}-p{n}", "pageNumber": n, "text": t,
                    "pageImage": f"/_minutes/ParksAndRecreationBoard/2021-03-04/{n}.png"}
                   for n, t in texts.items()]}, WRITER)
    assert "errors" not in body, body
    payload = body["data"]["upsertDocument"]
    yield {"id": payload["document"]["id"], "word": word,
           "headers": {"X-Consistency-Token": payload["consistencyToken"]}}
    gql(client, 'mutation($id: ID!) { deleteDocument(id: $id) { deletedId } }', {"id": payload["document"]["id"]},
        WRITER)


def test_matching_pages_in_page_order_with_counts(client: httpx.Client, meeting: dict[str, Any]) -> None:
    body = gql(client, DOC, {"id": meeting["id"], "q": meeting["word"], "first": 2}, meeting["headers"])
    assert "errors" not in body, body
    doc = body["data"]["node"]
    assert doc["pageNumbers"] == [1, 2, 3, 4, 5, 6]
    assert doc["matchingPageNumbers"] == [2, 4, 5]
    matches = doc["matchingPages"]
    assert matches["count"] == 3
    assert [e["page"]["pageNumber"] for e in matches["edges"]] == [2, 4]  # the first two, in page order
    assert all(e["page"]["document"]["id"] == meeting["id"] for e in matches["edges"])
    headline = matches["edges"][1]["headline"]
    assert f"<mark>{meeting['word']}</mark>" in headline
    assert "<script" not in headline and "&lt;/script&gt;" in headline
    page = doc["page"]
    assert page["pageNumber"] == 4 and doc["missing"] is None
    marked = page["highlightedText"]
    # The whole text, escaped, every match marked: nothing left out, nothing else is markup.
    assert marked.count("<mark>") == 2
    unmarked = marked.replace("<mark>", "").replace("</mark>", "")
    assert unmarked == page["text"].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def test_bad_arguments_are_bad_user_input(client: httpx.Client, meeting: dict[str, Any]) -> None:
    for q, first in (("", 3), ("x" * 501, 3), ("budget", 101), ("budget", -1)):
        body = gql(client, DOC, {"id": meeting["id"], "q": q, "first": first}, meeting["headers"])
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body


def test_search_page_query_sends_at_most_four_statements(client: httpx.Client) -> None:
    for order, word in (("NEWEST", "budget"), ("RELEVANCE", "council"), ("OLDEST", "zoning")):
        body = gql(client, SEARCH_PAGE, {"query": word, "orderBy": order, "first": 10})
        assert "errors" not in body, body
        ext = body["extensions"]
        assert ext["statements"] <= 4, ext
        assert ext["estimatedStatements"] >= ext["statements"], ext
        search = body["data"]["search"]
        assert search["edges"]
        # Each document of the page once, in the order the results first name them.
        first_seen = list(dict.fromkeys(e["node"]["document"]["id"] for e in search["edges"]))
        assert [d["id"] for d in search["documents"]] == first_seen
        for doc in search["documents"]:
            matches = doc["matchingPages"]
            numbers = [m["page"]["pageNumber"] for m in matches["edges"]]
            assert numbers == sorted(numbers) and 1 <= len(numbers) <= 3 and matches["count"] >= len(numbers)
            hits = [e["node"]["pageNumber"] for e in search["edges"] if e["node"]["document"]["id"] == doc["id"]]
            assert matches["count"] >= len(hits)


def _view(client: httpx.Client, meeting: dict[str, Any], query: str = "") -> httpx.Response:
    url = f"/documents/{meeting['id']}{query}"
    return eventually(lambda: (r := client.get(url, headers=meeting["headers"])).status_code == 200 and r,
                      timeout_s=10, what="the document view")


def test_document_view_opens_at_the_first_match_and_marks_it(client: httpx.Client, meeting: dict[str, Any]) -> None:
    word = meeting["word"]
    resp = _view(client, meeting, f"?q={word}&r=%3Fq%3D{word}%26type%3Dminutes")
    assert resp.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in resp.headers["content-security-policy"]
    html = resp.text
    assert 'data-page="2"' in html  # the first matching page
    assert f"<mark>{word}</mark>" in html
    assert 'href="/?q=' + word + '&amp;type=minutes"' in html  # back to exactly those results
    assert "is on 3 of 6 pages" in html
    assert 'rel="next"' in html and "page=3" in html
    assert 'href="https://docview.zz.civic.band/_minutes/ParksAndRecreationBoard/2021-03-04/2.png"' in html
    # The page with markup in its text: escaped, never live.
    four = _view(client, meeting, f"?q={word}&page=4").text
    assert "<script>alert" not in four and "&lt;script&gt;alert(1)&lt;/script&gt;" in four
    assert "&lt;b&gt;adopted&lt;/b&gt;" in four
    plain = _view(client, meeting, "?page=4").text
    assert "<mark>" not in plain and "&lt;script&gt;" in plain


def test_document_view_not_found_and_bad_input(client: httpx.Client, meeting: dict[str, Any]) -> None:
    _view(client, meeting)  # visible on every node
    cases = {
        "/documents/not-an-id": 404,
        "/documents/TWVldGluZ0RvY3VtZW50Ojk5OTk5OTk5": 404,  # a document id that names nothing
        "/documents/TXVuaWNpcGFsaXR5OjE": 404,  # a municipality's id
        f"/documents/{meeting['id']}?page=99": 404,
        f"/documents/{meeting['id']}?page=x": 404,
        f"/documents/{meeting['id']}?q=" + "x" * 501: 400,
    }
    for path, status in cases.items():
        resp = client.get(path, headers=meeting["headers"])
        assert resp.status_code == status, (path, resp.status_code)
        assert resp.headers["content-type"].startswith("text/html")
        assert "<h1" in resp.text and 'href="/"' in resp.text
    head = client.head("/documents/not-an-id")
    assert head.status_code == 404


def test_document_view_never_links_elsewhere(client: httpx.Client, meeting: dict[str, Any]) -> None:
    # "r" becomes the "Back to results" link: only a query string of the search page is accepted.
    for evil in ("javascript:alert(1)", "//evil.example/", "https://evil.example/", "?q=a\n//x"):
        html = _view(client, meeting, "?" + httpx.QueryParams({"r": evil}).__str__()).text
        back = re.search(r'id="back-link" class="back-link" href="([^"]*)"', html).group(1)  # type: ignore[union-attr]
        assert back == "/", (evil, back)
    html = _view(client, meeting, "?" + str(httpx.QueryParams({"r": '?q="><script>x</script>'}))).text
    assert "<script>x" not in html
