"""The web routes without a database: the search page, static files, vendor assets and the GraphiQL page.

A tiny Starlette app mounts ``web_routes()`` alone; the last tests check the same through the real gateway.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from graphql import parse, validate
from starlette.applications import Starlette

from gateway import web
from schema.mutations import Mutation
from schema.root import build_schema

STATIC = web.STATIC_DIR
OWN_FILES = sorted(
    p for p in STATIC.rglob("*") if p.is_file() and "node_modules" not in p.parts and p.suffix != ".json"
)


@pytest.fixture()
async def app_client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=Starlette(routes=web.web_routes()))
    async with httpx.AsyncClient(transport=transport, base_url="http://web.test") as http:
        yield http


@pytest.fixture(scope="module")
def graphql_schema() -> object:
    return build_schema(mutation=Mutation)._schema


async def test_search_page_is_served_with_a_strict_policy(app_client: httpx.AsyncClient) -> None:
    resp = await app_client.get("/")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    csp = resp.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert '<script type="module" src="/static/js/app.js"></script>' in resp.text


async def test_every_module_import_resolves(app_client: httpx.AsyncClient) -> None:
    modules = sorted((STATIC / "js").glob("*.js"))
    assert {m.name for m in modules} >= {
        "app.js",
        "api.js",
        "state.js",
        "queries.js",
        "format.js",
        "towns.js",
        "cards.js",
        "help.js",
    }
    for module in modules:
        resp = await app_client.get(f"/static/js/{module.name}")
        assert resp.status_code == 200
        # Browsers refuse to run an ES module served with a non-JavaScript type.
        assert "javascript" in resp.headers["content-type"], resp.headers["content-type"]
        assert resp.headers["cache-control"] == "no-cache"
        for target in re.findall(r"^import .*? from '(\.[^']+)';", module.read_text(), flags=re.M | re.S):
            assert (module.parent / target).is_file(), f"{module.name} imports missing {target}"


async def test_page_assets_exist(app_client: httpx.AsyncClient) -> None:
    page = (STATIC / "index.html").read_text()
    for ref in re.findall(r'(?:src|href)="(/static/[^"]+)"', page):
        assert (await app_client.get(ref)).status_code == 200, ref


def test_no_page_loads_from_another_origin() -> None:
    """Hand-written files reference no CDN or other site (the page image link to the source is text)."""
    allowed = {"https://${subdomain}.civic.band${pageImage}", "http://www.w3.org/2000/svg"}  # a namespace
    for path in OWN_FILES:
        for url in re.findall(r"(?:https?:)?//[A-Za-z0-9${][^\s'\"`)<>]*", path.read_text()):
            if url.startswith("//") and path.suffix in {".js", ".css"}:
                continue  # a comment, not a URL
            assert url in allowed, f"{path.relative_to(STATIC)} refers to {url}"


def test_search_page_operations_match_the_schema(graphql_schema: object) -> None:
    source = (STATIC / "js" / "queries.js").read_text()
    documents = re.findall(r"= `(.*?)`;", source, flags=re.S)
    assert len(documents) == 4
    for document in documents:
        assert validate(graphql_schema, parse(document)) == []  # type: ignore[arg-type]


async def test_vendor_assets_are_allow_listed(app_client: httpx.AsyncClient) -> None:
    assert (await app_client.get("/static/vendor/package.json")).status_code == 404
    assert (await app_client.get("/static/vendor/node_modules/react/package.json")).status_code == 404
    assert (await app_client.get("/static/vendor/../../web.py")).status_code == 404
    resp = await app_client.get("/static/vendor/evil.js")
    assert resp.status_code == 404 and "not a vendor asset" in resp.text


async def test_vendor_assets_are_served_when_installed(app_client: httpx.AsyncClient) -> None:
    if web.missing_vendor_assets():
        pytest.skip("GraphiQL assets not installed: run `make setup` (npm ci in gateway/static/vendor)")
    for name in web.VENDOR_ASSETS:
        resp = await app_client.get(f"/static/vendor/{name}")
        assert resp.status_code == 200, name
        expected = "text/css" if name.endswith(".css") else "javascript"
        assert expected in resp.headers["content-type"]


async def test_missing_vendor_assets_say_how_to_install(
    app_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(web, "VENDOR_DIR", tmp_path / "node_modules")
    resp = await app_client.get("/static/vendor/graphiql.min.js")
    assert resp.status_code == 404
    assert "make setup" in resp.text
    page = web.graphiql_html()
    assert "GraphiQL is not installed" in page and "make setup" in page
    assert "<script" not in page


def test_graphiql_page_loads_only_local_assets(graphql_schema: object) -> None:
    if web.missing_vendor_assets():
        pytest.skip("GraphiQL assets not installed: run `make setup` (npm ci in gateway/static/vendor)")
    page = web.graphiql_html()
    scripts = re.findall(r'<script src="([^"]+)"', page)
    styles = re.findall(r'<link rel="stylesheet" href="([^"]+)"', page)
    assert scripts == [
        "/static/vendor/react.production.min.js",
        "/static/vendor/react-dom.production.min.js",
        "/static/vendor/graphiql.min.js",
        "/static/graphiql-init.js",
    ]
    assert styles == ["/static/vendor/graphiql.min.css", "/static/graphiql.css"]
    assert "unpkg" not in page and "jsdelivr" not in page and "http" not in page.replace("http-equiv", "")
    assert 'http-equiv="Content-Security-Policy"' in page
    config = json.loads(re.search(r'id="graphiql-config">(.*?)</script>', page, flags=re.S).group(1))  # type: ignore[union-attr]
    assert config["endpoint"] == "/graphql"
    assert validate(graphql_schema, parse(config["defaultQuery"])) == []  # type: ignore[arg-type]


def test_graphiql_config_cannot_close_its_script_element(monkeypatch: pytest.MonkeyPatch) -> None:
    if web.missing_vendor_assets():
        pytest.skip("GraphiQL assets not installed: run `make setup`")
    monkeypatch.setattr(web, "DEFAULT_GRAPHIQL_QUERY", "# </script><script>alert(1)</script>\n{ __typename }")
    page = web.graphiql_html()
    assert "</script><script>alert(1)" not in page
    assert page.count("</script>") == 5  # the config element and the four scripts


# --- through the real gateway ----------------------------------------------------------------------------


def test_gateway_serves_the_search_page_and_playground(client: httpx.Client) -> None:
    home = client.get("/")
    assert home.status_code == 200 and "/static/js/app.js" in home.text
    assert client.get("/static/css/search.css").status_code == 200
    ide = client.get("/graphql", headers={"Accept": "text/html"})
    assert ide.status_code == 200
    assert ide.headers["content-type"].startswith("text/html")
    # Nothing is loaded from another origin: every script and stylesheet is a local /static path.
    assert not re.search(r'(src|href)="(https?:)?//', ide.text)
    assert ("/static/vendor/graphiql.min.js" in ide.text) or ("GraphiQL is not installed" in ide.text)
    # A client that asks for JSON still gets the API, not the page.
    api = client.get("/graphql", params={"query": "{ __typename }"}, headers={"Accept": "application/json"})
    assert api.json()["data"] == {"__typename": "Query"}


async def test_an_install_without_static_files_still_starts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(web, "STATIC_DIR", tmp_path / "static")
    transport = httpx.ASGITransport(app=Starlette(routes=web.web_routes()))
    async with httpx.AsyncClient(transport=transport, base_url="http://web.test") as http:
        assert (await http.get("/")).status_code == 404
        assert (await http.get("/static/js/app.js")).status_code == 404
