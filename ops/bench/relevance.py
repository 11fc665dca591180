"""``python -m ops bench relevance``: bounded-candidate ranking, ``ts_rank`` over every match, and RUM's ``<=>``."""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from ops import stack
from ops.bench.cases import PAGE_SIZE, Case, cases, ensure_corpus, match_count
from ops.bench.copies import (
    build_copy,
    check_disk,
    copy_size,
    direct_dsn,
    drop_schemas,
    indexes_used,
    on_table,
    plan_times,
    run_sql,
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

RELEVANCE_TERMS = ("common term", "medium term", "rare term", "very rare term", "phrase", "or")
TSQ_TEXT = "websearch_to_tsquery('public.civic'::regconfig, %(q)s)"
RANK_ALL = f"""SELECT p.id, p.meeting_date, ts_rank(p.search_vector, {TSQ_TEXT}, 1) AS rank
  FROM {{t}} p
 WHERE p.search_vector @@ {TSQ_TEXT}
 ORDER BY rank DESC, p.meeting_date DESC, p.id DESC
 LIMIT 21"""
RUM_ORDER = f"""SELECT p.id, p.meeting_date, p.search_vector <=> {TSQ_TEXT} AS distance
  FROM {{t}} p
 WHERE p.search_vector @@ {TSQ_TEXT}
 ORDER BY p.search_vector <=> {TSQ_TEXT}
 LIMIT 21"""


def rum_available(conn: Conn) -> bool:
    return bool(scalar(conn, sql.SQL("SELECT count(*) FROM pg_available_extensions WHERE name = 'rum'")))


def bench_relevance(args: argparse.Namespace) -> int:
    """Bounded candidates (current) vs ts_rank over every match vs RUM, on one flat copy, interleaved."""
    from schema import search_sql

    at_start = machine()  # the code measured is the code at the start (others edit schema/ meanwhile)
    layout = stack.up(Path(args.dir))
    total = ensure_corpus(layout, args.pages)
    schema = args.schema
    t = f"{schema}.meeting_page"
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    with psycopg.connect(direct_dsn(layout), autocommit=True) as conn:
        info = server_info(conn)
        rum = rum_available(conn)
        build: dict[str, Any] = {}
        try:
            if args.reuse and scalar(conn, sql.SQL("SELECT to_regclass({})").format(sql.Literal(t))) is not None:
                build = {"reused": True}
            else:
                check_disk(layout)
                say(f"building {schema}")
                build = build_copy(conn, schema, "none")
            if rum:
                run_sql(conn, f"CREATE EXTENSION IF NOT EXISTS rum SCHEMA {schema}")
                if not scalar(conn, sql.SQL("SELECT count(*) FROM pg_indexes WHERE schemaname = {} AND "
                                             "indexdef LIKE '%USING rum%'").format(sql.Literal(schema))):
                    step = time.perf_counter()
                    run_sql(conn, f"CREATE INDEX meeting_page_rum ON {t} USING rum (search_vector {schema}.rum_tsvector_ops)")
                    build["rum_index_seconds"] = round(time.perf_counter() - step, 1)
                    run_sql(conn, f"ANALYZE {t}")
                build["size"] = copy_size(conn, t)
            say(json.dumps(build))
            for case in cases(conn, [c for c in RELEVANCE_TERMS if not args.only or c in args.only]):
                spec = case.spec("RELEVANCE")
                n = match_count(conn, case)
                q, p = search_sql.relevance_page(spec, forward=True, size=PAGE_SIZE, cursor=None)
                approaches: dict[str, tuple[str, dict[str, Any]]] = {
                    "bounded (current)": (on_table(conn, q, t), p),
                    "ts_rank all matches": (RANK_ALL.format(t=t), {"q": case.query}),
                }
                if rum:
                    approaches["RUM <=>"] = (RUM_ORDER.format(t=t).replace("<=>", f"OPERATOR({schema}.<=>)"),
                                             {"q": case.query})
                row = _relevance_cell(conn, case, n, total, approaches, args)
                results.append(row)
                say(json.dumps(row))
        finally:
            if args.keep is None:
                drop_schemas(conn, [schema])
                if rum:
                    run_sql(conn, "DROP EXTENSION IF EXISTS rum")
                say(f"dropped {schema}")
    report = {"benchmark": "relevance", "pages": total, "runs": args.runs, "machine": at_start, "machine_at_end": machine(), "server": info,
              "rum_available": rum, "seconds": round(time.perf_counter() - started), "build": build,
              "results": results,
              "note": "flat UNLOGGED copy with the same B-tree and GIN indexes (plus RUM when available); raw "
                      "SQL over a direct connection to the primary; overlap = share of the exact top 20 "
                      "(ts_rank over every match) that the approach also returns in its first 20"}
    out = write_report(args.out or "relevance", report)
    say(markdown_relevance(report))
    say(f"\nwritten to {out}")
    return 0


def _relevance_cell(conn: Conn, case: Case, matches: int, total: int,
                    approaches: dict[str, tuple[str, dict[str, Any]]], args: argparse.Namespace) -> dict[str, Any]:
    names = list(approaches)
    tops: dict[str, list[str]] = {}
    for name, (text, params) in approaches.items():
        rows = conn.execute(text, params).fetchall()  # warm, and the answer
        rows = [r for r in rows if r[0] is not None]
        if name == "bounded (current)":
            rows.sort(key=lambda r: (r[8], r[1], r[0]), reverse=True)
        tops[name] = [str(r[0]) for r in rows[:PAGE_SIZE]]
    exact = set(tops["ts_rank all matches"])
    samples: dict[str, list[float]] = {n: [] for n in names}
    plans: dict[str, list[float]] = {n: [] for n in names}
    heavy = matches > 50_000
    runs = args.heavy_runs if heavy else args.runs
    for i in range(runs):
        for n in names[i % len(names):] + names[: i % len(names)]:
            text, params = approaches[n]
            samples[n].append(timed_ms(functools.partial(fetch_all, conn, text, params)))
    used: dict[str, list[str]] = {}
    for n in names:
        text, params = approaches[n]
        plans[n].append(plan_times(conn, text, params, analyze=False)[0])
        doc = scalar(conn, f"EXPLAIN (FORMAT JSON) {text}", params)
        used[n] = indexes_used((json.loads(doc) if isinstance(doc, str) else doc)[0]["Plan"])
    return {
        "class": case.name, "query": case.query, "matches": matches, "share_pct": round(100 * matches / total, 3),
        "approaches": {n: {**summary(samples[n]), "plan_ms": round(plans[n][0], 2),
                           "overlap_with_exact_top20": round(len(exact & set(tops[n])) / max(1, len(exact)), 2),
                           "indexes": used[n]}
                       for n in names},
    }


def markdown_relevance(report: dict[str, Any]) -> str:
    names: list[str] = []
    for r in report["results"]:
        names += [n for n in r["approaches"] if n not in names]
    lines = ["p50 / p95 ms (overlap with the exact top 20)", "",
             "| class | query | share | " + " | ".join(names) + " |",
             "| --- | --- | ---: | " + " | ".join("---" for _ in names) + " |"]
    for r in report["results"]:
        cells = []
        for n in names:
            a = r["approaches"].get(n)
            cells.append(f"{a['p50']:.0f} / {a['p95']:.0f} ({a['overlap_with_exact_top20']:.0%})" if a else "—")
        lines.append(f"| {r['class']} | `{r['query']}` | {r['share_pct']}% | " + " | ".join(cells) + " |")
    return "\n".join(lines)
