"""Per-client rate limits: 429 with Retry-After and the IETF RateLimit headers, budgets per client and kind."""

from __future__ import annotations

import time

import httpx

from gateway.ratelimit import WINDOW_S, RateLimiter
from ops import stack
from tests.conftest import WRITER_TOKEN, ServedGateway, gateway_settings
from tests.helpers import eventually


def test_reads_past_the_budget_get_429_and_every_response_says_where_it_stands(
    stack_layout: stack.StackLayout,
) -> None:
    settings = gateway_settings(
        stack_layout, rate_limit_enabled=True, rate_limit_reads_per_minute=5, rate_limit_writes_per_minute=2
    )
    with ServedGateway(settings) as gw, httpx.Client(base_url=gw.url, timeout=30) as http:
        # Budgets are per minute of the clock: start well inside a minute, so the test never straddles two.
        eventually(lambda: time.time() % WINDOW_S < WINDOW_S - 15, timeout_s=20, what="a fresh minute")
        seen = []
        for _ in range(7):
            resp = http.post("/graphql", json={"query": "{ __typename }"})
            seen.append(resp.status_code)
            assert resp.headers["ratelimit-policy"] == '"reads";q=5;w=60'
            assert resp.headers["ratelimit"].startswith('"reads";r=')
        assert seen[:5] == [200] * 5 and seen[5:] == [429, 429]
        refused = http.post("/graphql", json={"query": "{ __typename }"})
        body = refused.json()
        assert body["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        assert 1 <= int(refused.headers["retry-after"]) <= 61
        # Another client (a valid token) has a budget of its own; writes have theirs.
        writer = {"Authorization": f"Bearer {WRITER_TOKEN}"}
        assert http.post("/graphql", json={"query": "{ __typename }"}, headers=writer).status_code == 200
        # An invalid token is not a new client: it counts against the address, already over its budget.
        bogus = {"Authorization": "Bearer not-a-token"}
        assert http.post("/graphql", json={"query": "{ __typename }"}, headers=bogus).status_code == 429
        # A forwarded address from an untrusted peer is ignored.
        spoofed = {"X-Forwarded-For": "203.0.113.9"}
        r = http.post("/graphql", json={"query": "{ __typename }"}, headers=spoofed)
        assert r.status_code == 429, (r.headers, r.text)


async def test_counts_are_shared_through_redis_and_local_when_redis_is_away(
    stack_layout: stack.StackLayout,
) -> None:
    import redis.asyncio as aioredis

    if not stack_layout.redis_port:
        import pytest

        pytest.skip("redis-server not installed: apt-get install redis-server (make test installs it)")
    client = aioredis.Redis(host="127.0.0.1", port=stack_layout.redis_port, db=6)
    try:
        # Two processes' limiters over one Redis: together they stop at the budget.
        a = RateLimiter(reads_per_minute=10, writes_per_minute=1, redis=client)
        b = RateLimiter(reads_per_minute=10, writes_per_minute=1, redis=client)
        eventually(lambda: time.time() % WINDOW_S < WINDOW_S - 15, timeout_s=20, what="a fresh minute")
        name = f"a:test-{id(a)}"
        allowed = 0
        for i in range(20):
            limiter = a if i % 2 else b
            if limiter.check(name, "read").allowed:
                allowed += 1
            await a.sync()
            await b.sync()
        assert allowed == 10
        # With no Redis at all, each process limits on its own counts.
        local = RateLimiter(reads_per_minute=3, writes_per_minute=1, redis=None)
        verdicts = [local.check("a:x", "read").allowed for _ in range(5)]
        await local.sync()
        assert verdicts == [True, True, True, False, False]
    finally:
        await client.aclose()


def test_trusted_proxies_forward_the_client_address() -> None:
    limiter = RateLimiter(reads_per_minute=1, writes_per_minute=1, trusted_proxies="10.0.0.0/8")
    assert limiter.client_key(token_hash=None, peer="10.1.2.3", forwarded_for="198.51.100.7, 203.0.113.5") == (
        "a:203.0.113.5"
    )
    assert limiter.client_key(token_hash=None, peer="192.0.2.1", forwarded_for="203.0.113.5") == "a:192.0.2.1"
    assert limiter.client_key(token_hash="ab" * 32, peer="192.0.2.1", forwarded_for=None).startswith("t:")
