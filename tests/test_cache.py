"""The search cache: hits, invalidation by writes and tokens, single flight, JSON only, Redis down or slow."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import time
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
import redis

from gateway.cache import ResultCache
from ops import stack
from tests.conftest import WRITER_TOKEN, ServedGateway, gateway_settings, gql

WRITER = {"Authorization": f"Bearer {WRITER_TOKEN}"}
SEARCH = '{ search(query: "%s", first: 5) { edges { node { sourceId } } pageInfo { endCursor } } }'


def test_second_identical_search_is_served_from_the_cache(client: httpx.Client) -> None:
    word = "council"
    q = SEARCH % word
    first = gql(client, q + " ")  # a unique text, so the first call cannot be a hit of another test
    again = gql(client, q + " ")
    assert first["data"] == again["data"]
    assert again["extensions"]["statements"] == 0


def test_only_the_first_three_pages_are_cached(client: httpx.Client) -> None:
    query = """query($a: String) { search(query: "council zoning", first: 3, after: $a) {
        edges { node { sourceId } } pageInfo { endCursor } } }"""
    after = None
    statements = []
    for _ in range(5):
        gql(client, query, {"a": after})
        body = gql(client, query, {"a": after})  # the repeat is a hit only when the page is cacheable
        statements.append(body["extensions"]["statements"])
        after = body["data"]["search"]["pageInfo"]["endCursor"]
    assert statements == [0, 0, 0, 1, 1]


@pytest.fixture()
def paused_replicas(stack_layout: stack.StackLayout) -> Iterator[None]:
    replicas = stack_layout.node_names[1:]
    # Patroni resumes paused replay within a loop unless the cluster is in maintenance mode.
    with stack.maintenance(stack_layout):
        try:
            for name in replicas:
                with psycopg.connect(stack_layout.direct_dsn(name), autocommit=True) as conn:
                    conn.execute("SELECT pg_wal_replay_pause()")
            yield
        finally:
            for name in replicas:
                with psycopg.connect(stack_layout.direct_dsn(name), autocommit=True) as conn:
                    conn.execute("SELECT pg_wal_replay_resume()")


def test_no_cached_result_older_than_a_write_reaches_the_token_holder(
    client: httpx.Client, paused_replicas: None
) -> None:
    word = f"kiwi{uuid.uuid4().hex[:8]}"
    stale_ok = {"X-Max-Staleness-Ms": "3600000"}  # replay is paused: let plain reads use the replicas anyway
    q = SEARCH % word
    assert gql(client, q, headers=stale_ok)["data"]["search"]["edges"] == []  # cached: nothing
    town = gql(client, """mutation { upsertMunicipality(input: {subdomain: "cachetown.ca", name: "Cachetown",
        state: "CA"}) { consistencyToken } }""", headers=WRITER)
    assert "errors" not in town, town
    body = gql(client, """mutation($w: String!) { upsertDocument(input: {municipality: "cachetown.ca",
        meetingName: "CityCouncil", meetingDate: "2024-06-01", documentType: AGENDA,
        pages: [{sourceId: $w, pageNumber: 1, text: $w}]}) { consistencyToken } }""", {"w": word}, WRITER)
    token = body["data"]["upsertDocument"]["consistencyToken"]
    # A reader without the token after the write re-fills the cache from a paused (stale) replica...
    plain = gql(client, q, headers=stale_ok)
    assert plain["data"]["search"]["edges"] == []
    assert plain["extensions"]["routing"][0]["role"] == "replica"
    # ...and that entry must not be served to the writer, who carries the token.
    mine = gql(client, q, headers={**stale_ok, "X-Consistency-Token": token})
    assert [e["node"]["sourceId"] for e in mine["data"]["search"]["edges"]] == [word]
    assert mine["extensions"]["routing"][0]["role"] == "primary"


async def test_concurrent_identical_misses_run_one_query() -> None:
    cache = ResultCache(ttl_s=60)
    calls = 0

    async def compute() -> tuple[Any, int | None]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.1)
        return {"rows": [1, 2]}, 10

    results = await asyncio.gather(*(cache.get_or_compute(["k"], min_lsn=None, compute=compute) for _ in range(10)))
    assert calls == 1 and all(r == {"rows": [1, 2]} for r in results)
    assert cache.stats.shared_flights == 9
    await cache.close()


def test_values_in_redis_are_json_never_pickle(stack_layout: stack.StackLayout, client: httpx.Client) -> None:
    if not stack_layout.redis_port:
        pytest.skip("redis-server not installed: apt-get install redis-server")
    gql(client, SEARCH % "budget")  # a whole response, cached as such
    # A deep page is not cached whole, but its rows are (the row cache under the response cache).
    with ServedGateway(gateway_settings(stack_layout, response_cache=False)) as gw, \
            httpx.Client(base_url=gw.url, timeout=30) as http:
        gql(http, SEARCH % "budget")
    r = redis.Redis(host="127.0.0.1", port=stack_layout.redis_port)
    try:
        for pattern, fields in (("civic:s:*", {"lsn", "value"}), ("civic:r:*", {"gen", "lsn", "at", "op", "searches", "data"})):
            keys = [k for k in r.scan_iter(pattern)]
            assert keys, pattern
            for key in keys[:20]:
                value = r.get(key)
                assert value is not None and not value.startswith(b"\x80")  # pickle's protocol marker
                entry = json.loads(value)
                assert set(entry) == fields
    finally:
        r.close()


def test_a_gzipped_hit_reuses_its_entrys_deflated_prefix_in_every_process(
    stack_layout: stack.StackLayout, gateway: ServedGateway
) -> None:
    """The process that stored an entry keeps its body prefix deflated; another process (sharing the store)
    deflates it on its first gzipped hit and keeps it. What is kept is exactly ``{"data":`` and the data,
    open-ended (sync flush), with its CRC-32 and length: what a gzipped hit splices its own extensions onto."""
    query = f'{{ search(query: "council", first: 20) {{ edges {{ headline cursor }} }} }} # {uuid.uuid4().hex}'
    with httpx.Client(base_url=gateway.url, timeout=30, headers={"accept-encoding": "gzip"}) as http:
        miss = http.post("/graphql", json={"query": query})
        assert miss.headers["content-encoding"] == "gzip" and miss.json()["extensions"]["statements"] >= 1
        plain = http.post("/graphql", json={"query": query}, headers={"accept-encoding": "identity"}).content
    prefix = plain[: plain.rindex(b',"extensions":')]
    assert prefix.startswith(b'{"data":') and len(prefix) > 1400

    def kept(served: ServedGateway) -> list[Any]:
        responses = served.app.state.responses
        return [d for d in responses._deflated.values() if d.size == len(prefix) and d.crc == zlib.crc32(prefix)]

    assert len(kept(gateway)) == 1, "the storing process did not keep the prefix it deflated"
    deflated = kept(gateway)[0]
    assert deflated.deflate.endswith(b"\x00\x00\xff\xff")  # a sync flush: byte-aligned, no final block yet
    inflater = zlib.decompressobj(wbits=-15)
    assert inflater.decompress(deflated.deflate) == prefix and not inflater.eof

    with ServedGateway(gateway_settings(stack_layout)) as other, \
            httpx.Client(base_url=other.url, timeout=30, headers={"accept-encoding": "gzip"}) as http:
        assert kept(other) == []
        for _ in range(2):
            with http.stream("POST", "/graphql", json={"query": query}) as resp:
                wire = b"".join(resp.iter_raw())
            assert resp.headers["content-encoding"] == "gzip" and wire[9] == 0xFF  # the gateway's own gzip
            body = json.loads(zlib.decompress(wire, wbits=31))
            assert body["extensions"]["cache"] == "hit" and body["data"] == json.loads(prefix + b"}")["data"]
        assert kept(other) == [deflated], "the other process did not keep the prefix it deflated on its first hit"


def _silent_server() -> tuple[socket.socket, int]:
    """A TCP server that accepts connections and never answers: a Redis that hangs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    return server, int(server.getsockname()[1])


@pytest.mark.parametrize("kind", ["down", "hanging"])
async def test_redis_down_or_slow_is_bypassed_quickly(kind: str) -> None:
    if kind == "down":
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
        probe.close()  # nothing listens there now
        server = None
    else:
        server, port = _silent_server()
    cache = ResultCache(redis_url=f"redis://127.0.0.1:{port}/0", ttl_s=60, timeout_s=0.05)
    try:

        async def compute() -> tuple[Any, int | None]:
            return "fresh", None

        started = time.monotonic()
        for _ in range(5):
            assert await cache.get_or_compute(["x"], min_lsn=None, compute=compute) == "fresh"
        elapsed = time.monotonic() - started
        assert cache.stats.bypassed >= 5
        assert elapsed < 2.0, f"bypassing a {kind} Redis took {elapsed:.2f} s for 5 requests"
        await cache.bump()  # a write with Redis down must not fail either
    finally:
        await cache.close()
        if server is not None:
            server.close()


def test_gateway_serves_searches_with_redis_down(stack_layout: stack.StackLayout) -> None:

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = int(probe.getsockname()[1])
    probe.close()
    with ServedGateway(gateway_settings(stack_layout, redis_url=f"redis://127.0.0.1:{port}/0")) as gw, \
            httpx.Client(base_url=gw.url, timeout=30) as http:
        body = gql(http, SEARCH % "council")
        assert "errors" not in body and len(body["data"]["search"]["edges"]) == 5


def test_automatic_persisted_queries(client: httpx.Client) -> None:
    query = '{ search(query: "hearing", first: 2) { edges { node { sourceId } } } }'
    digest = hashlib.sha256(query.encode()).hexdigest()
    ext = {"persistedQuery": {"version": 1, "sha256Hash": digest}}
    miss = client.post("/graphql", json={"extensions": ext}).json()
    assert miss["errors"][0]["message"] == "PersistedQueryNotFound"
    full = client.post("/graphql", json={"query": query, "extensions": ext}).json()
    assert len(full["data"]["search"]["edges"]) == 2
    hit = client.post("/graphql", json={"extensions": ext}).json()
    assert hit["data"] == full["data"]
    via_get = client.get("/graphql", params={"extensions": json.dumps(ext)}).json()
    assert via_get["data"] == full["data"]
    wrong = client.post("/graphql", json={"query": "{ __typename }", "extensions": ext})
    assert wrong.status_code == 400




def test_a_cached_page_serves_its_headlines_documents_and_towns_too(client: httpx.Client) -> None:
    query = """{ search(query: "sewer   ", first: 10) { edges { headline node { sourceId
        document { meetingName municipality { name state } } } } } }"""
    first = gql(client, query)
    again = gql(client, query)
    # Headlines, documents and towns come with the search rows, in its one statement.
    assert first["extensions"]["statements"] == 1
    assert again["data"] == first["data"] and again["extensions"]["statements"] == 0
