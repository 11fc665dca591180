"""Several workers: one view of the metrics, the once-per-host jobs in one worker, shared cursors."""

from __future__ import annotations

import re

import httpx

from ops import stack
from ops.bench.serving_cpu import served_gateway
from tests.helpers import eventually

QUERY = 'query Tally { search(query: "council", first: 2) { edges { cursor node { sourceId } } } }'


def _value(text: str, pattern: str) -> float:
    found = re.search(pattern + r" ([0-9.e+]+)", text)
    return float(found.group(1)) if found else 0.0


def test_two_workers_share_metrics_jobs_and_cursors(stack_layout: stack.StackLayout) -> None:
    env = {**stack_layout.gateway_env(), "GATEWAY_ROUTING_METADATA": "false", "GATEWAY_PGSS_INTERVAL_S": "0.5"}
    env.pop("GATEWAY_CURSOR_SECRET", None)  # the supervisor must hand one secret to every worker
    with served_gateway(env, workers=2) as served:
        # A fresh connection per request: uvicorn's workers share the socket, so requests spread over both.
        cursors = []
        for _ in range(40):
            body = httpx.post(f"{served.url}/graphql", json={"query": QUERY}).json()
            assert "errors" not in body, body
            cursors.append(body["data"]["search"]["edges"][-1]["cursor"])
        # Every scrape, whichever worker answers it, counts the requests of both.
        for _ in range(6):
            text = httpx.get(f"{served.metrics_url}/metrics").text
            assert _value(text, r'civic_graphql_requests_total\{operation="Tally",outcome="ok"\}') == 40
        # The pg_stat_statements collector runs in exactly one worker.
        eventually(
            lambda: _value(httpx.get(f"{served.metrics_url}/metrics").text, r"civic_singleton_jobs_running") == 1,
            timeout_s=20, what="one worker runs the once-per-host jobs",
        )
        # A cursor made by one worker is accepted by the other.
        page = '{ search(query: "council", first: 2, after: "%s") { edges { node { sourceId } } } }'
        for cursor in cursors[:6]:
            body = httpx.post(f"{served.url}/graphql", json={"query": page % cursor}).json()
            assert "errors" not in body, body
