"""``python -m ops drill repack``: searches keep working while pg_repack rewrites a bloated partition.

The drill bloats one partition of ``meeting_page`` on purpose (every row updated, then a plain VACUUM, a few
rounds: the dead space stays in the file), serves the gateway from the stack, and runs ``--clients``
closed-loop readers whose searches are filtered to that partition's dates, so every one of them reads it. Half
of the readers ask for fresh data (``x-max-staleness-ms: 0``), which the router sends to the primary, where
pg_repack runs, whenever the replicas' measured lag is above zero; the rest read replicas, which replay its file
swap (the report's ``served_by`` says how many reads each node served). Once the load has run for a moment the
drill runs ``python -m ops repack`` on that partition alone (:func:`ops.maintenance.repack.run`), lets the load
run a moment longer, and stops.

The report (JSON, ``docs/drills/repack.json`` by default) gives the partition's size and bloat before and
after, how long the repack took, and the reads: how many, how many failed (and with which code), latency
percentiles, and the nodes that served them. The target is 0 failed reads; the exit status is 0 when it is met
and the repack succeeded. All traffic goes to 127.0.0.1 and every loop is bounded in time and count.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import io
import json
import os
import random
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

from migrations.partitions import list_partitions
from ops import stack
from ops.bench import load as bench_load
from ops.common.database import migrate_and_load
from ops.common.gateway_process import GatewayProcess
from ops.common.net import free_port
from ops.drills.options import DEFAULT_REPORTS, DrillError
from ops.maintenance import repack

QUERY = (
    "query RepackDrill($q: String!, $from: Date, $to: Date) "
    "{ search(query: $q, first: 20, filter: {dateFrom: $from, dateTo: $to}) { edges { node { id } } } }"
)
MAX_REQUESTS_PER_CLIENT = 100_000


def bloat(dsn: str, partition: str, *, rounds: int) -> None:
    """Leave dead space in ``partition``: update every row, then VACUUM (which frees, but never returns, it)."""
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        table = sql.Identifier(partition)
        for _ in range(rounds):
            conn.execute(sql.SQL("UPDATE public.{} SET page_number = page_number").format(table))
            conn.execute(sql.SQL("VACUUM public.{}").format(table))


def pick_partition(dsn: str, name: str | None) -> tuple[str, dt.date | None, dt.date | None, int]:
    """(name, first day, last day, rows) of the partition to repack: ``name``, else the one with most rows."""
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        parts = [p for p in list_partitions(conn, exact=True) if p.rows > 0]
    if name is not None:
        parts = [p for p in parts if p.name == name]
        if not parts:
            raise DrillError(f"{name} is not a non-empty partition of meeting_page")
    if not parts:
        raise DrillError("meeting_page has no rows: load a corpus first")
    chosen = max(parts, key=lambda p: p.rows)
    last = chosen.end - dt.timedelta(days=1) if chosen.end is not None else None
    return chosen.name, chosen.start, last, chosen.rows


async def _reader(
    http: httpx.AsyncClient, index: int, words: list[str], dates: tuple[str | None, str | None],
    stop: asyncio.Event, samples: list[dict[str, Any]], t0: float,
) -> None:
    rng = random.Random(index)  # noqa: S311 (a mix of words, not a secret)
    headers = {"x-max-staleness-ms": "0"} if index % 2 else {}
    for _ in range(MAX_REQUESTS_PER_CLIENT):
        if stop.is_set():
            return
        variables = {"q": rng.choice(words), "from": dates[0], "to": dates[1]}
        started = time.monotonic()
        code: str | None = None
        nodes: list[str] = []
        try:
            resp = await http.post("/graphql", json={"query": QUERY, "variables": variables}, headers=headers)
            body = resp.json()
            errors = body.get("errors") if isinstance(body, dict) else None
            if errors:
                code = str((errors[0].get("extensions") or {}).get("code") or f"HTTP {resp.status_code}")
            elif resp.status_code != 200:
                code = f"HTTP {resp.status_code}"
            routing = (body.get("extensions") or {}).get("routing") or [] if isinstance(body, dict) else []
            nodes = [str(d.get("node")) for d in routing if isinstance(d, dict)]
        except (httpx.HTTPError, ValueError) as exc:
            code = f"TRANSPORT:{type(exc).__name__}"
        samples.append({
            "t": round(started - t0, 3), "ms": round((time.monotonic() - started) * 1000, 2),
            "code": code, "nodes": nodes,
        })


async def _drive(
    url: str, *, clients: int, words: list[str], dates: tuple[str | None, str | None], before_s: float,
    after_s: float, repack_call: Any,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    samples: list[dict[str, Any]] = []
    stop = asyncio.Event()
    t0 = time.monotonic()
    limits = httpx.Limits(max_connections=clients + 2, max_keepalive_connections=clients + 2, keepalive_expiry=1.0)
    async with httpx.AsyncClient(base_url=url, timeout=30.0, limits=limits) as http:
        tasks = [asyncio.create_task(_reader(http, i, words, dates, stop, samples, t0)) for i in range(clients)]
        await asyncio.sleep(before_s)
        window = {"start": round(time.monotonic() - t0, 3)}
        result = await asyncio.to_thread(repack_call)
        window["end"] = round(time.monotonic() - t0, 3)
        await asyncio.sleep(after_s)
        stop.set()
        async with asyncio.timeout(40):
            await asyncio.gather(*tasks)
    return samples, {"window": window, "result": result}


def _reads(samples: list[dict[str, Any]], start: float | None = None, end: float | None = None) -> dict[str, Any]:
    chosen = [s for s in samples if (start is None or s["t"] >= start) and (end is None or s["t"] <= end)]
    failed = [s for s in chosen if s["code"]]
    codes: dict[str, int] = {}
    for s in failed:
        codes[s["code"]] = codes.get(s["code"], 0) + 1
    nodes: dict[str, int] = {}
    for s in chosen:
        for n in set(s["nodes"]):
            nodes[n] = nodes.get(n, 0) + 1
    latencies = sorted(s["ms"] for s in chosen) or [0.0]
    return {
        "total": len(chosen),
        "failed": len(failed),
        "codes": codes,
        "served_by": dict(sorted(nodes.items())),
        "p50_ms": round(statistics.median(latencies), 1),
        "p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))], 1),
        "max_ms": round(latencies[-1], 1),
    }


def run_repack_drill(
    layout: stack.StackLayout,
    *,
    clients: int = 8,
    partition: str | None = None,
    rounds: int = 2,
    before_s: float = 3.0,
    after_s: float = 3.0,
    pages: int = 20_000,
    reports: Path | None = DEFAULT_REPORTS,
    name: str = "repack",
    gateway_log: Path | None = None,
    reserve_percent: float = 10.0,
) -> dict[str, Any]:
    """Bloat a partition, repack it under search load, and report what the readers saw (see the module doc)."""
    dsn = stack.primary_admin_dsn(layout)
    have, _ = migrate_and_load(dsn, pages=pages, progress=False)
    target, first, last, rows = pick_partition(dsn, partition)
    words = bench_load.search_words(layout)
    bloat(dsn, target, rounds=rounds)
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        before = {c.name: c for c in repack.partitions(conn)}[target]
    out = io.StringIO()

    def repack_call() -> dict[str, Any]:
        started = time.monotonic()
        # The thresholds are off: the drill repacks the partition it bloated, whatever the estimate says.
        status, outcomes = repack.run(
            dsn, names=[target], min_bloat_ratio=0.0, min_bloat_mb=0.0, reserve_percent=reserve_percent, out=out
        )
        return {"status": status, "seconds": round(time.monotonic() - started, 2),
                "outcomes": [o.__dict__ for o in outcomes]}

    env = bench_load.gateway_env(layout)
    with GatewayProcess(env, port=free_port(), log_path=gateway_log) as gw:
        samples, ran = asyncio.run(_drive(
            gw.url, clients=clients, words=words,
            dates=(first.isoformat() if first else None, last.isoformat() if last else None),
            before_s=before_s, after_s=after_s, repack_call=repack_call,
        ))
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        after = {c.name: c for c in repack.partitions(conn)}[target]
        count = conn.execute(sql.SQL("SELECT count(*) FROM public.{}").format(sql.Identifier(target))).fetchone()
    window = ran["window"]
    reads = _reads(samples)
    during = _reads(samples, window["start"], window["end"])
    repacked = ran["result"]["status"] == 0 and after.relfilenode != before.relfilenode
    report: dict[str, Any] = {
        "drill": "repack",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2)},
        "corpus_pages": have,
        "partition": {
            "name": target, "rows": rows, "rows_after": int(count[0]) if count else None,
            "first_day": first.isoformat() if first else None, "last_day": last.isoformat() if last else None,
            "total_bytes_before": before.total_bytes, "total_bytes_after": after.total_bytes,
            "heap_bloat_bytes_before": before.bloat_bytes, "heap_bloat_bytes_after": after.bloat_bytes,
            "relfilenode_changed": after.relfilenode != before.relfilenode,
        },
        "repack": {**ran["result"], "window_s": window, "log": out.getvalue().strip().splitlines()},
        "clients": clients,
        "reads": reads,
        "reads_during_repack": during,
        "targets": [
            {"name": "repack succeeded (the partition's file was swapped)", "met": repacked},
            {"name": "0 failed reads", "met": reads["failed"] == 0, "value": reads["failed"]},
            {"name": "reads were served while the repack ran", "met": during["total"] > 0, "value": during["total"]},
        ],
    }
    if reports is not None:
        reports.mkdir(parents=True, exist_ok=True)
        (reports / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(rest: list[str]) -> int:
    """``python -m ops drill repack [--dir DIR] [--clients N] [--partition NAME] ...``."""
    parser = argparse.ArgumentParser(prog="python -m ops drill repack", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=str(stack.DEFAULT_DIR), help="stack folder (default: the dev stack)")
    parser.add_argument("--base-port", type=int, default=stack.DEFAULT_BASE_PORT, help="for a new stack only")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--partition", help="the partition to bloat and repack (default: the one with most rows)")
    parser.add_argument("--rounds", type=int, default=2, help="update-and-vacuum rounds of bloat")
    parser.add_argument("--pages", type=int, default=20_000, help="corpus to load when the database is empty")
    parser.add_argument("--reports", default=str(DEFAULT_REPORTS), help="where the JSON goes")
    parser.add_argument("--name", default="repack", help="stem of the report file")
    parser.add_argument("--reserve-percent", type=float, default=10.0, help="as python -m ops repack's")
    args = parser.parse_args(rest)
    if not 1 <= args.clients <= 200 or not 1 <= args.rounds <= 10:
        raise DrillError("--clients between 1 and 200, --rounds between 1 and 10")
    layout = stack.up(Path(args.dir), replicas=2, base_port=args.base_port)
    report = run_repack_drill(
        layout, clients=args.clients, partition=args.partition, rounds=args.rounds, pages=args.pages,
        reports=Path(args.reports), name=args.name, reserve_percent=args.reserve_percent,
    )
    print(json.dumps({k: report[k] for k in ("partition", "reads", "reads_during_repack", "targets")}, indent=2))
    with contextlib.suppress(KeyError):
        print("\n".join(report["repack"]["log"]))
    return 0 if all(t["met"] for t in report["targets"]) else 1
