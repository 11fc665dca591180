"""``python -m ops bench cache``: 10,000 searches from a Zipf distribution of queries, cache on vs off.

Two gateways run side by side on the same stack: one with the cache (Redis when the stack has it), one
without. Each search of the sequence goes to both, alternately first, so noise hits both alike. A request is
a cache hit when it ran no SQL statement (``extensions.statements == 0``).
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path
from typing import Any

import httpx

from ops import stack
from ops.bench.cases import ensure_corpus
from ops.bench.report import machine, summary, write_report
from ops.common.gateway_process import GatewayProcess

WORDS = (
    "council zoning budget hearing variance ordinance cannabis dispensary liquor license permit parcel sewer "
    "water street park police fire library housing rental appeal annexation election audit pension tree "
    "bridge paving transit school airport noise fireworks solar landfill wetland easement subdivision"
).split()
OFF_EVERY = 10
QUERY = """query Bench($q: String!) { search(query: $q, first: 20) {
  edges { cursor headline node { sourceId document { meetingName municipality { name } } } } } }"""


PHRASES = (
    '"public hearing"', '"consent agenda"', '"liquor license"', '"conditional use permit"', '"site plan review"',
    '"budget amendment"', '"zoning variance"', '"affordable housing"', '"short-term rental"', '"motion carried"',
)


def query_population(n: int, rng: random.Random) -> list[str]:
    """``n`` distinct queries: single words, pairs, real phrases and exclusions, as people type them.

    Phrases come from the corpus's own phrase list: a phrase of two random words matches almost nothing and
    is the pathological case measured by ``bench search``, not a popular query.
    """
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        a, b = rng.sample(WORDS, 2)
        form = rng.random()
        q = (
            a if form < 0.3
            else f"{a} {b}" if form < 0.75
            else f"{rng.choice(PHRASES)} {a}" if form < 0.9
            else f"{a} -{b}"
        )
        if q not in seen:
            seen.add(q)
            out.append(q)
    return out


def zipf_sequence(population: list[str], count: int, s: float, rng: random.Random) -> list[str]:
    weights = [1.0 / (rank**s) for rank in range(1, len(population) + 1)]
    return rng.choices(population, weights=weights, k=count)


def run(args: argparse.Namespace) -> int:
    layout = stack.up(Path(args.dir))
    pages = ensure_corpus(layout, args.pages)
    rng = random.Random(args.seed)  # noqa: S311 - a benchmark workload, not security
    population = query_population(args.distinct, rng)
    sequence = zipf_sequence(population, args.searches, args.zipf, rng)
    base = {**layout.gateway_env(), "GATEWAY_ROUTING_METADATA": "false", "GATEWAY_SEARCH_LOG_SAMPLE": "0"}
    on_env = {**base, "GATEWAY_CACHE_ENABLED": "true"}
    off_env = {**base, "GATEWAY_CACHE_ENABLED": "false"}
    hits_ms: list[float] = []
    misses_ms: list[float] = []
    off_ms: list[float] = []
    with GatewayProcess(on_env, port=args.port) as on, GatewayProcess(off_env, port=args.port + 1) as off, \
            httpx.Client(timeout=60) as http:
        http.post(f"http://127.0.0.1:{on.port}/graphql", json={"query": "mutation { __typename }"})

        def call(port: int, q: str) -> tuple[float, dict[str, Any]]:
            started = time.perf_counter()
            resp = http.post(f"http://127.0.0.1:{port}/graphql", json={"query": QUERY, "variables": {"q": q}})
            elapsed = (time.perf_counter() - started) * 1000
            body: dict[str, Any] = resp.json()
            if body.get("errors"):
                raise RuntimeError(f"{q!r}: {body['errors']}")
            return elapsed, body

        for i, q in enumerate(sequence):
            # The cache-off baseline samples every OFF_EVERY-th search of the same sequence (a full search costs
            # a few hundred ms here; 10,000 of them would add most of an hour for no better a median).
            order = [(on.port, True), (off.port, False)] if i % 2 == 0 else [(off.port, False), (on.port, True)]
            if i % OFF_EVERY:
                order = [(on.port, True)]
            for port, cached in order:
                ms, body = call(port, q)
                if not cached:
                    off_ms.append(ms)
                elif body["extensions"]["statements"] == 0:
                    hits_ms.append(ms)
                else:
                    misses_ms.append(ms)
            if (i + 1) % 1000 == 0:
                print(f"{i + 1:,} searches: hit rate so far {len(hits_ms) / (i + 1):.1%}", flush=True)
    total = len(hits_ms) + len(misses_ms)
    report = {
        "benchmark": "cache",
        "pages": pages,
        "searches": total,
        "distinct_queries": args.distinct,
        "zipf_s": args.zipf,
        "ttl_s": 60,
        "backend": "redis" if layout.redis_port else "memory",
        "hit_rate": round(len(hits_ms) / total, 4),
        "cached_hits_ms": summary(hits_ms),
        "cache_on_misses_ms": summary(misses_ms),
        "cache_on_all_ms": summary(hits_ms + misses_ms),
        "cache_off_ms": summary(off_ms),
        "machine": machine(),
    }
    out = write_report("cache", report)
    print(
        f"hit rate {report['hit_rate']:.1%}; cached p50 {report['cached_hits_ms']['p50']} ms; "
        f"cache off p50 {report['cache_off_ms']['p50']} ms; written to {out}"
    )
    return 0


def main(rest: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops bench cache")
    parser.add_argument("--dir", default=str(stack.DEFAULT_DIR))
    parser.add_argument("--pages", type=int, default=1_000_000)
    parser.add_argument("--searches", type=int, default=10_000)
    parser.add_argument("--distinct", type=int, default=500)
    parser.add_argument("--zipf", type=float, default=1.1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--port", type=int, default=8741)
    return run(parser.parse_args(rest))
