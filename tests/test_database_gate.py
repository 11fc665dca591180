"""The database gate (gateway.concurrency): a bound learned from latency, and what the endpoint does with it."""

from __future__ import annotations

import httpx
import pytest

from gateway.concurrency import WINDOW_SAMPLES, DatabaseGate
from ops import stack
from tests.conftest import ServedGateway, gateway_settings


class Clock:
    """A clock the test moves by hand, so each sample's latency is exactly what the test says."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _window(gate: DatabaseGate, clock: Clock, *, latency_s: float, concurrency: int | None = None) -> None:
    """One window of samples: ``concurrency`` requests at a time (None: every slot), each taking ``latency_s``."""
    done = 0
    while done < WINDOW_SAMPLES:
        tickets = [gate.enter() for _ in range(concurrency or gate.bound)]
        assert all(t is not None for t in tickets)
        clock.now += latency_s
        for ticket in tickets:
            gate.leave(ticket)
        done += len(tickets)
    clock.now += 0.05  # each window lasts at least WINDOW_MIN_S


def test_past_the_bound_a_request_is_refused_at_once_and_counted() -> None:
    gate = DatabaseGate(initial=3, min_limit=2)
    tickets = [gate.enter() for _ in range(3)]
    assert all(t is not None for t in tickets)
    assert gate.enter() is None and gate.refused == 1
    gate.leave(tickets[0])
    assert gate.enter() is not None


def test_flat_latency_under_load_lets_the_bound_grow() -> None:
    clock = Clock()
    gate = DatabaseGate(initial=8, max_limit=64, clock=clock)
    for _ in range(30):
        _window(gate, clock, latency_s=0.02)
    assert gate.bound > 16


def test_latency_that_grows_past_the_tolerance_shrinks_the_bound() -> None:
    clock = Clock()
    seen: list[int] = []
    gate = DatabaseGate(initial=32, max_limit=64, tolerance=2.0, clock=clock, on_update=seen.append)
    for _ in range(20):
        _window(gate, clock, latency_s=0.02, concurrency=16)  # the no-crowd latency is learned
    before = gate.bound
    for _ in range(15):
        # Ten times slower with every slot taken: the servers are queueing.
        _window(gate, clock, latency_s=0.2)
    assert gate.bound < before / 2
    assert gate.bound >= gate.min_limit
    assert seen and seen[-1] == gate.bound  # every update is reported (the metric follows it)


def test_a_bound_is_not_learned_while_the_workload_uses_few_slots() -> None:
    clock = Clock()
    gate = DatabaseGate(initial=32, clock=clock)
    for _ in range(30):
        _window(gate, clock, latency_s=0.02, concurrency=2)  # fewer than half the slots in use
    assert gate.bound == 32


def test_the_bound_stays_within_its_limits() -> None:
    clock = Clock()
    gate = DatabaseGate(initial=6, min_limit=5, max_limit=10, clock=clock)
    for _ in range(50):
        _window(gate, clock, latency_s=0.01)
    assert gate.bound == 10
    for _ in range(50):
        _window(gate, clock, latency_s=5.0)
    assert gate.bound == 5


def test_a_disabled_gate_admits_everything() -> None:
    gate = DatabaseGate(initial=2, enabled=False)
    assert all(gate.enter() is not None for _ in range(100))


SEARCH = "query Gate($q: String!) { search(query: $q, first: 3) { edges { node { id } } } }"


def _post(client: httpx.Client, url: str, q: str) -> httpx.Response:
    return client.post(f"{url}/graphql", json={"query": SEARCH, "variables": {"q": q}})


@pytest.mark.stack
def test_a_full_gate_refuses_database_queries_but_serves_cache_hits_and_writes_count(
    stack_layout: stack.StackLayout,
) -> None:
    settings = gateway_settings(stack_layout, database_gate=True, response_cache=True)
    with ServedGateway(settings) as served, httpx.Client(timeout=30) as client:
        gate: DatabaseGate = served.app.state.gate
        warm = _post(client, served.url, "budget")
        assert warm.status_code == 200 and warm.json()["data"]["search"]["edges"]
        gate.in_flight = gate.bound  # every slot taken, as by a crowd of slow searches
        try:
            refused = _post(client, served.url, "zoning")  # not cached: it would go to the databases
            assert refused.status_code == 503
            error = refused.json()["errors"][0]
            assert error["extensions"]["code"] == "OVERLOADED"
            assert "databases" in error["message"]
            assert int(refused.headers["Retry-After"]) >= 1
            hit = _post(client, served.url, "budget")  # the cached answer needs no database
            assert hit.status_code == 200 and hit.json()["extensions"]["cache"] == "hit"
        finally:
            gate.in_flight = 0
        assert _post(client, served.url, "zoning").status_code == 200
        metrics = client.get(f"{served.metrics_url}/metrics").text
        assert 'civic_requests_overloaded_total{reason="databases",stage="endpoint"} 1.0' in metrics
        assert "civic_database_gate_limit" in metrics


def test_slow_servers_are_noticed_within_a_second_even_with_few_samples() -> None:
    clock = Clock()
    gate = DatabaseGate(initial=8, clock=clock)
    for _ in range(10):
        _window(gate, clock, latency_s=0.05, concurrency=8)  # the no-crowd latency
    before = gate.bound
    # Queries now take 0.6 s each: far fewer than a window's worth of samples arrive in a second.
    for _ in range(3):
        tickets = [gate.enter() for _ in range(gate.bound)]
        clock.now += 0.6
        for ticket in tickets:
            gate.leave(ticket)
    assert gate.bound < before
