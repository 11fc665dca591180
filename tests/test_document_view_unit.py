"""The document view without a database: its pages when the API cannot answer, and its escaping helpers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from graphql import parse, validate
from starlette.applications import Starlette

from gateway import document_view, web
from schema import ids
from schema.mutations import Mutation
from schema.root import build_schema


@pytest.fixture()
async def app_client() -> AsyncIterator[httpx.AsyncClient]:
    """The web routes alone: no /graphql endpoint behind the document view."""
    transport = httpx.ASGITransport(app=Starlette(routes=web.web_routes()))
    async with httpx.AsyncClient(transport=transport, base_url="http://web.test") as http:
        yield http


async def test_malformed_ids_are_404_pages_without_asking_the_api(app_client: httpx.AsyncClient) -> None:
    for path in ("/documents/x", "/documents/" + ids.encode("Municipality", "1"),
                 "/documents/" + ids.encode("MeetingDocument", "abc")):
        resp = await app_client.get(path)
        assert resp.status_code == 404, path
        assert "<h1 id=\"problem-heading\">Document not found</h1>" in resp.text
        assert "script-src 'self'" in resp.headers["content-security-policy"]
        assert "<script" not in resp.text


async def test_a_document_without_the_api_is_a_503_page(app_client: httpx.AsyncClient) -> None:
    resp = await app_client.get("/documents/" + ids.encode("MeetingDocument", "1"))
    assert resp.status_code == 503
    assert "Temporarily unavailable" in resp.text


async def test_the_view_assets_exist(app_client: httpx.AsyncClient) -> None:
    for name in ("base.html", "document.html", "problem.html"):
        text = (document_view.TEMPLATES / name).read_text()
        for ref in re.findall(r'(?:src|href)="(/static/[^"]+)"', text):
            assert (await app_client.get(ref)).status_code == 200, (name, ref)
        assert "<script" not in text  # the view works without script, and its CSP allows none inline


def test_the_view_query_matches_the_schema() -> None:
    schema = build_schema(mutation=Mutation)._schema
    assert validate(schema, parse(document_view.VIEW_QUERY)) == []


def test_marked_html_lets_only_bare_mark_tags_through() -> None:
    good = "a &lt;b&gt; &amp; <mark>budget</mark> &#x27;x&#x27; &quot;y&quot;"
    assert str(document_view.marked_html(good)) == good
    assert type(document_view.marked_html(good)).__name__ == "Markup"
    for bad in ("<script>x</script>", '<mark onclick="x">a</mark>', "<mark>a</mark><img src=x>", "a & b"):
        assert isinstance(document_view.marked_html(bad), str)
        assert type(document_view.marked_html(bad)).__name__ != "Markup", bad


def test_page_image_links_only_to_http_sources() -> None:
    assert document_view.page_image_url("/_minutes/X/2024-01-02/3.png", "alameda.ca") == (
        "https://alameda.ca.civic.band/_minutes/X/2024-01-02/3.png"
    )
    assert document_view.page_image_url("https://example.org/a.png", "x") == "https://example.org/a.png"
    for bad in ("javascript:alert(1)", "//evil.example/a.png", "data:image/png;base64,AA", "", None):
        assert document_view.page_image_url(bad, "alameda.ca") is None, bad
    assert document_view.page_image_url("/a.png", "evil.example/x?") is None


def test_meeting_names_are_split_into_words() -> None:
    assert document_view.meeting_title("ZoningBoardOfAppeals") == "Zoning Board Of Appeals"
    assert document_view.meeting_title("ZBAHearing") == "ZBA Hearing"
    assert document_view.meeting_title("City Council") == "City Council"
