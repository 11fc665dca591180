"""``python -m ops bench overload``: a crowd, then a crowd with hostile clients in it.

For 50, 100 and 200 clients (``--clients``), each cell runs ``--duration`` seconds of a mixed workload against
``python -m gateway serve`` (cache on unless ``--no-cache``, default limits, N workers): searches of several classes (the Zipf
query mix), page views by id (``node``), and a few writes: one writer, beside the clients, upserts a
one-page document every ``--write-every`` seconds (2 by default) with the stack's write token, whatever the
number of clients. Each write retires every cached response (the cache's generation moves), so the cache's
hit rate is about the same in every cell instead of depending on the order the cells ran in. Then the same with 5 % of the clients hostile: each of
them sends, in turn, a fragment chain that would expand to 2^40 fields, a forged consistency token, a request
far over the statement budget, a body that is not JSON, and half a request head that it never finishes.

Recorded per cell: every response by status and ``extensions.code`` (there must be no 5xx other than 503
``OVERLOADED``), the p50/p95 of admitted requests, how fast refusals came back (p95), throughput, the writes'
outcomes and latency, and how long ``/healthz`` took, probed once a second throughout. Then the issue's
targets are checked against figures of the same run: admitted p95 against the one-client p50 (ratio ≤ 10),
refusals' p95 (≤ 50 ms), throughput against the best of the smaller cells (≥ 0.9), and, for the hostile
cells, the honest clients' p95 against the same cell without hostile clients (≤ 1.5). The report goes to
``docs/bench/overload.json``.

The load generator, the gateway and the three PostgreSQL nodes share this host's cores. By default
(``--priority``) the load generator runs at niceness -10 and the gateway's processes at -5, so that the CPU goes
to them before the databases, as it would with the gateway on hosts of its own: otherwise a refusal, which
costs the gateway a fraction of a millisecond, is timed by how long the kernel lets the databases' backends
run first, and the load generator's own clock is late by the same. ``--no-priority`` measures the shared host
as it is.

Honest clients wait what ``Retry-After`` says (jittered 0.5-1.5x) after a 429 or 503, as the API asks of
clients and as load balancers do; ``--no-backoff`` makes them resend at once, a crowd that ignores it. Hostile
clients never wait.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from gateway.server import default_workers
from ops import stack
from ops.bench.cache import query_population, zipf_sequence
from ops.bench.report import machine, say, summary, write_report
from ops.bench.serving import RawClient
from ops.bench.serving_cpu import served_gateway
from ops.common.net import LOOPBACK
from ops.common.procs import process_tree, set_priority

SEARCH = """query Find($q: String!) { search(query: $q, first: 20) {
  totalCount { value exact } edges { cursor headline node { id document { meetingName } } } } }"""
PAGE = "query Page($id: ID!) { node(id: $id) { id ... on MeetingPage { text document { meetingName } } } }"
UPSERT_MUNICIPALITY = (
    "mutation Town($i: MunicipalityInput!) { upsertMunicipality(input: $i) { municipality { id } consistencyToken } }"
)
UPSERT_DOCUMENT = "mutation Write($i: DocumentInput!) { upsertDocument(input: $i) { document { id } consistencyToken } }"
WRITE_TOWN = {"subdomain": "overload.zz", "name": "Overload Town", "state": "ZZ", "kind": "city"}


def _chain(n: int) -> str:
    parts = ["fragment F0 on Query { a: __typename }"]
    parts += [f"fragment F{i} on Query {{ ...F{i - 1} ...F{i - 1} }}" for i in range(1, n)]
    return f"{{ ...F{n - 1} }} " + " ".join(parts)


HOSTILE_BODIES = [
    orjson.dumps({"query": _chain(40)}),
    orjson.dumps(
        {
            "query": " ".join(
                f'a{i}: search(query: "council{i}") {{ totalCount {{ value }} }}' for i in range(25)
            ).join(["{ ", " }"])
        }
    ),
    b"\xff\xfe not json",
]


async def _probe_health(url: str, stop: asyncio.Event, out: list[float]) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                await http.get(f"{url}/healthz")
                out.append((time.perf_counter() - started) * 1000)
            except httpx.HTTPError:
                out.append(10_000.0)
            await asyncio.sleep(1.0)


async def _half_head(port: int, hold_s: float) -> None:
    """Open a connection, send half a request head, and wait for the server to give up on it."""
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    writer.write(b"POST /graphql HTTP/1.1\r\nHost: x\r\n")
    await writer.drain()
    try:
        await asyncio.wait_for(reader.read(), timeout=hold_s)
    except TimeoutError:
        pass
    writer.close()


async def _writer(
    url: str, token: str, every_s: float, deadline: float, outcomes: collections.Counter[str], took: list[float]
) -> None:
    """Upsert a one-page document every ``every_s`` seconds until ``deadline`` (a steady trickle of writes)."""
    if every_s <= 0:
        return
    n = 0
    async with httpx.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {token}"}) as http:
        while time.monotonic() < deadline:
            n += 1
            doc = {
                "municipality": WRITE_TOWN["subdomain"],
                "meetingName": f"OverloadWrite{n}",
                "meetingDate": "2024-06-15",
                "documentType": "MINUTES",
                "pages": [{"sourceId": f"overload-{n}", "pageNumber": 1, "text": f"Overload write {n}: council budget"}],
            }
            started = time.perf_counter()
            try:
                response = await http.post(
                    f"{url}/graphql", json={"query": UPSERT_DOCUMENT, "variables": {"i": doc}}
                )
                body = response.json()
                code = (body.get("errors") or [{}])[0].get("extensions", {}).get("code") if body.get("errors") else None
                outcomes[f"{response.status_code}{':' + code if code else ''}"] += 1
            except (httpx.HTTPError, ValueError) as exc:
                outcomes[f"transport:{type(exc).__name__}"] += 1
            took.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(every_s)


async def _cell(
    url: str,
    clients: int,
    hostile_share: float,
    duration_s: float,
    queries: list[str],
    ids: list[str],
    *,
    backoff: bool = True,
    token: str = "",
    write_every_s: float = 0.0,
) -> dict[str, Any]:
    port = int(url.rsplit(":", 1)[1])
    hostile = round(clients * hostile_share)
    outcomes: collections.Counter[str] = collections.Counter()
    admitted: list[float] = []
    refused: list[float] = []
    hostile_seen: collections.Counter[str] = collections.Counter()
    health: list[float] = []
    stop_health = asyncio.Event()
    deadline = time.monotonic() + duration_s

    async def honest(index: int) -> None:
        conn = RawClient(port)
        rng = random.Random(index)  # noqa: S311 (a reproducible mix, not a secret)
        i = index
        try:
            while time.monotonic() < deadline:
                draw = rng.random()
                if draw < 0.7:
                    body = orjson.dumps({"query": SEARCH, "variables": {"q": queries[i % len(queries)]}})
                elif draw < 0.98 and ids:
                    body = orjson.dumps({"query": PAGE, "variables": {"id": ids[i % len(ids)]}})
                else:
                    body = orjson.dumps({"query": "{ popularSearches(first: 5) { query } }"})
                i += clients
                started = time.perf_counter()
                status = await conn.post(body)
                elapsed = (time.perf_counter() - started) * 1000
                outcomes[str(status)] += 1
                (admitted if status == 200 else refused).append(elapsed)
                if backoff and status in (429, 503) and conn.retry_after_s:
                    # As the contract asks of clients (and load balancers do): wait what Retry-After says.
                    await asyncio.sleep(conn.retry_after_s * (0.5 + rng.random()))
        finally:
            await conn.close()

    async def attacker(index: int) -> None:
        conn = RawClient(port)
        k = index
        try:
            while time.monotonic() < deadline:
                kind = k % (len(HOSTILE_BODIES) + 1)
                k += 1
                if kind == len(HOSTILE_BODIES):
                    await _half_head(port, hold_s=15.0)
                    hostile_seen["half_head"] += 1
                    continue
                status = await conn.post(HOSTILE_BODIES[kind])
                hostile_seen[f"body{kind}:{status}"] += 1
        finally:
            await conn.close()

    writes: collections.Counter[str] = collections.Counter()
    write_ms: list[float] = []
    probe = asyncio.create_task(_probe_health(url, stop_health, health))
    started = time.monotonic()
    await asyncio.gather(
        *(honest(i) for i in range(clients - hostile)),
        *(attacker(i) for i in range(hostile)),
        _writer(url, token, write_every_s, deadline, writes, write_ms),
    )
    elapsed = time.monotonic() - started
    stop_health.set()
    await probe
    return {
        "clients": clients,
        "hostile": hostile,
        "outcomes": dict(outcomes),
        "admitted_ms": summary(admitted) if admitted else None,
        "refused_ms": summary(refused) if refused else None,
        "admitted_rps": round(len(admitted) / elapsed, 1),
        "healthz_ms": summary(health) if health else None,
        "hostile_requests": dict(hostile_seen),
        "writes": dict(writes),
        "write_ms": summary(write_ms) if write_ms else None,
    }


_WATCHED = ("civic_requests_overloaded_total", "civic_database_gate_limit", "civic_pool_waiting")


def gateway_figures(metrics_url: str) -> dict[str, float]:
    """The gateway's refusals by reason and stage, and its database gate's learned bound, from /metrics."""
    try:
        text = httpx.get(f"{metrics_url}/metrics", timeout=10).text
    except httpx.HTTPError:
        return {}
    figures: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(_WATCHED):
            name, _, value = line.rpartition(" ")
            figures[name] = float(value)
    return figures


def verdict(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each checked against figures of the same run."""
    base = (report["one_client"].get("admitted_ms") or {}).get("p50")
    cells = report["cells"]
    checks: list[dict[str, Any]] = []
    for cell in cells:
        name = f"{cell['clients']} clients, {cell['hostile_share']:.0%} hostile"
        codes = {k for k in cell["outcomes"] if k.startswith("5") and k != "503"}
        checks.append({"cell": name, "target": "no 5xx but 503", "value": sorted(codes), "met": not codes})
        health = (cell.get("healthz_ms") or {}).get("max")
        checks.append({"cell": name, "target": "/healthz within 1 s", "value": health,
                       "met": health is not None and health <= 1000})
        refused = (cell.get("refused_ms") or {}).get("p95")
        if refused is not None:
            checks.append({"cell": name, "target": "refusals p95 <= 50 ms", "value": refused, "met": refused <= 50})
        admitted = (cell.get("admitted_ms") or {}).get("p95")
        if admitted is not None and base:
            ratio = round(admitted / base, 2)
            checks.append({"cell": name, "target": "admitted p95 <= 10x one-client p50", "value": ratio,
                           "met": ratio <= 10})
        smaller = [c["admitted_rps"] for c in cells
                   if c["hostile_share"] == cell["hostile_share"] and c["clients"] < cell["clients"]]
        if smaller:
            ratio = round(cell["admitted_rps"] / max(smaller), 2)
            checks.append({"cell": name, "target": "throughput >= 0.9x the peak of fewer clients",
                           "value": ratio, "met": ratio >= 0.9})
        if cell["hostile_share"] > 0:
            calm = next((c for c in cells if c["hostile_share"] == 0 and c["clients"] == cell["clients"]), None)
            calm_p95 = ((calm or {}).get("admitted_ms") or {}).get("p95")
            if calm_p95 and admitted is not None:
                ratio = round(admitted / calm_p95, 2)
                checks.append({"cell": name, "target": "honest p95 <= 1.5x the run without hostile clients",
                               "value": ratio, "met": ratio <= 1.5})
    return checks


def run(args: argparse.Namespace) -> int:
    layout = stack.StackLayout.load(Path(args.dir).resolve())
    if layout is None:
        say(f"no stack in {args.dir}: run 'python -m ops stack up' and load a corpus first")
        return 2
    rng = random.Random(11)  # noqa: S311 (a reproducible mix, not a secret)
    queries = zipf_sequence(query_population(500, rng), 20_000, 1.1, rng)
    env = {
        **layout.gateway_env(),
        "GATEWAY_SEARCH_LOG_SAMPLE": "0",
        **({} if args.cache else {"GATEWAY_CACHE_ENABLED": "false", "GATEWAY_RESPONSE_CACHE": "false"}),
        # One address sends everything here: a budget per client would only measure the rate limiter.
        "GATEWAY_RATE_LIMIT_READS_PER_MINUTE": str(10**9),
        "GATEWAY_RATE_LIMIT_WRITES_PER_MINUTE": str(10**9),
    }
    report: dict[str, Any] = {
        "machine": machine(), "method": __doc__, "workers": args.workers, "backoff": args.backoff,
        "write_every_s": args.write_every, "cache": args.cache, "priority": None, "cells": [],
    }
    token = layout.dev_secret("dev-write-token")
    with served_gateway(env, workers=args.workers) as served:
        if args.priority:
            refused = set_priority([os.getpid()], -10) + set_priority(process_tree(served.pid), -5)
            report["priority"] = {"load_generator": -10, "gateway": -5, "not_permitted": len(refused)}
            if refused:
                say(f"could not raise the priority of {len(refused)} process(es): run as root for --priority")
        town = httpx.post(
            f"{served.url}/graphql",
            json={"query": UPSERT_MUNICIPALITY, "variables": {"i": WRITE_TOWN}},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        town.raise_for_status()
        body = httpx.post(
            f"{served.url}/graphql",
            json={"query": '{ search(query: "council", first: 100) { edges { node { id } } } }'},
        ).json()
        ids = [e["node"]["id"] for e in body["data"]["search"]["edges"]]
        baseline = asyncio.run(
            _cell(served.url, 1, 0.0, args.duration, queries, ids, backoff=args.backoff, token=token,
                  write_every_s=args.write_every)
        )
        baseline["gateway"] = gateway_figures(served.metrics_url)
        report["one_client"] = baseline
        say(f"1 client: p50 {baseline['admitted_ms']['p50'] if baseline['admitted_ms'] else '-'} ms")
        for share in (0.0, 0.05):
            for clients in args.clients:
                cell = asyncio.run(
                    _cell(served.url, clients, share, args.duration, queries, ids, backoff=args.backoff,
                          token=token, write_every_s=args.write_every)
                )
                cell["hostile_share"] = share
                cell["gateway"] = gateway_figures(served.metrics_url)  # counters are cumulative over the run
                report["cells"].append(cell)
                adm = cell["admitted_ms"] or {}
                say(
                    f"{clients:3d} clients, {share:.0%} hostile: {cell['outcomes']} admitted {cell['admitted_rps']} "
                    f"req/s p50 {adm.get('p50')} p95 {adm.get('p95')} ms; refusals p95 "
                    f"{(cell['refused_ms'] or {}).get('p95')} ms; /healthz p95 {(cell['healthz_ms'] or {}).get('p95')} ms"
                )
    report["targets"] = verdict(report)
    for check in report["targets"]:
        say(f"{'met    ' if check['met'] else 'NOT met'} {check['cell']}: {check['target']} ({check['value']})")
    path = write_report(args.out or "overload", report)
    say(f"report: {path}")
    return 0


def main(rest: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops bench overload", description=__doc__)
    parser.add_argument("--dir", default=str(stack.DEFAULT_DIR))
    parser.add_argument("--clients", nargs="+", type=int, default=[50, 100, 200])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per cell")
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--out", help="name of the JSON file under docs/bench/")
    parser.add_argument(
        "--no-cache", dest="cache", action="store_false",
        help="turn the response and row caches off: every request goes to the databases (admission's worst case)",
    )
    parser.add_argument(
        "--no-priority", dest="priority", action="store_false",
        help="leave the load generator and the gateway at the databases' priority (the shared host as it is)",
    )
    parser.add_argument(
        "--write-every", type=float, default=2.0, help="seconds between the writer's upserts (0: no writes)"
    )
    parser.add_argument(
        "--no-backoff", dest="backoff", action="store_false",
        help="honest clients resend at once after a 429/503 instead of waiting Retry-After (0.5-1.5x, jittered)",
    )
    return run(parser.parse_args(rest))
