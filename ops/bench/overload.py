"""``python -m ops bench overload``: a crowd, then a crowd with hostile clients in it.

For 50, 100 and 200 clients (``--clients``), each cell runs ``--duration`` seconds of a mixed workload against
``python -m gateway serve`` (cache on, default limits, N workers): searches of several classes (the Zipf
query mix), page views by id (``node``), and a few writes. Then the same with 5 % of the clients hostile: each of
them sends, in turn, a fragment chain that would expand to 2^40 fields, a forged consistency token, a request
far over the statement budget, a body that is not JSON, and half a request head that it never finishes.

Recorded per cell: every response by status and ``extensions.code`` (there must be no 5xx other than 503
``OVERLOADED``), the p50/p95 of admitted requests, how fast refusals came back (p95), throughput, and how long
``/healthz`` took, probed once a second throughout. The report goes to ``docs/bench/overload.json``.

Honest clients wait what ``Retry-After`` says (jittered 0.5-1.5x) after a 429 or 503, as the API asks of
clients and as load balancers do; ``--no-backoff`` makes them resend at once, a crowd that ignores it. Hostile
clients never wait.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
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

SEARCH = """query Find($q: String!) { search(query: $q, first: 20) {
  totalCount { value exact } edges { cursor headline node { id document { meetingName } } } } }"""
PAGE = "query Page($id: ID!) { node(id: $id) { id ... on MeetingPage { text document { meetingName } } } }"


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


async def _cell(
    url: str,
    clients: int,
    hostile_share: float,
    duration_s: float,
    queries: list[str],
    ids: list[str],
    *,
    backoff: bool = True,
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

    probe = asyncio.create_task(_probe_health(url, stop_health, health))
    started = time.monotonic()
    await asyncio.gather(
        *(honest(i) for i in range(clients - hostile)), *(attacker(i) for i in range(hostile))
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
    }


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
        # One address sends everything here: a budget per client would only measure the rate limiter.
        "GATEWAY_RATE_LIMIT_READS_PER_MINUTE": str(10**9),
        "GATEWAY_RATE_LIMIT_WRITES_PER_MINUTE": str(10**9),
    }
    report: dict[str, Any] = {
        "machine": machine(), "method": __doc__, "workers": args.workers, "backoff": args.backoff, "cells": [],
    }
    with served_gateway(env, workers=args.workers) as served:
        body = httpx.post(
            f"{served.url}/graphql",
            json={"query": '{ search(query: "council", first: 100) { edges { node { id } } } }'},
        ).json()
        ids = [e["node"]["id"] for e in body["data"]["search"]["edges"]]
        baseline = asyncio.run(_cell(served.url, 1, 0.0, args.duration, queries, ids, backoff=args.backoff))
        report["one_client"] = baseline
        say(f"1 client: p50 {baseline['admitted_ms']['p50'] if baseline['admitted_ms'] else '-'} ms")
        for share in (0.0, 0.05):
            for clients in args.clients:
                cell = asyncio.run(
                    _cell(served.url, clients, share, args.duration, queries, ids, backoff=args.backoff)
                )
                cell["hostile_share"] = share
                report["cells"].append(cell)
                adm = cell["admitted_ms"] or {}
                say(
                    f"{clients:3d} clients, {share:.0%} hostile: {cell['outcomes']} admitted {cell['admitted_rps']} "
                    f"req/s p50 {adm.get('p50')} p95 {adm.get('p95')} ms; refusals p95 "
                    f"{(cell['refused_ms'] or {}).get('p95')} ms; /healthz p95 {(cell['healthz_ms'] or {}).get('p95')} ms"
                )
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
        "--no-backoff", dest="backoff", action="store_false",
        help="honest clients resend at once after a 429/503 instead of waiting Retry-After (0.5-1.5x, jittered)",
    )
    return run(parser.parse_args(rest))
