"""``python -m ops bench serving``: the gateway's own cost per request, side by side with direct SQL.

In one run, on the stack in ``--dir`` (run it on the 1M-page corpus):

* F, measured here (see :mod:`ops.bench.serving_cpu`);
* the CPU per request of the four requests (``{ __typename }``, a 20-result search as a cache miss and as a
  hit, and the search page's own query), in milliseconds and in F, from the gateway's whole process tree;
* requests per second and latency at 1, 16 and 64 clients for the gateway with its caches off and on, with 1
  worker and with N, against direct SQL: psycopg through the same PgBouncer running the same statement the
  gateway runs for that search (the newest 20 with cursor, headline and id), with the same query mix.

The load generator is a small asyncio HTTP/1.1 client with keep-alive connections (no HTTP library), so that
it takes as little of the machine's CPU as it can; it still shares the machine with the gateway and the
databases, as any load test on one host does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from psycopg_pool import AsyncConnectionPool

from gateway.server import default_workers
from ops import stack
from ops.bench.cache import query_population, zipf_sequence
from ops.bench.report import machine, say, summary, write_report
from ops.bench.serving_cpu import SEARCH_20, measure_f, measure_kinds, served_gateway
from ops.common.net import LOOPBACK
from schema import search_sql
from schema.search_sql import SearchSpec

THROUGHPUT_QUERY = """query Newest($q: String!) { search(query: $q, first: 20) {
  edges { cursor headline node { id } } } }"""


class RawClient:
    """One keep-alive HTTP/1.1 connection sending POST /graphql requests."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        #: The ``Retry-After`` of the last response (seconds), or None when it had none.
        self.retry_after_s: float | None = None

    async def post(self, body: bytes) -> int:
        head = (
            f"POST /graphql HTTP/1.1\r\nHost: {LOOPBACK}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        for attempt in (1, 2):
            reader, writer = await self._connection()
            writer.write(head + body)
            status_line = await reader.readline()
            if not status_line and attempt == 1:
                # The server closed this keep-alive connection while it sat idle (its keep-alive timeout), as
                # any HTTP client must expect: open a new one and send again.
                await self.close()
                continue
            break
        length = 0
        self.retry_after_s = None
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            header = name.strip().lower()
            if header == b"content-length":
                length = int(value.strip())
            elif header == b"retry-after" and value.strip().isdigit():
                self.retry_after_s = float(value.strip())
        await reader.readexactly(length)
        return int(status_line.split()[1])

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(LOOPBACK, self.port)
        return self.reader, self.writer

    async def close(self) -> None:
        if self.writer is not None:
            writer, self.writer, self.reader = self.writer, None, None
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def _drive(
    clients: int, duration_s: float, call: Callable[[int, str], Awaitable[bool]], queries: list[str]
) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    stop = time.monotonic() + duration_s

    async def one(index: int) -> None:
        nonlocal errors
        i = index
        while time.monotonic() < stop:
            q = queries[i % len(queries)]
            i += clients
            started = time.perf_counter()
            ok = await call(index, q)
            latencies.append((time.perf_counter() - started) * 1000)
            if not ok:
                errors += 1

    started = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(clients)))
    elapsed = time.monotonic() - started
    return {"clients": clients, "requests": len(latencies), "errors": errors,
            "rps": round(len(latencies) / elapsed, 1), "latency_ms": summary(latencies)}


async def _gateway_cell(port: int, clients: int, duration_s: float, queries: list[str]) -> dict[str, Any]:
    conns = [RawClient(port) for _ in range(clients)]

    async def call(index: int, q: str) -> bool:
        status = await conns[index].post(orjson.dumps({"query": THROUGHPUT_QUERY, "variables": {"q": q}}))
        return status == 200

    try:
        return await _drive(clients, duration_s, call, queries)
    finally:
        for c in conns:
            await c.close()


async def _direct_cell(dsn: str, clients: int, duration_s: float, queries: list[str]) -> dict[str, Any]:
    """The statement the gateway sends for THROUGHPUT_QUERY, sent directly (autocommit, through PgBouncer)."""
    kwargs = {"prepare_threshold": None, "autocommit": True}
    async with AsyncConnectionPool(dsn, min_size=clients, max_size=clients, kwargs=kwargs, open=False) as pool:
        await pool.wait()

        async def call(index: int, q: str) -> bool:
            spec = SearchSpec(query=q)
            text, params = search_sql.date_page(spec, forward=True, size=20, cursor=None,
                                                extras=frozenset({"headline"}))
            async with pool.connection() as conn:
                cur = await conn.execute(text, params)
                rows = await cur.fetchall()
            return rows is not None

        return await _drive(clients, duration_s, call, queries)


def run(args: argparse.Namespace) -> int:
    layout = stack.StackLayout.load(Path(args.dir).resolve())
    if layout is None:
        say(f"no stack in {args.dir}: run 'python -m ops stack up' and load a corpus first")
        return 2
    env = {**layout.gateway_env(), "GATEWAY_ROUTING_METADATA": "false", "GATEWAY_SEARCH_LOG_SAMPLE": "0"}
    rng = random.Random(7)  # noqa: S311 (a reproducible query mix, not a secret)
    queries = zipf_sequence(query_population(500, rng), 20_000, 1.1, rng)
    report: dict[str, Any] = {"machine": machine(), "method": __doc__, "clients": args.clients,
                              "duration_s": args.duration}
    f_s = measure_f()
    report["F_ms"] = round(f_s * 1000, 3)
    say(f"F = {f_s * 1000:.3f} ms")

    cpu: dict[str, Any] = {}
    for label, extra in (("cache_on", {}), ("cache_off", {"GATEWAY_CACHE_ENABLED": "false"})):
        with served_gateway({**env, **extra}, workers=1) as served:
            figures = measure_kinds(served, f_s, requests=args.cpu_requests)
        cpu[label] = {f.name: {"cpu_ms": round(f.cpu_ms, 3), "F": round(f.in_f, 2)} for f in figures}
        for f in figures:
            say(f"cpu {label:9s} {f.name:12s} {f.cpu_ms:7.2f} ms {f.in_f:6.2f} F")
    report["cpu_per_request"] = cpu

    cells: list[dict[str, Any]] = []
    dsn = layout.bouncer_dsn(layout.node_names[1] if len(layout.node_names) > 1 else layout.node_names[0])
    for clients in args.clients:
        cell = asyncio.run(_direct_cell(dsn, clients, args.duration, queries))
        cells.append({"what": "direct_sql", **cell})
        say(f"direct SQL  {clients:3d} clients: {cell['rps']:7.1f} req/s p50 {cell['latency_ms']['p50']:.1f} ms")
    for workers in sorted({1, args.workers}):
        for label, extra in (("cache_off", {"GATEWAY_CACHE_ENABLED": "false"}), ("cache_on", {})):
            with served_gateway({**env, **extra}, workers=workers) as served:
                port = int(served.url.rsplit(":", 1)[1])
                for clients in args.clients:
                    cell = asyncio.run(_gateway_cell(port, clients, args.duration, queries))
                    cells.append({"what": f"gateway_{label}", "workers": workers, **cell})
                    say(f"gateway {label:9s} w={workers} {clients:3d} clients: {cell['rps']:7.1f} req/s "
                        f"p50 {cell['latency_ms']['p50']:.1f} ms errors {cell['errors']}")
    report["throughput"] = cells
    path = write_report(args.out or "serving", report)
    say(f"report: {path}")
    return 0


def main(rest: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops bench serving", description=__doc__)
    parser.add_argument("--dir", default=str(stack.DEFAULT_DIR))
    parser.add_argument("--clients", nargs="+", type=int, default=[1, 16, 64])
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per cell")
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--cpu-requests", type=int, default=300, help="requests per CPU figure")
    parser.add_argument("--out", help="name of the JSON file under docs/bench/")
    return run(parser.parse_args(rest))


__all__ = ["SEARCH_20", "main"]
