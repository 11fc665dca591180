"""HTTP deadlines (raw sockets) and admission control: slow clients and crowds get fast, explicit answers."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import httpx
import pytest

from ops import stack
from ops.bench.serving_cpu import ServedProcess, served_gateway
from tests.conftest import ServedGateway, gateway_settings


@pytest.fixture(scope="module")
def strict_gateway(stack_layout: stack.StackLayout) -> Iterator[ServedProcess]:
    """``python -m gateway serve`` (uvicorn with the gateway's protocol) with short head and body deadlines."""
    env = {**stack_layout.gateway_env(), "GATEWAY_HTTP_HEAD_TIMEOUT_S": "0.5", "GATEWAY_HTTP_BODY_TIMEOUT_S": "0.5"}
    with served_gateway(env, workers=1) as served:
        yield served


def _closed_by_server(served: ServedProcess, first_bytes: bytes) -> bool:
    host, port = served.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(first_bytes)
        try:
            return sock.recv(1024) == b""  # the server closed without answering
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False


def test_half_a_request_head_is_cut_off(strict_gateway: ServedProcess) -> None:
    assert _closed_by_server(strict_gateway, b"POST /graphql HTTP/1.1\r\nHost: x\r\n")


def test_a_connection_that_sends_nothing_is_cut_off(strict_gateway: ServedProcess) -> None:
    assert _closed_by_server(strict_gateway, b"")


def test_a_body_that_never_arrives_is_cut_off(strict_gateway: ServedProcess) -> None:
    head = b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    assert _closed_by_server(strict_gateway, head + b'{"query":')


def test_complete_requests_still_work(strict_gateway: ServedProcess) -> None:
    assert httpx.post(f"{strict_gateway.url}/graphql", json={"query": "{ __typename }"}).json()["data"]


async def test_a_crowd_past_the_in_flight_bound_gets_503_overloaded(stack_layout: stack.StackLayout) -> None:
    settings = gateway_settings(stack_layout, max_in_flight=1, cache_enabled=False)
    query = '{ search(query: "council zoning", first: 20) { edges { headline } } }'
    with ServedGateway(settings) as gw:
        async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
            replies = await asyncio.gather(*(http.post("/graphql", json={"query": query}) for _ in range(30)))
    statuses = [r.status_code for r in replies]
    assert set(statuses) <= {200, 503}, statuses
    refused = [r for r in replies if r.status_code == 503]
    assert refused and statuses.count(200) >= 1
    for r in refused:
        assert r.headers["retry-after"] == "1"
        assert r.json()["errors"][0]["extensions"]["code"] == "OVERLOADED"
