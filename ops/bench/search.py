"""``python -m ops bench search``: the gateway over HTTP against the same SQL sent directly, interleaved."""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

from ops import stack
from ops.bench.cases import (
    BREAKDOWN,
    FLOOR_GRAPHQL,
    GRAPHQL,
    MINIMAL_GRAPHQL,
    PAGE_SIZE,
    TARGET_DEEP_RATIO,
    TARGET_GATEWAY_RATIO,
    TARGET_NEWEST_P95_MS,
    TARGET_RELEVANCE_P95_MS,
    Case,
    cases,
    cursor_key_at,
    ensure_corpus,
    match_count,
)
from ops.bench.report import Conn, machine, say, server_info, summary, timed_ms, write_report
from ops.common.gateway_process import GatewayProcess


class RawClient:
    """The gateway's statements for one result page, sent directly through PgBouncer, alternating replicas
    (the gateway's router also spreads reads over both)."""

    def __init__(self, dsns: list[str]) -> None:
        self.conns = [psycopg.connect(d, autocommit=True, prepare_threshold=None) for d in dsns]
        self.turn = 0

    def close(self) -> None:
        for c in self.conns:
            c.close()

    def next_conn(self) -> Conn:
        self.turn += 1
        return self.conns[self.turn % len(self.conns)]

    def search_only(self, query: sql.Composed, params: dict[str, Any]) -> None:
        self.next_conn().execute(query, params).fetchall()

    def page(self, query: sql.Composed, params: dict[str, Any], spec: Any) -> None:
        from schema import loaders, search_sql

        conn = self.next_conn()
        rows = conn.execute(query, params).fetchall()
        keys = [r for r in rows if r[0] is not None][:PAGE_SIZE]
        if not keys:
            return
        conn = self.next_conn()
        conn.execute(search_sql.headline_query(),
                     {"q": spec.query, "ids": [r[0] for r in keys], "dates": [r[1] for r in keys]}).fetchall()
        conn = self.next_conn()
        docs = conn.execute(
            sql.SQL("SELECT {} FROM public.meeting_document d WHERE d.id = ANY (%(ids)s)").format(
                loaders.DOCUMENT_COLUMNS), {"ids": sorted({r[2] for r in keys})}).fetchall()
        conn = self.next_conn()
        conn.execute(
            sql.SQL("SELECT {} FROM public.municipality m WHERE m.id = ANY (%(ids)s)").format(
                loaders.MUNICIPALITY_COLUMNS), {"ids": sorted({d[1] for d in docs})}).fetchall()


def _interleaved(a: Callable[[], Any], b: Callable[[], Any], runs: int) -> tuple[list[float], list[float]]:
    """Time ``a`` and ``b`` alternately in ABBA order, so drift and noise hit both alike."""
    sa: list[float] = []
    sb: list[float] = []
    for i in range(runs):
        if i % 2 == 0:
            sa.append(timed_ms(a))
            sb.append(timed_ms(b))
        else:
            sb.append(timed_ms(b))
            sa.append(timed_ms(a))
    return sa, sb


def bench_search(args: argparse.Namespace) -> int:
    """Gateway vs raw SQL for each query class, order and page depth."""
    from schema import search_sql
    from schema.cursors import CursorCodec, fingerprint

    at_start = machine()  # the code measured is the code at the start (others edit schema/ meanwhile)
    layout = stack.up(Path(args.dir))
    total = ensure_corpus(layout, args.pages)
    secret = "bench-secret"  # noqa: S105  # signs cursors for this run only
    env = {**layout.gateway_env(), "GATEWAY_CURSOR_SECRET": secret, "GATEWAY_CACHE_ENABLED": "false",
           "GATEWAY_ROUTING_METADATA": "false"}
    codec = CursorCodec(hashlib.sha256(secret.encode()).digest())
    replicas = [layout.bouncer_dsn(n) for n in layout.node_names[1:]] or [layout.bouncer_dsn(layout.node_names[0])]
    admin_dsn = layout.bouncer_dsn("node1_session", user="postgres")
    results: list[dict[str, Any]] = []
    shares: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    with psycopg.connect(admin_dsn, autocommit=True, prepare_threshold=None) as adm:
        info = server_info(adm)
        todo = cases(adm, args.only)
        for case in todo:
            n = match_count(adm, case)
            shares[case.name] = {"query": case.query, "filter": case.gql_filter, "matches": n,
                                 "share_pct": round(100 * n / total, 3)}
            say(json.dumps({"class": case.name, **shares[case.name]}))
    raw = RawClient(replicas)
    try:
        with GatewayProcess(env, port=args.port) as gw, \
                httpx.Client(base_url=f"http://127.0.0.1:{gw.port}", timeout=60) as http, \
                psycopg.connect(admin_dsn, autocommit=True, prepare_threshold=None) as adm:

            def floor() -> None:
                http.post("/graphql", json={"query": FLOOR_GRAPHQL}).raise_for_status()

            for _ in range(5):
                floor()
            floor_ms = [timed_ms(floor) for _ in range(max(args.runs, 30))]
            say(json.dumps({"floor": summary(floor_ms)}))
            for case in todo:
                for order in args.orders:
                    spec = case.spec(order)
                    bound = fingerprint(*spec.binding())
                    for depth in args.depths:
                        cell = {"class": case.name, "query": case.query, "order": order, "page": depth}
                        key = cursor_key_at(adm, spec, (depth - 1) * PAGE_SIZE) if depth > 1 else None
                        if depth > 1 and key is None:
                            skipped = "fewer results"
                            results.append({**cell, "skipped": skipped})
                            say(json.dumps(results[-1]))
                            continue
                        after = codec.encode(bound, key) if key is not None else None
                        variables = {"q": case.query, "f": case.gql_filter, "o": order, "a": after}

                        def via_gateway(variables: dict[str, Any] = variables) -> None:
                            r = http.post("/graphql", json={"query": GRAPHQL, "variables": variables})
                            body = r.json()
                            if r.status_code != 200 or body.get("errors"):
                                raise RuntimeError(f"gateway error: {r.text[:500]}")

                        build = search_sql.relevance_page if order == "RELEVANCE" else search_sql.date_page
                        q, p = build(spec, forward=True, size=PAGE_SIZE, cursor=key)

                        def via_sql(q: sql.Composed = q, p: dict[str, Any] = p, spec: Any = spec) -> None:
                            raw.page(q, p, spec)

                        for _ in range(2):  # warm both paths (and both replicas)
                            via_gateway()
                            via_sql()
                        gw_ms, sql_ms = _interleaved(via_gateway, via_sql, args.runs)
                        g, s = summary(gw_ms), summary(sql_ms)
                        row = {**cell, "gateway": g, "sql": s,
                               "ratio_p50": round(g["p50"] / s["p50"], 2) if s["p50"] else None,
                               "overhead_p50_ms": round(g["p50"] - s["p50"], 2)}
                        results.append(row)
                        say(json.dumps(row))
            breakdown = overhead_breakdown(http, raw, [c for c in todo if any(c.name == b[0] for b in BREAKDOWN)],
                                           args.runs)
    finally:
        raw.close()
    report = {"benchmark": "search", "pages": total, "runs": args.runs, "machine": at_start, "machine_at_end": machine(), "server": info,
              "seconds": round(time.perf_counter() - started), "classes": shares,
              "floor_graphql_typename": summary(floor_ms), "results": results, "breakdown": breakdown}
    report["targets"] = evaluate_targets(results)
    out = write_report(args.out or "search", report)
    say(markdown_search(report))
    say(f"\nwritten to {out}")
    return 0


def overhead_breakdown(http: httpx.Client, raw: RawClient, todo: list[Case], runs: int) -> list[dict[str, Any]]:
    """Where the gateway's time goes, first page, five variants interleaved: the GraphQL/HTTP floor, the
    gateway asked for cursors only (the search statement, no dataloaders), the search statement alone over
    psycopg, and the full page both ways."""
    from schema import search_sql

    out = []
    for case in todo:
        for name, order in BREAKDOWN:
            if name != case.name:
                continue
            spec = case.spec(order)
            build = search_sql.relevance_page if order == "RELEVANCE" else search_sql.date_page
            q, p = build(spec, forward=True, size=PAGE_SIZE, cursor=None)
            variables = {"q": case.query, "f": case.gql_filter, "o": order, "a": None}

            def post(query: str, variables: dict[str, Any] = variables) -> None:
                r = http.post("/graphql", json={"query": query, "variables": variables})
                if r.status_code != 200 or r.json().get("errors"):
                    raise RuntimeError(f"gateway error: {r.text[:500]}")

            variants: dict[str, Callable[[], None]] = {
                "graphql floor ({ __typename })": lambda: post(FLOOR_GRAPHQL, {}),
                "gateway, cursors only": functools.partial(post, MINIMAL_GRAPHQL),
                "SQL, search statement only": functools.partial(raw.search_only, q, p),
                "gateway, full page": functools.partial(post, GRAPHQL),
                "SQL, full page (4 statements)": functools.partial(raw.page, q, p, spec),
            }
            names = list(variants)
            samples: dict[str, list[float]] = {n: [] for n in names}
            for n in names:
                variants[n]()
            for i in range(runs):
                for n in names[i % len(names):] + names[: i % len(names)]:
                    samples[n].append(timed_ms(variants[n]))
            row = {"class": case.name, "order": order, "page": 1, "variants": {n: summary(v) for n, v in samples.items()}}
            out.append(row)
            say(json.dumps(row))
    return out


def _cell(results: list[dict[str, Any]], cls: str, order: str, page: int) -> dict[str, Any] | None:
    for r in results:
        if r["class"] == cls and r["order"] == order and r["page"] == page and "skipped" not in r:
            return r
    return None


def evaluate_targets(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Each target, cell by cell, on the gateway's figures (what a client sees)."""
    checks: dict[str, list[dict[str, Any]]] = {
        "newest_page1_p95_ms": [], "relevance_page1_p95_ms": [], "page1000_vs_page2_p50": [],
        "gateway_vs_sql_p50": []}
    for r in results:
        if "skipped" in r:
            continue
        if r["page"] == 1 and r["order"] == "NEWEST":
            checks["newest_page1_p95_ms"].append(
                {"class": r["class"], "value": r["gateway"]["p95"], "ok": r["gateway"]["p95"] <= TARGET_NEWEST_P95_MS})
        if r["page"] == 1 and r["order"] == "RELEVANCE":
            checks["relevance_page1_p95_ms"].append(
                {"class": r["class"], "value": r["gateway"]["p95"],
                 "ok": r["gateway"]["p95"] <= TARGET_RELEVANCE_P95_MS})
        if r["page"] == 1000:
            two = _cell(results, r["class"], r["order"], 2)
            if two:
                ratio = r["gateway"]["p50"] / two["gateway"]["p50"]
                checks["page1000_vs_page2_p50"].append(
                    {"class": r["class"], "order": r["order"], "value": round(ratio, 2),
                     "ok": ratio <= TARGET_DEEP_RATIO})
        checks["gateway_vs_sql_p50"].append(
            {"class": r["class"], "order": r["order"], "page": r["page"], "value": r["ratio_p50"],
             "ok": (r["ratio_p50"] or 0) <= TARGET_GATEWAY_RATIO})
    return {k: {"met": all(c["ok"] for c in v), "failed": [c for c in v if not c["ok"]], "cells": len(v)}
            for k, v in checks.items()}


def markdown_search(report: dict[str, Any]) -> str:
    lines = [
        f"{report['pages']:,} pages, {report['runs']} runs per cell, {report['machine']['cpus']} cores; "
        f"times in ms.",
        "",
        "| class | share | order | page | gateway p50 | gateway p95 | SQL p50 | SQL p95 | ratio p50 |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in report["results"]:
        share = report["classes"].get(r["class"], {}).get("share_pct", "")
        head = f"| {r['class']} | {share}% | {r['order']} | {r['page']} |"
        if "skipped" in r:
            lines.append(f"{head} — | — | — | — | {r['skipped']} |")
            continue
        g, s = r["gateway"], r["sql"]
        lines.append(f"{head} {g['p50']:.1f} | {g['p95']:.1f} | {s['p50']:.1f} | {s['p95']:.1f} | {r['ratio_p50']} |")
    for b in report.get("breakdown", []):
        lines += ["", f"Breakdown, {b['class']} {b['order']} page 1 (p50 / p95 ms):", ""]
        lines += [f"- {n}: {v['p50']:.1f} / {v['p95']:.1f}" for n, v in b["variants"].items()]
    return "\n".join(lines)
