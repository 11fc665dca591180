"""A write acknowledged while Redis was away still retires every cached entry older than it."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from ops import stack
from tests.conftest import WRITER_TOKEN, ServedGateway, gateway_settings
from tests.faultproxy import FaultProxy
from tests.helpers import eventually_async

WRITER = {"Authorization": f"Bearer {WRITER_TOKEN}"}
SEARCH = 'query Find($w: String!) { search(query: $w, first: 5) { edges { node { sourceId } } } }'


async def post(http: httpx.AsyncClient, query: str, variables: dict[str, Any], headers: dict[str, str]) -> Any:
    resp = await http.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.json()


async def test_delete_while_redis_is_unreachable_then_read(stack_layout: stack.StackLayout) -> None:
    if not stack_layout.redis_port:
        pytest.skip("redis-server not installed: apt-get install redis-server (make test installs it)")
    proxy = FaultProxy("127.0.0.1", stack_layout.redis_port)
    await proxy.start()
    # A database of its own in the stack's Redis: the data generation of other tests' gateways is not touched.
    settings = gateway_settings(stack_layout, redis_url=f"redis://127.0.0.1:{proxy.port}/7")
    word = f"numbat{uuid.uuid4().hex[:8]}"
    try:
        with ServedGateway(settings) as gw:
            cache = gw.app.state.cache
            async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
                await post(http, 'mutation { upsertMunicipality(input: {subdomain: "gonetown.ca", name: "Gonetown", '
                           'state: "CA"}) { consistencyToken } }', {}, WRITER)
                made = await post(http, """mutation($w: String!) { upsertDocument(input: {municipality: "gonetown.ca",
                    meetingName: "CityCouncil", meetingDate: "2024-05-01", documentType: MINUTES,
                    pages: [{sourceId: $w, pageNumber: 1, text: $w}]}) { consistencyToken document { id } } }""",
                                  {"w": word}, WRITER)
                token = made["data"]["upsertDocument"]["consistencyToken"]
                doc_id = made["data"]["upsertDocument"]["document"]["id"]
                # The token holder's read fills the response cache; a plain read is then a hit with the page.
                seen = await post(http, SEARCH, {"w": word}, {"X-Consistency-Token": token})
                assert [e["node"]["sourceId"] for e in seen["data"]["search"]["edges"]] == [word]
                hit = await post(http, SEARCH, {"w": word}, {})
                assert hit["extensions"].get("cache") == "hit" and len(hit["data"]["search"]["edges"]) == 1

                await proxy.stop()  # Redis unreachable: the delete's generation bump cannot land
                gone = await post(http, 'mutation($id: ID!) { deleteDocument(id: $id) { consistencyToken } }',
                                  {"id": doc_id}, WRITER)
                assert "errors" not in gone, gone
                after = gone["data"]["deleteDocument"]["consistencyToken"]
                assert cache.stats.bumps_pending >= 1
                await proxy.start()  # Redis is back, still holding the entry with the deleted page

                # Wait until every replica has replayed the delete, so a plain read is fresh whichever node
                # serves it; then no plain read may come back with the page from the old entry.
                async def replayed() -> bool:
                    body = await post(http, SEARCH, {"w": word}, {"X-Consistency-Token": after})
                    return body["data"]["search"]["edges"] == [] and body["extensions"]["routing"][0]["role"] == "replica"

                await eventually_async(replayed, timeout_s=15, what="replicas replay the delete")
                for _ in range(3):
                    body = await post(http, SEARCH, {"w": word}, {})
                    assert body["data"]["search"]["edges"] == [], body

                async def settled() -> bool:
                    return cache._pending_bumps == 0

                # The bump lands once Redis answers again (after the bypass's cool-down), and reads stay fresh.
                await eventually_async(settled, timeout_s=15, what="the pending bump lands")
                for _ in range(3):
                    body = await post(http, SEARCH, {"w": word}, {})
                    assert body["data"]["search"]["edges"] == [], body
    finally:
        await proxy.stop()
