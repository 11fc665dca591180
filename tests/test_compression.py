"""Responses above GATEWAY_COMPRESS_MIN_BYTES are gzipped for clients that accept it; small ones are not.

A cache hit is gzipped by the gateway itself, from the deflated prefix kept with the entry: one gzip member that
strict decoders accept, the same JSON as the plain hit, its own trace id.
"""

from __future__ import annotations

import gzip
import json
import uuid
import zlib
from collections.abc import Iterator

import httpx
import pytest

from gateway.compression import accepts_gzip, deflate_prefix, gzip_body
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


# --- cache hits: gzipped from the deflated prefix stored with the entry ---------------------------------------

CACHED_SEARCH = """{ search(query: "council", first: 20) { edges { cursor headline node { sourceId pageNumber
    document { meetingName meetingDate } } } } }"""


def _unique(query: str) -> str:
    """The same query under a text no other test sends: its first request is a miss, the next ones hits."""
    return f"{query} # {uuid.uuid4().hex}"


def _strict_gunzip(wire: bytes) -> bytes:
    """Decode exactly one gzip member and insist that it ends the body: nothing after it, nothing missing."""
    decoder = zlib.decompressobj(wbits=31)
    body = decoder.decompress(wire) + decoder.flush()
    assert decoder.eof, "the gzip stream does not end"
    assert decoder.unused_data == b"", "bytes after the gzip member"
    return body


def _post_with(client: httpx.Client, body: dict[str, object], accept_encoding: str | None) -> tuple[httpx.Response, bytes]:
    request = client.build_request("POST", "/graphql", json=body)
    if accept_encoding is None:
        del request.headers["accept-encoding"]  # httpx sends one unless told not to
    else:
        request.headers["accept-encoding"] = accept_encoding
    resp = client.send(request, stream=True)
    try:
        return resp, _wire(resp)
    finally:
        resp.close()


def test_a_cache_hit_is_one_gzip_member_of_the_same_json(raw: httpx.Client) -> None:
    body = {"query": _unique(CACHED_SEARCH)}
    miss, miss_wire = _post_raw(raw, body)
    first, first_wire = _post_raw(raw, body)
    second, second_wire = _post_raw(raw, body)
    plain, plain_wire = _post_with(raw, body, "identity")
    for resp, wire in ((miss, miss_wire), (first, first_wire), (second, second_wire)):
        assert resp.status_code == 200
        assert resp.headers["content-encoding"] == "gzip"
        assert "accept-encoding" in resp.headers["vary"].lower()
        assert int(resp.headers["content-length"]) == len(wire)
        assert wire[9] == 0xFF, "not the gateway's own gzip header: compressed by the middleware instead"
    hits = [_strict_gunzip(first_wire), _strict_gunzip(second_wire)]
    assert [gzip.decompress(w) for w in (first_wire, second_wire)] == hits
    decoded = [json.loads(h) for h in hits]
    reference = json.loads(plain_wire)
    assert "content-encoding" not in plain.headers and plain_wire.startswith(b'{"data":')
    assert json.loads(_strict_gunzip(miss_wire))["extensions"]["statements"] >= 1
    for hit, wire in zip(decoded, (first_wire, second_wire), strict=True):
        assert hit["extensions"]["statements"] == 0 and hit["extensions"]["cache"] == "hit"
        assert hit["data"] == reference["data"] and len(hit["data"]["search"]["edges"]) == 20
        # The per-request suffix rides in a stored block: its bytes are on the wire as they are.
        assert hit["extensions"]["traceId"].encode() in wire
        assert len(wire) < len(plain_wire) / 2, (len(wire), len(plain_wire))
    assert reference["extensions"]["cache"] == "hit"
    trace_ids = {decoded[0]["extensions"]["traceId"], decoded[1]["extensions"]["traceId"],
                 reference["extensions"]["traceId"]}
    assert len(trace_ids) == 3, "each hit carries its own trace id"


@pytest.mark.parametrize(
    ("accept_encoding", "gzipped"),
    [(None, False), ("identity", False), ("gzip;q=0", False), ("br, gzip; q=0.0", False), ("*", False),
     ("deflate, gzip;q=0.5", True), ("GZIP", True), ("x-gzip", True)],
)
def test_who_gets_gzip_is_decided_alike_for_hits_and_everything_else(
    raw: httpx.Client, accept_encoding: str | None, gzipped: bool
) -> None:
    hit = {"query": _unique(CACHED_SEARCH)}
    _post_raw(raw, hit)  # the miss that fills the cache
    uncached = {"query": "{ __schema { types { name fields { name } } } }"}  # introspection: never cached
    for body in (hit, uncached):
        resp, wire = _post_with(raw, body, accept_encoding)
        assert resp.status_code == 200
        assert int(resp.headers["content-length"]) == len(wire)
        assert "accept-encoding" in resp.headers["vary"].lower()
        if gzipped:
            assert resp.headers["content-encoding"] == "gzip"
            plain = _strict_gunzip(wire)
        else:
            assert "content-encoding" not in resp.headers
            plain = wire
        payload = json.loads(plain)
        assert len(plain) >= 1400 and "errors" not in payload and payload["data"]
    assert json.loads(_strict_gunzip(_post_raw(raw, hit)[1]))["extensions"]["cache"] == "hit"


def test_a_small_cache_hit_is_sent_as_it_is(raw: httpx.Client) -> None:
    body = {"query": _unique('{ search(query: "council", first: 1) { edges { node { sourceId } } } }')}
    _post_raw(raw, body)
    resp, wire = _post_raw(raw, body)
    assert "content-encoding" not in resp.headers
    assert json.loads(wire)["extensions"]["cache"] == "hit" and len(wire) < 1400


# --- the gzip member itself, without a server ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "suffix"),
    [(b'{"data":' + b'{"a":"council"}' * 500, b',"extensions":{"traceId":"abc"}}'), (b"", b"x"), (b"x", b""),
     (b"p" * 10, bytes(range(256)) * 300)],  # a suffix over one stored block's 65,535 bytes
)
def test_gzip_body_is_a_single_valid_member(prefix: bytes, suffix: bytes) -> None:
    wire = gzip_body(deflate_prefix(prefix), suffix)
    assert _strict_gunzip(wire) == prefix + suffix == gzip.decompress(wire)
    assert int.from_bytes(wire[-4:], "little") == len(prefix + suffix)
    assert int.from_bytes(wire[-8:-4], "little") == zlib.crc32(prefix + suffix)


def test_accept_encoding_is_read_by_its_weights() -> None:
    assert accepts_gzip("gzip") and accepts_gzip("br;q=1, gzip;q=0.1") and accepts_gzip(" Gzip ")
    assert not accepts_gzip(None) and not accepts_gzip("") and not accepts_gzip("identity")
    assert not accepts_gzip("gzip;q=0") and not accepts_gzip("gzip;q=0.000") and not accepts_gzip("gzip;q=x")
    assert not accepts_gzip("deflate, br")
