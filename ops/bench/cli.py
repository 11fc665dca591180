"""``python -m ops bench …``: one entry point for every benchmark."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from ops import stack
from ops.bench.cases import ORDERS, PAGES
from ops.bench.copies import WIDTHS
from ops.bench.explain import bench_explain
from ops.bench.partitions import bench_partitions
from ops.bench.relevance import bench_relevance
from ops.bench.search import bench_search


def main(what: str, rest: list[str]) -> int:
    # Benchmarks with options of their own parse them themselves; the search-side ones share the parser below.
    if what == "load":
        from ops.bench import load

        return int(load.main(rest))
    if what == "cache":
        from ops.bench import cache

        return int(cache.main(rest))
    if what == "ingest":
        from ops.bench import ingest

        return int(ingest.main(rest))
    if what == "overload":
        from ops.bench import overload

        return int(overload.main(rest))
    if what == "serving":
        from ops.bench import serving

        return int(serving.main(rest))
    if what == "serving-cpu":
        from ops.bench import cpu_compare

        return int(cpu_compare.main(rest))
    if what == "compression":
        from ops.bench import compression

        return int(compression.main(rest))
    if what == "scale":
        from ops.bench import scale

        return int(scale.main(rest))
    if what == "tracing":
        from ops.bench import tracing

        return int(tracing.main(rest))
    parser = argparse.ArgumentParser(prog=f"python -m ops bench {what}")
    parser.add_argument("--dir", default=str(stack.DEFAULT_DIR))
    parser.add_argument("--pages", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--heavy-runs", type=int, default=7, help="relevance: runs for terms of >50,000 matches")
    parser.add_argument("--cold-runs", type=int, default=3, help="partitions: new backends per query and width")
    parser.add_argument("--port", type=int, default=8731)
    parser.add_argument("--only", action="append", help="a query class (repeatable); default: all")
    parser.add_argument("--orders", nargs="+", default=list(ORDERS), choices=ORDERS)
    parser.add_argument("--depths", nargs="+", type=int, default=None, help="result pages (default 1 2 50 1000)")
    parser.add_argument("--widths", nargs="+", default=list(WIDTHS), choices=WIDTHS)
    parser.add_argument("--keep", nargs="*", choices=WIDTHS, default=None,
                        help="keep the bench schemas (all, or those of the widths given); each takes about 9 GB")
    parser.add_argument("--schema", default="bench_rank", help="relevance: the flat copy to build or --reuse")
    parser.add_argument("--reuse", action="store_true", help="reuse bench schemas left by --keep")
    parser.add_argument("--out", help="name of the JSON file under docs/bench/ (default: the benchmark's name)")
    args = parser.parse_args(rest)
    if args.depths is None:
        args.depths = list(PAGES) if what in ("search", "explain") else [1, 2, 50]
    benches: dict[str, Callable[[argparse.Namespace], int]] = {
        "search": bench_search, "partitions": bench_partitions, "relevance": bench_relevance,
        "explain": bench_explain}
    if what not in benches:
        choices = [*benches, "cache", "ingest", "scale", "tracing", "load", "serving", "serving-cpu", "overload",
                   "compression"]
        print(f"unknown benchmark {what!r}; choose from {', '.join(choices)}", file=sys.stderr)
        return 2
    return benches[what](args)
