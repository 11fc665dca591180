"""Responses above GATEWAY_COMPRESS_MIN_BYTES are gzipped for clients that accept it; small ones are not."""

from __future__ import annotations

import gzip
from collections.abc import Iterator

import httpx
import pytest

from gateway.web import missing_vendor_assets
from ops import stack
from tests.conftest import ServedGateway, gateway_settings

BIG_SEARCH = """{ search(query: "council", first: 50) { edges { cursor headline node { sourceId text
    document { meetingName meetingDate } } } } }"""


@pytest.fixture(scope="module")
def raw(gateway: ServedGateway) -> Iterator[httpx.Client]:
    """A client that does not decode: the test sees the bytes on the wire and their Content-Encoding."""
    with httpx.Client(base_url=gateway.url, timeout=30, headers={"accept-encoding": "gzip"}) as client:
        yield client


def _wire(resp: httpx.Response) -> bytes:
    """The body as sent (httpx decodes gzip by default; read the raw stream instead)."""
    return b"".join(resp.iter_raw())


def _get_raw(client: httpx.Client, path: str, **kwargs: object) -> tuple[httpx.Response, bytes]:
    with client.stream("GET", path, **kwargs) as resp:  # type: ignore[arg-type]
        return resp, _wire(resp)


def _post_raw(client: httpx.Client, body: dict[str, object]) -> tuple[httpx.Response, bytes]:
    with client.stream("POST", "/graphql", json=body) as resp:
        return resp, _wire(resp)


def test_big_json_response_is_gzipped(raw: httpx.Client) -> None:
    resp, wire = _post_raw(raw, {"query": BIG_SEARCH})
    assert resp.status_code == 200
    assert resp.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in resp.headers["vary"].lower()
    body = gzip.decompress(wire)
    assert b'"edges"' in body and len(body) > 5000
    assert len(wire) < len(body) / 2, (len(wire), len(body))


def test_small_response_is_not_compressed(raw: httpx.Client) -> None:
    resp, wire = _post_raw(raw, {"query": "{ __typename }"})
    assert resp.status_code == 200
    assert "content-encoding" not in resp.headers
    assert wire.startswith(b"{") and len(wire) < 1400


def test_no_compression_without_accept_encoding(gateway: ServedGateway) -> None:
    with httpx.Client(base_url=gateway.url, timeout=30, headers={"accept-encoding": "identity"}) as client:
        resp, wire = _post_raw(client, {"query": BIG_SEARCH})
    assert "content-encoding" not in resp.headers
    assert wire.startswith(b"{")


def test_graphiql_page_and_its_assets_come_compressed(raw: httpx.Client) -> None:
    resp, wire = _get_raw(raw, "/graphql", headers={"accept": "text/html"})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    assert resp.headers["content-encoding"] == "gzip"
    assert b"graphiql-config" in gzip.decompress(wire)  # the page itself is about 2 kB
    if missing_vendor_assets():
        pytest.skip("GraphiQL's assets are not installed (make setup runs npm ci in gateway/static/vendor)")
    resp, wire = _get_raw(raw, "/static/vendor/graphiql.min.js")
    assert resp.status_code == 200
    assert resp.headers["content-encoding"] == "gzip"
    script = gzip.decompress(wire)
    # The bundle that made the page weigh about a megabyte goes out at a fraction of it.
    assert len(script) > 300_000 and len(wire) < len(script) / 2.5, (len(wire), len(script))


def test_threshold_is_a_setting(stack_layout: stack.StackLayout) -> None:
    """With GATEWAY_COMPRESS_MIN_BYTES=0 nothing is compressed; with a tiny threshold even { __typename } is."""
    for threshold, small_compressed in ((0, False), (20, True)):
        settings = gateway_settings(stack_layout, compress_min_bytes=threshold)
        with ServedGateway(settings) as gw, httpx.Client(
            base_url=gw.url, timeout=30, headers={"accept-encoding": "gzip"}
        ) as client:
            small, _ = _post_raw(client, {"query": "{ __typename }"})
            big, _ = _post_raw(client, {"query": BIG_SEARCH})
        assert ("content-encoding" in small.headers) is small_compressed, threshold
        assert ("content-encoding" in big.headers) is (threshold > 0), threshold
