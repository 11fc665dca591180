"""``python -m ops bench tracing``: the search path with tracing off, with a no-op tracer, and exporting.

Three gateways on the same stack, each searched with the same sequence, interleaved:

* ``off``: no exporter configured (``OTEL_TRACES_EXPORTER=none``): the API's no-op tracer;
* ``noop``: the SDK is on but the sampler drops every trace (``OTEL_TRACES_SAMPLER=always_off``);
* ``otlp``: every span exported over OTLP/HTTP to a receiver started here, which decodes nothing and
  answers at once (so the figure is the gateway's cost, not the receiver's).

The cache is off, so every request runs its SQL; the target is tracing-on p50 within 10 % of tracing-off.
"""

from __future__ import annotations

import argparse
import http.server
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from ops import stack
from ops.bench.cache import QUERY, WORDS
from ops.bench.cases import ensure_corpus
from ops.bench.report import machine, summary, write_report
from ops.common.gateway_process import GatewayProcess
from ops.common.net import free_port


class _Sink(http.server.BaseHTTPRequestHandler):
    requests = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        type(self).requests += 1
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


def run(args: argparse.Namespace) -> int:
    layout = stack.up(Path(args.dir))
    pages = ensure_corpus(layout, args.pages)
    sink_port = free_port()
    sink = http.server.ThreadingHTTPServer(("127.0.0.1", sink_port), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    base = {**layout.gateway_env(), "GATEWAY_CACHE_ENABLED": "false", "GATEWAY_SEARCH_LOG_SAMPLE": "0",
            "GATEWAY_ROUTING_METADATA": "false"}
    configs = {
        "off": {**base, "OTEL_TRACES_EXPORTER": "none"},
        "noop": {**base, "OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER": "always_off",
                 "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink_port}"},
        "otlp": {**base, "OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                 "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink_port}"},
    }
    samples: dict[str, list[float]] = {k: [] for k in configs}
    queries = list(WORDS)
    try:
        gateways = {name: GatewayProcess(env, port=args.port + i) for i, (name, env) in enumerate(configs.items())}
        for gw in gateways.values():
            gw.__enter__()
        with httpx.Client(timeout=60) as client:
            names = list(configs)
            for i in range(args.requests):
                q = queries[i % len(queries)]
                rotated = names[i % 3:] + names[: i % 3]  # each config goes first equally often
                for name in rotated:
                    started = time.perf_counter()
                    resp = client.post(f"http://127.0.0.1:{gateways[name].port}/graphql",
                                       json={"query": QUERY, "variables": {"q": q}})
                    elapsed = (time.perf_counter() - started) * 1000
                    if resp.status_code != 200 or resp.json().get("errors"):
                        raise RuntimeError(resp.text[:300])
                    if i >= args.warmup:
                        samples[name].append(elapsed)
    finally:
        for gw in locals().get("gateways", {}).values():
            gw.__exit__()
        sink.shutdown()
    stats = {name: summary(values) for name, values in samples.items()}
    off_p50 = stats["off"]["p50"]
    report = {
        "benchmark": "tracing",
        "pages": pages,
        "requests_per_config": len(samples["off"]),
        "ms": stats,
        "overhead_p50": {name: round(stats[name]["p50"] / off_p50 - 1, 4) for name in ("noop", "otlp")},
        "otlp_export_requests_received": _Sink.requests,
        "machine": machine(),
    }
    out = write_report("tracing", report)
    print(f"p50 off {off_p50} ms, noop {stats['noop']['p50']} ms, otlp {stats['otlp']['p50']} ms; written to {out}")
    return 0


def main(rest: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops bench tracing")
    parser.add_argument("--dir", default=str(stack.DEFAULT_DIR))
    parser.add_argument("--pages", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--port", type=int, default=8751)
    return run(parser.parse_args(rest))
