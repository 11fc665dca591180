"""Popular searches: a sampled log, a view refreshed CONCURRENTLY by the CLI, and Query.popularSearches."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import httpx
import psycopg

from ops import stack
from tests.conftest import ServedGateway, gateway_settings, gql
from tests.helpers import eventually


def test_sampled_searches_become_popular_searches(
    stack_layout: stack.StackLayout, admin_conn: psycopg.Connection[Any]
) -> None:
    settings = gateway_settings(stack_layout, search_log_sample=1.0)
    with ServedGateway(settings) as gw, httpx.Client(base_url=gw.url, timeout=30) as http:
        for _ in range(3):
            gql(http, '{ search(query: "Rezoning   MAIN street") { edges { cursor } } }')
        gql(http, '{ search(query: "budget hearing") { edges { cursor } } }')

        def logged() -> tuple[object, ...] | None:
            # Wait for both queries: the log is flushed in batches, which may split them.
            row = admin_conn.execute(
                "SELECT count(*) FILTER (WHERE query = 'rezoning main street'),"
                " count(*) FILTER (WHERE query = 'budget hearing') FROM search_log"
            ).fetchone()
            return row if row and int(str(row[0])) >= 3 and int(str(row[1])) >= 1 else None

        assert eventually(logged, timeout_s=15, interval_s=0.3, what="both searches logged") == (3, 1)
        env = {**os.environ, **stack_layout.gateway_env()}
        out = subprocess.run(
            [sys.executable, "-m", "ops", "stats", "refresh"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert "popular_search refreshed" in out.stdout
        body = gql(
            http,
            "{ popularSearches(first: 50) { query searches lastSearched } }",
            headers={"X-Max-Staleness-Ms": "0"},
        )
        top = body["data"]["popularSearches"]
        assert top[0]["query"] == "rezoning main street" and top[0]["searches"] == 3
        assert any(p["query"] == "budget hearing" for p in top)
        bad = gql(http, "{ popularSearches(first: 1000) { query } }")
        assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
