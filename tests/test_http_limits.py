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


def _exchange(sock: socket.socket, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send one request on a keep-alive connection and read exactly one response (status, headers, body)."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection mid-body"
        body += chunk
    assert len(body) == length, "more bytes than one response: the framing is off"
    return int(lines[0].split()[1]), headers, body


def _post(body: bytes, *, extra: bytes = b"") -> bytes:
    return (
        b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + extra
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )


def test_a_full_worker_refuses_in_the_protocol_and_keeps_the_connection(stack_layout: stack.StackLayout) -> None:
    import json
    import tempfile
    from pathlib import Path

    from ops.common.gateway_process import GatewayProcess
    from tests.helpers import eventually, free_port

    env = {**stack_layout.gateway_env(), "GATEWAY_MAX_IN_FLIGHT": "1", "GATEWAY_RATE_LIMIT_ENABLED": "false",
           "GATEWAY_LOG_FORMAT": "json"}
    stdout = Path(tempfile.mkdtemp(prefix="civic-refusal-")) / "stdout.log"
    with GatewayProcess(env, port=free_port(), stdout_path=stdout) as served:
        host, port = served.url.removeprefix("http://").split(":")
        query = json.dumps({"query": "{ __typename }"}).encode()
        with socket.create_connection((host, int(port)), timeout=10) as holder, \
                socket.create_connection((host, int(port)), timeout=10) as crowd:
            # The holder is admitted, then keeps its request in flight by sending only half of its body.
            holder.sendall(_post(query)[: -len(query) // 2])

            def refused() -> tuple[int, dict[str, str], bytes] | None:
                reply = _exchange(crowd, _post(query))
                return reply if reply[0] == 503 else None

            status, headers, body = eventually(refused, what="a 503 while the only slot is held")
            assert headers["retry-after"] == "1"
            payload = json.loads(body)
            assert payload["errors"][0]["extensions"]["code"] == "OVERLOADED"
            assert len(payload["extensions"]["traceId"]) == 32
            # The client's own trace id and request id come back, as on any response.
            trace = "0af7651916cd43dd8448eb211c80319c"
            ids = f"traceparent: 00-{trace}-b7ad6b7169203331-01\r\nx-request-id: crowd-7\r\n".encode()
            status, headers, body = _exchange(crowd, _post(query, extra=ids))
            assert status == 503 and json.loads(body)["extensions"]["traceId"] == trace
            assert headers["x-request-id"] == "crowd-7"
            # ... and it has its access-log line, with those ids, like any response.
            def refusal_logged() -> dict[str, object] | None:
                for line in stdout.read_text().splitlines():
                    event = json.loads(line)
                    if event.get("request_id") == "crowd-7":
                        return event
                return None

            line = eventually(refusal_logged, timeout_s=10, what="the refusal's access line")
            assert line is not None
            assert line["logger"] == "gateway.access" and line["trace_id"] == trace
            assert line["http.response.status_code"] == 503 and line["url.path"] == "/graphql"
            assert line["civic.refused"] == "protocol"
            # A writer's request is never refused for a crowd: only a valid write token gives that priority.
            token = stack_layout.dev_secret("dev-write-token")
            forged = _exchange(crowd, _post(query, extra=b"Authorization: Bearer not-a-token\r\n"))
            assert forged[0] == 503
            writer = _exchange(crowd, _post(query, extra=f"Authorization: Bearer {token}\r\n".encode()))
            assert writer[0] == 200 and json.loads(writer[2])["data"] == {"__typename": "Query"}
            # The refused request's body was read and dropped: the same connection still frames requests
            # correctly, and paths other than /graphql are never refused.
            assert _exchange(crowd, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 200
            # The holder finishes: its request is served, and the slot is free again.
            holder.sendall(_post(query)[-len(query) // 2 :])
            status, _, body = _exchange(holder, b"")
            assert status == 200 and json.loads(body)["data"] == {"__typename": "Query"}
            assert eventually(lambda: _exchange(crowd, _post(query))[0] == 200, what="the slot freed")
        metrics = httpx.get(f"{served.metrics_url}/metrics").text
        early = [
            line for line in metrics.splitlines()
            if line.startswith("civic_requests_overloaded_total") and 'stage="protocol"' in line
        ]
        # The first 503 may come from the endpoint (the holder entered between the two checks); once the holder
        # is in, refusals are the protocol's.
        assert early and float(early[0].rsplit(" ", 1)[1]) >= 1, [m for m in metrics.splitlines() if "overloaded" in m]
