"""``python -m ops bench partitions``: the same SQL on flat, yearly and monthly copies, planning warm and cold."""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from ops import stack
from ops.bench.cases import PAGE_SIZE, Case, cases, cursor_key_at, ensure_corpus
from ops.bench.copies import (
    WIDTHS,
    build_copy,
    check_disk,
    copy_size,
    direct_dsn,
    drop_schemas,
    on_table,
    plan_times,
)
from ops.bench.report import (
    Conn,
    fetch_all,
    machine,
    say,
    scalar,
    server_info,
    summary,
    timed_ms,
    write_report,
)


def bench_partitions(args: argparse.Namespace) -> int:
    """Flat table vs yearly vs monthly partitions: build time, size, query p50/p95 and planning time."""
    from schema import search_sql

    at_start = machine()  # the code measured is the code at the start (others edit schema/ meanwhile)
    layout = stack.up(Path(args.dir))
    total = ensure_corpus(layout, args.pages)
    schemas = {w: f"bench_{'flat' if w == 'none' else w}" for w in args.widths}
    builds: dict[str, Any] = {}
    results: list[dict[str, Any]] = []
    started = time.perf_counter()
    with psycopg.connect(direct_dsn(layout), autocommit=True) as conn:
        info = server_info(conn)
        try:
            for width, schema in schemas.items():
                if args.reuse and scalar(conn, sql.SQL("SELECT to_regclass({})").format(
                        sql.Literal(f"{schema}.meeting_page"))) is not None:
                    builds[width] = {"schema": schema, "width": width, "reused": True,
                                     "size": copy_size(conn, f"{schema}.meeting_page")}
                    continue
                check_disk(layout)
                say(f"building {schema} ({width})")
                builds[width] = build_copy(conn, schema, width)
                say(json.dumps(builds[width]))
            todo = cases(conn, args.only)
            orders = [*args.orders, "COUNT"]
            for case in todo:
                for order in orders:
                    spec = case.spec("NEWEST" if order == "COUNT" else order)
                    for depth in (args.depths if order != "COUNT" else [1]):
                        key = cursor_key_at(conn, spec, (depth - 1) * PAGE_SIZE) if depth > 1 else None
                        if depth > 1 and key is None:
                            continue
                        if order == "COUNT":
                            q, p = search_sql.count_query(spec)
                        else:
                            build = search_sql.relevance_page if order == "RELEVANCE" else search_sql.date_page
                            q, p = build(spec, forward=True, size=PAGE_SIZE, cursor=key)
                        texts = {w: on_table(conn, q, f"{s}.meeting_page") for w, s in schemas.items()}
                        row = _partition_cell(conn, layout, case, order, depth, texts, p, args)
                        results.append(row)
                        say(json.dumps(row))
        finally:
            kept = WIDTHS if args.keep == [] else (args.keep or [])
            gone = [s for w, s in schemas.items() if w not in kept]
            drop_schemas(conn, gone)
            say(f"dropped {', '.join(gone) or 'nothing'}")
    report = {"benchmark": "partitions", "pages": total, "runs": args.runs, "machine": at_start, "machine_at_end": machine(), "server": info,
              "seconds": round(time.perf_counter() - started), "builds": builds, "results": results,
              "note": "UNLOGGED copies on the primary, loaded with INSERT ... SELECT of the stored vectors; "
                      "indexes built after the load; raw SQL over a direct connection"}
    out = write_report(args.out or "partitions", report)
    say(markdown_partitions(report))
    say(f"\nwritten to {out}")
    return 0


def _partition_cell(conn: Conn, layout: stack.StackLayout, case: Case, order: str, depth: int,
                    texts: dict[str, str], params: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    widths = list(texts)
    # Cold planning first (a new backend has empty catalog caches: what a fresh pooled connection pays).
    cold: dict[str, list[tuple[float, float | None]]] = {w: [] for w in widths}
    for i in range(args.cold_runs):
        for w in widths[i % len(widths):] + widths[: i % len(widths)]:
            with psycopg.connect(direct_dsn(layout), autocommit=True) as fresh:
                cold[w].append(plan_times(fresh, texts[w], params, analyze=True))
    for w in widths:
        conn.execute(texts[w], params).fetchall()  # warm
    samples: dict[str, list[float]] = {w: [] for w in widths}
    plans: dict[str, list[float]] = {w: [] for w in widths}
    for i in range(args.runs):
        for w in widths[i % len(widths):] + widths[: i % len(widths)]:  # rotate who goes first
            text = texts[w]
            samples[w].append(timed_ms(functools.partial(fetch_all, conn, text, params)))
    for i in range(max(3, args.runs // 3)):
        for w in widths[i % len(widths):] + widths[: i % len(widths)]:
            plans[w].append(plan_times(conn, texts[w], params, analyze=False)[0])
    return {
        "class": case.name, "query": case.query, "order": order, "page": depth,
        "widths": {
            w: {**summary(samples[w]),
                "plan_warm_p50": round(statistics.median(plans[w]), 2),
                "plan_cold_p50": round(statistics.median(c[0] for c in cold[w]), 2) if cold[w] else None,
                "exec_cold_p50": round(statistics.median(c[1] or 0 for c in cold[w]), 2) if cold[w] else None}
            for w in widths},
    }


def markdown_partitions(report: dict[str, Any]) -> str:
    widths = list(report["builds"])
    lines = ["| width | partitions | build s | insert s | GIN s | heap+TOAST MB | GIN MB | btree MB | total MB |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for w, b in report["builds"].items():
        s, mb = b.get("seconds", {}), {k: v / 2**20 for k, v in b["size"].items()}
        lines.append(f"| {w} | {b.get('partitions', '')} | {b.get('total_seconds', '')} | {s.get('insert_select', '')} | "
                     f"{s.get('gin (search_vector)', '')} | {mb['heap_toast']:.0f} | {mb['gin']:.0f} | {mb['btree']:.0f} | "
                     f"{mb['total']:.0f} |")
    lines += ["", "p50 / p95 ms (plan warm p50 / plan cold p50 ms)", "",
              "| class | order | page | " + " | ".join(widths) + " |",
              "| --- | --- | ---: | " + " | ".join("---" for _ in widths) + " |"]
    for r in report["results"]:
        cells = []
        for w in widths:
            c = r["widths"][w]
            cells.append(f"{c['p50']:.1f} / {c['p95']:.1f} ({c['plan_warm_p50']:.1f} / {c['plan_cold_p50']:.1f})")
        lines.append(f"| {r['class']} | {r['order']} | {r['page']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
