"""Automatic persisted queries: kept in PostgreSQL, shared by gateways, bounded per client and in all.

Every test runs real gateways against the session stack (primary, replicas, PgBouncer, Redis). A client is told
apart by the address a trusted proxy forwards, so each test has clients of its own.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
import redis

from tests.conftest import ServedGateway, gateway_settings
from tests.helpers import eventually

pytestmark = pytest.mark.stack


def _apq(query: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": hashlib.sha256(query.encode()).hexdigest()}}


def _stored(admin_dsn: str, query: str) -> bool:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT body FROM public.persisted_query WHERE sha256 = %s", (hashlib.sha256(query.encode()).hexdigest(),)
        ).fetchone()
    return row is not None and row[0] == query


def _registrations(gw: ServedGateway, outcome: str) -> float:
    text = httpx.get(f"{gw.metrics_url}/metrics", timeout=30).text
    for line in text.splitlines():
        if line.startswith(f'civic_apq_registrations_total{{outcome="{outcome}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture()
def client_address() -> str:
    """A client address of this test alone (a documentation prefix, forwarded by the 'proxy' on loopback)."""
    n = uuid.uuid4().int
    return f"2001:db8::{n % 65536:x}:{(n >> 16) % 65536:x}"


@pytest.fixture()
def served(stack_layout: Any) -> Iterator[ServedGateway]:
    settings = gateway_settings(stack_layout, trusted_proxies="127.0.0.1", apq_per_client=3)
    with ServedGateway(settings) as gw:
        yield gw


def test_a_registered_document_is_found_by_another_gateway(
    served: ServedGateway, stack_layout: Any, admin_dsn: str, client_address: str
) -> None:
    query = '{ search(query: "hearing", first: 2) { edges { node { sourceId } } } } # ' + client_address
    ext = _apq(query)
    headers = {"X-Forwarded-For": client_address}
    with httpx.Client(base_url=served.url, timeout=30, headers=headers) as http:
        miss = http.post("/graphql", json={"extensions": ext}).json()
        assert miss["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
        full = http.post("/graphql", json={"query": query, "extensions": ext}).json()
        assert len(full["data"]["search"]["edges"]) == 2
        eventually(lambda: _stored(admin_dsn, query), what="the document registered in PostgreSQL")
    # A second gateway (another worker or instance) has never parsed it: it reads it back from the database.
    other = gateway_settings(stack_layout, trusted_proxies="127.0.0.1")
    with ServedGateway(other) as gw, httpx.Client(base_url=gw.url, timeout=30, headers=headers) as http:
        hit = eventually(
            lambda: (r := http.post("/graphql", json={"extensions": ext}).json()).get("data") and r,
            what="a replica to have the registration",
        )
        assert hit["data"] == full["data"]
        via_get = http.get("/graphql", params={"extensions": json.dumps(ext)}).json()
        assert via_get["data"] == full["data"]
        wrong = http.post("/graphql", json={"query": "{ __typename }", "extensions": ext})
        assert wrong.status_code == 400


def test_each_client_keeps_at_most_its_quota(served: ServedGateway, admin_dsn: str, client_address: str) -> None:
    queries = [f"query Q{i} {{ __typename }} # {client_address}" for i in range(5)]
    with httpx.Client(base_url=served.url, timeout=30, headers={"X-Forwarded-For": client_address}) as http:
        before = _registrations(served, "over_quota")
        for query in queries:
            # Every request runs, registered or not: the quota limits what is kept, never what is answered.
            body = http.post("/graphql", json={"query": query, "extensions": _apq(query)}).json()
            assert body["data"] == {"__typename": "Query"}
            # One at a time, so the quota's order is the order sent.
            eventually(
                lambda q=query: _stored(admin_dsn, q) or _registrations(served, "over_quota") > before,
                what="the registration to finish",
            )
        assert [_stored(admin_dsn, q) for q in queries] == [True, True, True, False, False]
        assert _registrations(served, "over_quota") - before == 2
    # Another client still has its whole quota.
    other = client_address + "1"
    query = f"query Other {{ __typename }} # {other}"
    with httpx.Client(base_url=served.url, timeout=30, headers={"X-Forwarded-For": other}) as http:
        http.post("/graphql", json={"query": query, "extensions": _apq(query)})
        eventually(lambda: _stored(admin_dsn, query), what="another client's registration")


def test_registrations_stop_at_the_global_bound(stack_layout: Any, admin_dsn: str, client_address: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        row = conn.execute("SELECT bytes FROM public.persisted_query_usage").fetchone()
    assert row is not None
    used = int(row[0])
    settings = gateway_settings(stack_layout, trusted_proxies="127.0.0.1", apq_max_total_bytes=used + 100)
    small = f"query S {{ __typename }} # {client_address}"  # fits in the 100 bytes left
    big = "query B { __typename } # " + "x" * 200 + client_address
    with ServedGateway(settings) as gw, \
            httpx.Client(base_url=gw.url, timeout=30, headers={"X-Forwarded-For": client_address}) as http:
        assert http.post("/graphql", json={"query": big, "extensions": _apq(big)}).json()["data"]
        eventually(lambda: _registrations(gw, "full") >= 1, what="the big document refused")
        http.post("/graphql", json={"query": small, "extensions": _apq(small)})
        eventually(lambda: _stored(admin_dsn, small), what="the small document kept")
    assert not _stored(admin_dsn, big)


def test_registrations_never_touch_the_result_cache(
    served: ServedGateway, stack_layout: Any, client_address: str
) -> None:
    url = stack_layout.gateway_env().get("GATEWAY_REDIS_URL")
    if not url:
        pytest.skip("Redis is not installed: apt-get install redis-server (make setup does)")
    store = redis.Redis.from_url(url)
    # Documents that read no data are never cached as responses either: any new Redis key would be the APQ's.
    queries = [f"query N{i} {{ __typename }} # {client_address}" for i in range(3)]
    keys_before = {bytes(k) for k in store.scan_iter(count=1000)}
    with httpx.Client(base_url=served.url, timeout=30, headers={"X-Forwarded-For": client_address}) as http:
        before = _registrations(served, "stored")
        for query in queries:
            http.post("/graphql", json={"query": query, "extensions": _apq(query)})
        eventually(lambda: _registrations(served, "stored") - before >= 3, what="three registrations")
    new_keys = {bytes(k) for k in store.scan_iter(count=1000)} - keys_before
    assert not [k for k in new_keys if b"apq" in k or b"rl:" not in k], new_keys


def test_prune_makes_room_and_recounts_the_usage(
    served: ServedGateway, stack_layout: Any, admin_dsn: str, client_address: str
) -> None:
    import datetime as dt
    import io
    import os
    import subprocess
    import sys

    from ops.maintenance import persisted

    query = f"query P {{ __typename }} # {client_address}"
    with httpx.Client(base_url=served.url, timeout=30, headers={"X-Forwarded-For": client_address}) as http:
        http.post("/graphql", json={"query": query, "extensions": _apq(query)})
        eventually(lambda: _stored(admin_dsn, query), what="the registration")
    env = {**os.environ, **stack_layout.gateway_env()}
    shown = subprocess.run(
        [sys.executable, "-m", "ops", "apq", "show"], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert "persisted queries:" in shown.stdout and " 0 documents" not in shown.stdout
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        # Documents registered from now on are kept: only older ones go.
        deleted = persisted.prune(conn, before=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1), out=io.StringIO())
        assert deleted >= 1
        usage = conn.execute("SELECT bytes, entries FROM public.persisted_query_usage").fetchone()
    assert usage == (0, 0)
    assert not _stored(admin_dsn, query)
