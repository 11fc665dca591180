"""The ASGI app answers /healthz and a minimal GraphQL query."""

from __future__ import annotations

import httpx
import pytest

from gateway.app import create_app
from gateway.settings import Settings


@pytest.fixture()
def settings() -> Settings:
    return Settings(nodes="node1=host=127.0.0.1 port=1")


async def test_healthz_and_typename(settings: Settings) -> None:
    app = create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        resp = await client.post("/graphql", json={"query": "{ __typename }"})
        assert resp.json()["data"] == {"__typename": "Query"}
