"""Structured logs from the real server: one line per event, the access line joined to the trace by its id.

``python -m gateway serve`` runs as a child process with the project's logging configuration, so these lines
are the ones an operator's log shipper would read.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.logs import REQUEST_IDS, JsonFormatter, RequestIdsFilter, TextFormatter, log_config
from ops import stack
from ops.common.gateway_process import GatewayProcess
from tests.helpers import eventually, free_port

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
SECRET_TOKEN = "s3cr3t-bearer-token-never-logged"
QUERY = 'query LogProbe { search(query: "council", first: 2) { edges { cursor } } }'


def _served_lines(layout: stack.StackLayout, fmt: str, requests: list[dict[str, Any]]) -> tuple[list[httpx.Response], str, str]:
    """Serve with GATEWAY_LOG_FORMAT=fmt, send ``requests``, stop; return the responses, stdout and stderr."""
    work = Path(tempfile.mkdtemp(prefix="civic-logs-"))
    out, err = work / "stdout.log", work / "stderr.log"
    env = {**layout.gateway_env(), "GATEWAY_LOG_FORMAT": fmt, "GATEWAY_SEARCH_LOG_SAMPLE": "0"}
    responses = []
    with GatewayProcess(env, port=free_port(), log_path=err, stdout_path=out) as gw:
        for request in requests:
            responses.append(httpx.post(f"{gw.url}/graphql", timeout=30, **request))
        # The access line is written when the response has gone: wait for the last one.
        last = responses[-1].headers["x-request-id"]
        eventually(lambda: last in out.read_text(), timeout_s=10, what="the access lines reaching stdout")
    return responses, out.read_text(), err.read_text()


def test_json_access_line_carries_the_trace_id_of_the_response(stack_layout: stack.StackLayout) -> None:
    responses, stdout, stderr = _served_lines(
        stack_layout,
        "json",
        [
            {"json": {"query": QUERY}, "headers": {"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01"}},
            # A write token in the Authorization header: it must not reach any log line.
            {"json": {"query": QUERY}, "headers": {"authorization": f"Bearer {SECRET_TOKEN}", "x-request-id": "req-42"}},
        ],
    )
    lines = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    access = {line["request_id"]: line for line in lines if line["logger"] == "gateway.access"}
    for resp in responses:
        assert resp.status_code == 200
        trace_id = resp.json()["extensions"]["traceId"]
        line = access[resp.headers["x-request-id"]]
        assert line["trace_id"] == trace_id
        assert line["level"] == "INFO" and line["http.response.status_code"] == 200
        assert line["http.request.method"] == "POST" and line["url.path"] == "/graphql"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["timestamp"])
        assert line["duration_ms"] >= 0 and line["http.response.body.size"] > 0
    assert responses[0].json()["extensions"]["traceId"] == TRACE_ID  # the client's trace, continued
    assert responses[1].headers["x-request-id"] == "req-42"  # a tame request id from the client is kept
    # Every line on either stream is one JSON object (uvicorn's own lines included), and no secret is in any.
    for line in (stdout + stderr).splitlines():
        if line.strip():
            event = json.loads(line)
            assert {"timestamp", "level", "logger", "message"} <= set(event), event
    assert SECRET_TOKEN not in stdout + stderr
    assert any(json.loads(line)["logger"].startswith("uvicorn") for line in stderr.splitlines() if line.strip())


def test_text_lines_carry_timestamp_level_and_ids(stack_layout: stack.StackLayout) -> None:
    responses, stdout, _ = _served_lines(stack_layout, "text", [{"json": {"query": QUERY}}])
    request_id = responses[0].headers["x-request-id"]
    trace_id = responses[0].json()["extensions"]["traceId"]
    line = next(line for line in stdout.splitlines() if f"request_id={request_id}" in line)
    assert re.match(
        rf"^\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{{3}}Z INFO gateway\.access trace_id={trace_id} "
        rf"request_id={request_id} POST /graphql 200 ",
        line,
    ), line


def test_a_hostile_request_id_is_replaced() -> None:
    """Client-chosen ids are kept only when tame: no newline, no quote, bounded, so no forged log lines."""
    import asyncio

    from gateway.telemetry import RequestContextMiddleware

    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        ids = REQUEST_IDS.get()
        assert ids is not None
        seen.append(ids[1])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def run(value: bytes) -> str:
        scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"x-request-id", value)]}
        sent: list[Any] = []

        async def send(message: Any) -> None:
            sent.append(message)

        await RequestContextMiddleware(app)(scope, None, send)  # type: ignore[arg-type]
        return dict(sent[0]["headers"])[b"x-request-id"].decode()

    for hostile in (b"a\nforged line", b'x" injected', b"x" * 500, b""):
        echoed = asyncio.run(run(hostile))
        assert re.fullmatch(r"[0-9a-f]{16}", echoed), echoed
    assert asyncio.run(run(b"edge-7f3a.1")) == "edge-7f3a.1"
    assert seen[-1] == "edge-7f3a.1"


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_an_exception_is_one_line(fmt: str) -> None:
    config = log_config(fmt=fmt, level="info", access_log=True)
    assert config["formatters"]["line"]["()"].endswith("JsonFormatter" if fmt == "json" else "TextFormatter")
    formatter = JsonFormatter() if fmt == "json" else TextFormatter()
    record = logging.LogRecord("gateway.test", logging.ERROR, __file__, 1, "failed %s", ("x",), None)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    token = REQUEST_IDS.set((TRACE_ID, "r1"))
    try:
        RequestIdsFilter().filter(record)
    finally:
        REQUEST_IDS.reset(token)
    line = formatter.format(record)
    assert "\n" not in line and "RuntimeError: boom" in line and TRACE_ID in line
