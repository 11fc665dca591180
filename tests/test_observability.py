"""Traces, SQL spans with queryids, /metrics, OTLP export (HTTP and gRPC), slow-request log, health endpoints."""

from __future__ import annotations

import http.server
import json
import logging
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway import metrics as gateway_metrics
from gateway.telemetry import build_tracer_provider, exporters_from_env
from ops import stack
from tests.conftest import ServedGateway, gateway_settings, gql
from tests.helpers import eventually, free_port

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
QUERY = (
    'query FindZoning { search(query: "zoning variance", first: 5) { edges { headline node { sourceId } } } }'
)


@pytest.fixture(scope="module")
def traced(stack_layout: stack.StackLayout) -> Iterator[tuple[ServedGateway, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = gateway_settings(stack_layout, pgss_interval_s=0.5, cache_enabled=False, sql_comments=True)
    with ServedGateway(settings, tracer_provider=provider) as gw:
        yield gw, exporter


def _spans(exporter: InMemorySpanExporter, trace_id: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if format(s.context.trace_id, "032x") == trace_id]


def test_one_search_from_trace_to_sql_span_to_its_queryid_on_metrics(
    traced: tuple[ServedGateway, InMemorySpanExporter],
) -> None:
    gw, exporter = traced
    with httpx.Client(base_url=gw.url, timeout=30) as http:
        body = gql(http, QUERY, headers={"traceparent": TRACEPARENT})
        assert body["extensions"]["traceId"] == TRACE_ID  # the client's trace is continued
        # The server span ends just after the response is sent: wait for it to reach the exporter.
        spans = eventually(
            lambda: (found := _spans(exporter, TRACE_ID)) and any(s.name == "POST /graphql" for s in found) and found,
            timeout_s=5,
            what="the server span reaching the exporter",
        )
        names = {s.name for s in spans}
        assert {
            "POST /graphql",
            "GraphQL Query: FindZoning",
            "GraphQL Parsing",
            "GraphQL Validation",
            "GraphQL Execution",
            "SQL search",
        } <= names
        # No span wraps an individual field: the SQL span hangs under the execution span.
        assert not any(s.name.startswith("GraphQL Resolving") for s in spans)
        execution = next(s for s in spans if s.name == "GraphQL Execution")
        search_span = next(s for s in spans if s.name == "SQL search")
        assert search_span.parent is not None and search_span.parent.span_id == execution.context.span_id
        server = next(s for s in spans if s.name == "POST /graphql")
        assert server.parent is not None and format(server.parent.span_id, "016x") == "00f067aa0ba902b7"
        # The server span is OpenTelemetry's ASGI instrumentation, with the stable HTTP conventions.
        assert server.instrumentation_scope is not None
        assert server.instrumentation_scope.name == "opentelemetry.instrumentation.asgi"
        http_attrs = dict(server.attributes or {})
        assert http_attrs["http.request.method"] == "POST"
        assert http_attrs["http.route"] == "/graphql" and http_attrs["url.path"] == "/graphql"
        assert http_attrs["http.response.status_code"] == 200
        assert http_attrs["server.port"] == gw.port and http_attrs["url.scheme"] == "http"
        assert re.fullmatch(r"[0-9a-f]{16}", str(http_attrs["civic.request.id"]))
        assert not any(k.startswith(("http.method", "http.status_code", "http.target")) for k in http_attrs)
        sql_span = next(s for s in spans if s.name == "SQL search")
        attrs = dict(sql_span.attributes or {})
        assert attrs["db.system.name"] == "postgresql"
        assert "%(q)s" in str(attrs["db.query.text"]) and "zoning" not in str(attrs["db.query.text"])
        node = attrs["civic.db.node"]
        assert node in {"node1", "node2", "node3"}
        # The connection the statement went through: the node's PgBouncer alias, host and port.
        dsn = dict(part.split("=", 1) for part in gw.app.state.settings.node_dsns[str(node)].split())
        assert attrs["db.namespace"] == dsn["dbname"] == node
        assert attrs["server.address"] == dsn["host"] and attrs["server.port"] == int(dsn["port"])
        assert isinstance(attrs["db.response.returned_rows"], int)
        assert attrs["civic.db.role"] in {"primary", "replica"} and attrs["civic.db.statement"] == "search"
        assert "civic.db.retry_count" in attrs and "civic.db.waited_for_token" in attrs
        # Only the current conventions and the project's own namespace: no old or mixed names.
        assert not any(k in attrs for k in ("db.system", "db.statement", "db.name")), attrs
        assert not any(k.startswith("db.civic.") for k in attrs), attrs
        queryid = str(attrs["civic.db.queryid"])
        assert re.fullmatch(r"-?\d+", queryid)
        # The SQL span's queryid is the one pg_stat_statements reports for the node that ran it.
        for _ in range(3):
            gql(http, QUERY)
        pattern = re.compile(
            r'civic_pgss_calls_total\{node="(\w+)",queryid="'
            + queryid
            + r'",role="(\w+)",statement="search"\} (\d+)'
        )

        def sampled() -> re.Match[str] | None:
            for _ in range(2):
                gql(http, QUERY)
            return pattern.search(httpx.get(f"{gw.metrics_url}/metrics").text)

        found = eventually(sampled, timeout_s=20, interval_s=0.5, what=f"queryid {queryid} on /metrics")
        assert int(found.group(3)) >= 1


def test_sql_carries_a_sqlcommenter_comment(
    traced: tuple[ServedGateway, InMemorySpanExporter], stack_layout: stack.StackLayout
) -> None:
    gw, _ = traced
    # A filter shape no other test uses: its statement text is new, so pg_stat_statements keeps our comment.
    query = """query CommentProbe { search(query: "permit", filter: {states: ["TX"], documentType: MINUTES,
        meetingName: "board", dateFrom: "2006-02-03"}, first: 3) { edges { cursor } } }"""
    with httpx.Client(base_url=gw.url, timeout=30) as http:
        body = gql(http, query, headers={"traceparent": TRACEPARENT})
        node = body["extensions"]["routing"][0]["node"]
    with psycopg.connect(stack_layout.direct_dsn(node), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT query FROM pg_stat_statements WHERE query LIKE '%%action=''CommentProbe''%%'"
        ).fetchall()
    assert rows, "no statement with the operation's comment in pg_stat_statements"
    assert any(f"traceparent='00-{TRACE_ID}-" in r[0] for r in rows)


def test_metrics_endpoint_has_the_operational_series(
    traced: tuple[ServedGateway, InMemorySpanExporter],
) -> None:
    gw, _ = traced
    with httpx.Client(base_url=gw.url, timeout=30) as http:
        gql(http, QUERY)
        gql(http, '{ search(query: "") { edges { cursor } } }')
        text = httpx.get(f"{gw.metrics_url}/metrics").text
    for series in (
        'civic_graphql_requests_total{operation="FindZoning",outcome="ok"}',
        "civic_graphql_request_seconds_bucket",
        'civic_graphql_errors_total{code="BAD_USER_INPUT"}',
        'civic_pool_connections{node="node1",state="open"}',
        'civic_pool_requests_waiting{node="node1"}',
        'civic_pool_events_total{event="requests",node="node1"}',
        'civic_pool_time_seconds_total{node="node1",stat="usage"}',
        "civic_primary_known 1.0",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "python_info{",
        'civic_replica_lag_seconds{node="node2"}',
        'civic_routing_decisions_total{decision="replica"}',
        "civic_read_retries_total",
        'civic_cache_operations_total{outcome="hits"}',
        "civic_sql_statements_per_request_bucket",
        'civic_node_healthy{node="node1",role="primary"} 1.0',
    ):
        assert series in text, series


def test_metrics_are_served_on_their_own_port_only(
    traced: tuple[ServedGateway, InMemorySpanExporter],
) -> None:
    gw, _ = traced
    assert gw.metrics_url != gw.url
    assert httpx.get(f"{gw.url}/metrics").status_code == 404  # the public port serves no metrics
    scrape = httpx.get(f"{gw.metrics_url}/metrics")
    assert scrape.status_code == 200 and "civic_primary_known 1.0" in scrape.text
    # The metrics listener serves nothing else: no GraphQL, no pages.
    assert httpx.post(f"{gw.metrics_url}/graphql", json={"query": "{ __typename }"}).status_code == 404
    assert httpx.get(f"{gw.metrics_url}/").status_code == 404


def test_slow_or_chatty_request_is_one_json_log_line(
    traced: tuple[ServedGateway, InMemorySpanExporter],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gw, _ = traced
    monkeypatch.setattr(gateway_metrics, "MANY_STATEMENTS", 0)
    with (
        caplog.at_level(logging.WARNING, logger="gateway.slow"),
        httpx.Client(base_url=gw.url, timeout=30) as http,
    ):
        gql(http, QUERY, headers={"traceparent": TRACEPARENT})
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "gateway.slow"]
    assert lines and lines[-1]["traceId"] == TRACE_ID and lines[-1]["operation"] == "FindZoning"
    assert lines[-1]["statements"] >= 1 and lines[-1]["durationMs"] > 0


def test_health_endpoints(
    traced: tuple[ServedGateway, InMemorySpanExporter], stack_layout: stack.StackLayout
) -> None:
    gw, _ = traced
    assert httpx.get(f"{gw.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{gw.url}/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True and ready.json()["writable"] is True
    assert httpx.get(f"{gw.url}/readyz/write").status_code == 200
    # A gateway that knows only replicas can serve reads but no writes: read-ready (200, the write state in the
    # body) but not write-ready (503, saying which part is missing).
    env = stack_layout.gateway_env()
    replicas_only = ",".join(p for p in env["GATEWAY_NODES"].split(",") if not p.startswith("node1="))
    with ServedGateway(gateway_settings(stack_layout, nodes=replicas_only)) as gw2:
        resp = httpx.get(f"{gw2.url}/readyz")
        assert resp.status_code == 200
        assert resp.json()["ready"] is True and resp.json()["writable"] is False
        assert resp.json()["missing"] == ["writes: no primary reachable"]
        write = httpx.get(f"{gw2.url}/readyz/write")
        assert write.status_code == 503 and write.json()["missing"] == ["writes: no primary reachable"]


def test_nothing_configured_means_no_export() -> None:
    assert build_tracer_provider({}) is None
    assert (
        exporters_from_env({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}) == []
    )
    assert type(exporters_from_env({"OTEL_TRACES_EXPORTER": "console"})[0]).__name__ == "ConsoleSpanExporter"
    with pytest.raises(ValueError, match="unknown exporter"):
        exporters_from_env({"OTEL_TRACES_EXPORTER": "zipkin"})


# --- OTLP export to receivers started here, decoding the protobuf they receive ------------------------------


class _HttpReceiver(http.server.BaseHTTPRequestHandler):
    received: list[trace_service_pb2.ExportTraceServiceRequest] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", 0))
        request = trace_service_pb2.ExportTraceServiceRequest()
        request.ParseFromString(self.rfile.read(length))
        type(self).received.append(request)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.end_headers()
        self.wfile.write(trace_service_pb2.ExportTraceServiceResponse().SerializeToString())

    def log_message(self, *args: Any) -> None:
        return None


class _GrpcReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.received: list[trace_service_pb2.ExportTraceServiceRequest] = []

    def Export(self, request: Any, context: Any) -> Any:
        self.received.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()


def _span_names(requests: list[trace_service_pb2.ExportTraceServiceRequest]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for req in requests:
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    out[span.name] = {a.key: a.value.string_value for a in span.attributes}
    return out




@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_otlp_export_reaches_a_receiver(
    stack_layout: stack.StackLayout, monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    port = free_port()
    if protocol == "grpc":
        import grpc

        receiver = _GrpcReceiver()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        received = receiver.received
        stop = lambda: server.stop(0)  # noqa: E731
    else:
        _HttpReceiver.received = []
        httpd = http.server.HTTPServer(("127.0.0.1", port), _HttpReceiver)
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        received = _HttpReceiver.received

        def stop() -> None:
            httpd.shutdown()
            httpd.server_close()

    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "civic-test")
    provider = build_tracer_provider()
    assert provider is not None
    try:
        settings = gateway_settings(stack_layout, cache_enabled=False)
        with (
            ServedGateway(settings, tracer_provider=provider) as gw,
            httpx.Client(base_url=gw.url, timeout=30) as c,
        ):
            gql(c, QUERY, headers={"traceparent": TRACEPARENT})
        provider.force_flush()
        eventually(lambda: received, timeout_s=10, interval_s=0.1, what="the collector receiving spans")
        names = _span_names(received)
        assert "SQL search" in names and "GraphQL Query: FindZoning" in names
        assert "%(q)s" in names["SQL search"]["db.query.text"]
        service = received[0].resource_spans[0].resource.attributes
        assert any(a.key == "service.name" and a.value.string_value == "civic-test" for a in service)
    finally:
        provider.shutdown()
        stop()


# --- a real Prometheus scrapes /metrics ---------------------------------------------------------------------------


def test_real_prometheus_scrapes_metrics(traced: tuple[ServedGateway, InMemorySpanExporter]) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus not installed: apt-get install prometheus (make test installs it)")
    gw, _ = traced
    with httpx.Client(base_url=gw.url, timeout=30) as c:
        gql(c, QUERY)
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="civic-prom-"))
    target = gw.metrics_url.removeprefix("http://")
    (work / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n"
        f"  - job_name: civic\n    static_configs:\n      - targets: ['{target}']\n"
    )
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def stored() -> list[Any]:
            try:
                resp = httpx.get(
                    f"http://127.0.0.1:{port}/api/v1/query",
                    params={"query": 'civic_graphql_requests_total{operation="FindZoning"}'},
                )
                result: list[Any] = resp.json()["data"]["result"]
            except (httpx.HTTPError, KeyError, ValueError):
                return []
            return result

        eventually(stored, timeout_s=40, interval_s=1, what="Prometheus storing a scraped sample")
        up = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": 'up{job="civic"}'}).json()
        assert up["data"]["result"][0]["value"][1] == "1"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        shutil.rmtree(work, ignore_errors=True)


def test_dataloader_batches_have_one_span_each(traced: tuple[ServedGateway, InMemorySpanExporter]) -> None:
    gw, exporter = traced
    trace_id = "5bf92f3577b34da6a3ce929d0e0e4737"
    with httpx.Client(base_url=gw.url, timeout=30) as http:
        found = gql(http, '{ search(query: "council", first: 6) { edges { node { id } } } }')
        ids = [e["node"]["id"] for e in found["data"]["search"]["edges"]]
        query = "query($ids: [ID!]!) { nodes(ids: $ids) { ... on MeetingPage { document { municipality { name } } } } }"
        body = gql(http, query, {"ids": ids}, headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
    assert "errors" not in body and len(body["data"]["nodes"]) == 6, body
    names = ("pages", "documents", "municipalities")
    spans = eventually(
        lambda: (
            [[s for s in _spans(exporter, trace_id) if s.name == f"DataLoader batch {n}"] for n in names]
            if all(any(s.name == f"DataLoader batch {n}" for s in _spans(exporter, trace_id)) for n in names)
            else None
        ),
        what="a span for each batch",
    )
    # Six pages, their documents and their towns: one batch each, one span each, never one per key.
    for name, batch in zip(names, spans, strict=True):
        assert len(batch) == 1, name
        assert dict(batch[0].attributes or {})["civic.dataloader.keys"] >= 1
    sql_spans = [s for s in _spans(exporter, trace_id) if s.name == "SQL municipalities_by_id"]
    assert len(sql_spans) == 1 and sql_spans[0].parent is not None
    assert sql_spans[0].parent.span_id == spans[2][0].context.span_id
