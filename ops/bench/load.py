"""``python -m ops bench load``: readers only, through the stack's PgBouncer, reported to ``docs/bench/load.json``.

200 clients by default, for 60 s; the report holds throughput, latency percentiles, errors and the share of
reads each node served.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

from ops import stack
from ops.bench.load_stats import error_examples, errors_by_code, latency_summary, reads_by_node, timeline
from ops.bench.loadgen import CANDIDATE_WORDS, SEARCH, LoadConfig, measured, replica_fitness, run_load
from ops.bench.report import RESULTS_DIR as BENCH_DIR
from ops.common.database import migrate_and_load
from ops.common.gateway_process import GatewayProcess
from ops.common.net import free_port


def search_words(layout: stack.StackLayout, candidates: Sequence[str] = CANDIDATE_WORDS) -> list[str]:
    """The candidates that match at least one page (checked once, before the load)."""
    found: list[str] = []
    with psycopg.connect(stack.primary_admin_dsn(layout), autocommit=True, prepare_threshold=None) as conn:
        for word in candidates:
            row = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM public.meeting_page "
                "WHERE search_vector @@ websearch_to_tsquery('public.civic', %s))",
                [word],
            ).fetchone()
            if row and row[0]:
                found.append(word)
    if not found:
        raise stack.StackError(
            "none of the search words matches a page: load a corpus ('python -m ops corpus')"
        )
    return found


# --- the gateway under test -------------------------------------------------------------------------------------------


def gateway_env(layout: stack.StackLayout, **overrides: str) -> dict[str, str]:
    """The stack's gateway environment, with routing metadata on, the response cache off and no shedding on
    event-loop lag.

    The cache is off because a drill measures what the routing layer does when a node dies: a cached answer
    would never reach a node. Shedding on loop lag is off because on a shared test host the lag follows the
    host's other work, so the gateway would refuse reads for reasons the fault did not cause, and so is the
    database gate, whose bound learned from latency would shrink during the very failover a drill causes; the
    bound on requests in flight stays, and ``python -m ops bench overload`` measures admission control itself.
    """
    env = layout.gateway_env()
    env.update(
        {
            "GATEWAY_ROUTING_METADATA": "true",
            "GATEWAY_CACHE_ENABLED": "false",
            "GATEWAY_MAX_LOOP_LAG_MS": "0",
            "GATEWAY_DATABASE_GATE": "false",
        }
    )
    env.update(overrides)
    return env


# --- python -m ops bench load ---------------------------------------------------------------------------------------


CONNECTION_ERROR_CODES = ("UNAVAILABLE", "TIMEOUT", "INTERNAL_SERVER_ERROR")


def is_connection_error(code: str) -> bool:
    """Failures that mean a connection (client to gateway, gateway to PgBouncer, PgBouncer to PostgreSQL) failed.

    ``UNAVAILABLE`` is how the gateway reports a read no node could take (a pool timeout, a refused or lost
    connection); ``TIMEOUT`` a statement killed by ``statement_timeout`` (which, under load, is a wait for a
    connection more often than a slow query); HTTP 5xx and transport errors speak for themselves.
    """
    return code.startswith(("TRANSPORT:", "HTTP 5")) or code in CONNECTION_ERROR_CODES


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def _pgbouncer_pool_size(layout: stack.StackLayout) -> int | None:
    for line in (Path(layout.dir) / "pgbouncer.ini").read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "default_pool_size" and value.strip().isdigit():
            return int(value.strip())
    return None


def bench_load(args: argparse.Namespace) -> dict[str, Any]:
    """Run the load benchmark and return its report (also written to ``args.out``)."""
    layout = stack.up(Path(args.dir), base_port=args.base_port)
    pages, _ = migrate_and_load(stack.primary_admin_dsn(layout), pages=args.pages)
    words = search_words(layout)
    port = args.port or free_port()
    log = Path(layout.dir) / "drill-logs" / f"bench-load-{time.strftime('%Y%m%d-%H%M%S')}-gateway.log"
    env = gateway_env(
        layout,
        GATEWAY_POOL_MAX_SIZE=str(args.pool_size),
        GATEWAY_HEALTH_INTERVAL_S=str(args.health_interval),
    )
    started_machine = machine()
    with GatewayProcess(env, port=port, log_path=log) as gw:
        # A short warm-up (not measured): opens the pools and warms the caches of every node.
        run_load(LoadConfig(url=gw.url, readers=min(args.clients, 20), duration_s=3.0, words=words))
        config = LoadConfig(url=gw.url, readers=args.clients, duration_s=args.duration, words=words)
        result, readyz = asyncio.run(measured(config))
    samples = result.samples
    reads = [s for s in samples if s.kind == "read"]
    ok = [s for s in reads if s.ok]
    errors = errors_by_code(reads)
    connection_errors = sum(n for code, n in errors.items() if is_connection_error(code))
    elapsed = max((s.ended for s in samples), default=args.duration)
    report: dict[str, Any] = {
        "benchmark": "load",
        "machine": started_machine,
        "settings": {
            "clients": args.clients,
            "duration_s": args.duration,
            "corpus_pages": pages,
            "search_words": words,
            "query": SEARCH,
            "gateway_pool_max_size_per_node": args.pool_size,
            "pgbouncer_default_pool_size": _pgbouncer_pool_size(layout),
            "health_interval_s": args.health_interval,
            "stack_dir": layout.dir,
            "gateway_log": str(log),
        },
        "requests": len(reads),
        "ok": len(ok),
        "throughput_rps": round(len(ok) / elapsed, 1) if elapsed else None,
        "latency_ms": latency_summary(reads),
        "errors_by_code": errors,
        "error_examples": error_examples(reads),
        "connection_errors": connection_errors,
        "retried_reads": sum(1 for s in ok if s.retried),
        "reads_by_node": reads_by_node(reads),
        # Replicas serve reads only when healthy and within the staleness bound (GATEWAY_MAX_STALENESS_MS, 5 s
        # by default); the primary has no lag and serves reads only as a fallback.
        "readyz_fitness": replica_fitness(readyz, max_staleness_s=5.0),
        "readyz_samples": readyz,
        "timeline": timeline(samples, duration_s=args.duration),
        "targets": [
            {"target": "0 connection errors", "actual": connection_errors, "met": connection_errors == 0},
        ],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return report


def format_load(report: dict[str, Any]) -> str:
    lat = report["latency_ms"]
    lines = [
        f"{report['settings']['clients']} clients for {report['settings']['duration_s']:.0f} s on "
        f"{report['settings']['corpus_pages']:,} pages: {report['requests']:,} reads, "
        f"{report['throughput_rps']} req/s, p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms, p99 {lat['p99_ms']} ms",
        f"errors: {report['errors_by_code'] or 'none'}; connection errors: {report['connection_errors']}",
        "reads by node: "
        + ", ".join(f"{n} {v['reads']:,} ({v['share']:.1%})" for n, v in report["reads_by_node"].items()),
    ]
    lines.append(
        "replicas fit for reads (share of /readyz samples): "
        + ", ".join(f"{n} {v['fit_for_reads_share']}" for n, v in report["readyz_fitness"].items())
    )
    for t in report["targets"]:
        lines.append(f"target {t['target']}: {'met' if t['met'] else 'MISSED'} (actual {t['actual']})")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ops bench load",
        description="Many concurrent GraphQL searches through the gateway and PgBouncer; writes docs/bench/load.json.",
    )
    parser.add_argument(
        "--dir", default=str(stack.DEFAULT_DIR), help="stack folder (booted when not running)"
    )
    parser.add_argument("--base-port", type=int, default=stack.DEFAULT_BASE_PORT, help="for a new stack only")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds")
    parser.add_argument("--pages", type=int, default=20_000, help="corpus to load when the database is empty")
    parser.add_argument(
        "--pool-size", type=int, default=25, help="gateway connections per node (PgBouncer's is 25)"
    )
    parser.add_argument("--health-interval", type=float, default=1.0, help="gateway health poll, seconds")
    parser.add_argument("--port", type=int, default=0, help="gateway port (default: a free one)")
    parser.add_argument("--out", default=str(BENCH_DIR / "load.json"))
    return parser


def main(rest: list[str]) -> int:
    """``python -m ops bench load [--clients N] [--duration S] ...``; 0 when the target is met."""
    args = build_parser().parse_args(rest)
    if args.clients < 1 or not 1 <= args.duration <= 3600:
        print("--clients must be >= 1 and --duration between 1 and 3600 s", file=sys.stderr)
        return 2
    report = bench_load(args)
    print(format_load(report))
    print(f"written to {args.out}")
    return 0 if all(t["met"] for t in report["targets"]) else 1
