"""``python -m ops bench relevance``: RELEVANCE over every match, phrases and counts, selective NEWEST.

Three parts, on the stack's own ``public.meeting_page`` (stemmed vectors, RUM index), in one run:

1. **Relevance, direct SQL.** For each query class, the gateway's RELEVANCE statement (RUM ``<=>``) against the
   exact stock query: a GIN index, ``ORDER BY`` the documented score (``search_vector <=> rank_query`` computed
   row by row, the query with phrases loosened to AND) over every match, ``LIMIT 20``; the overlaps with
   ``ts_rank``'s top 20 and with the phrase operator's (``search_vector <=> query`` on the row) are reported
   beside it. A GIN index is built for the baseline; each approach runs in a transaction that drops the other
   index (rolled back), so each is measured with only its own index. Recall of the first 20 is reported two
   ways: ids in common with the exact top 20, and the share of returned rows whose score reaches the exact
   20th score (ties at the boundary make the first stricter than the order itself).
2. **Phrases and counts.** A plain ``count(*)`` of each phrase in direct SQL (GIN) against the gateway over HTTP
   (cache off): NEWEST and RELEVANCE first pages with ``totalCount``. Counts past 10,000 are compared with the
   exact count to show the estimate's real error next to the one it states.
3. **Selective NEWEST** over HTTP: no match, made-up and unlikely phrases, narrow filters, against common-word
   NEWEST searches, interleaved.

``--only recall`` runs part 1's recall check alone, without timings or the GIN baseline (``recall_part``).
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

from ops import stack
from ops.bench.cases import GRAPHQL, PAGE_SIZE, ensure_corpus
from ops.bench.copies import direct_dsn
from ops.bench.report import Conn, machine, say, scalar, server_info, summary, timed_ms, write_report
from ops.common.gateway_process import GatewayProcess

TSQ = "websearch_to_tsquery('public.civic'::regconfig, %(q)s)"
# The query the score is computed with: phrase operators made ANDs (schema.search_sql.RANK_TSQ, written out
# here so that the baseline does not borrow the code it checks).
RANK_TSQ = f"regexp_replace({TSQ}::text, '<(-|[0-9]+)>', '&', 'g')::tsquery"
RUM_INDEX = "public.meeting_page_rum_idx"
GIN_INDEX = "public.bench_gin_baseline"
# The documented score, RUM's distance (lower is better) to the rank query, computed row by row over every match
# found through GIN: the exact order the RUM index must reproduce. ts_rank is the same order for one word or an
# OR of words.
STOCK = f"""SELECT p.id, p.search_vector <=> {RANK_TSQ} AS d FROM public.meeting_page p
 WHERE p.search_vector @@ {TSQ} ORDER BY d, p.meeting_date DESC, p.id DESC LIMIT {PAGE_SIZE}"""
# For phrases, the operator with the phrase itself, on the row: the score before (which the index could not
# reproduce); its overlap with the results is reported, not required.
STOCK_PHRASE_ROW = f"""SELECT p.id FROM public.meeting_page p WHERE p.search_vector @@ {TSQ}
 ORDER BY p.search_vector <=> {TSQ}, p.meeting_date DESC, p.id DESC LIMIT {PAGE_SIZE}"""
STOCK_TS_RANK = f"""SELECT p.id, ts_rank(p.search_vector, {TSQ}) AS score FROM public.meeting_page p
 WHERE p.search_vector @@ {TSQ} ORDER BY score DESC, p.meeting_date DESC, p.id DESC LIMIT {PAGE_SIZE}"""
COUNT_ALL = f"SELECT count(*) FROM public.meeting_page p WHERE p.search_vector @@ {TSQ}"

RELEVANCE_CLASSES = {
    "common word": "council",
    "rare word": "wombat",
    "phrase": '"liquor license"',
    "phrase, unlikely": '"hearing variance"',
    "phrase, common words": '"budget motion"',
    "phrase and word": '"public hearing" zoning',
    "phrase, not": '"liquor license" -cannabis',
    "two words": "zoning variance",
    "or": "variance or easement",
    "not": "cannabis -license",
}
PHRASES = ('"liquor license"', '"hearing variance"', '"council water"', '"budget motion"')
COMMON_NEWEST = {"common: council": ("council", None), "common: budget": ("budget", None),
                 "common: zoning": ("zoning", None)}
SELECTIVE_NEWEST = {
    "no match": ("zyzzyva", None),
    "made-up phrase": ('"zyzzyva quokkaberry"', None),
    "unlikely phrase": ('"hearing variance"', None),
    "narrow filter: town": ("wombat", {"municipalities": ["@town"]}),
    "narrow filter: one month": ("easement", {"dateFrom": "2019-03-01", "dateTo": "2019-03-31"}),
}
COUNTED = """query C($q: String!, $o: SearchOrder) { search(query: $q, orderBy: $o, first: 20) {
  edges { cursor rank headline node { sourceId document { meetingName municipality { name } } } }
  pageInfo { hasNextPage endCursor } totalCount { value exact relativeError } } }"""


@contextmanager
def only_index(conn: Conn, keep: str) -> Iterator[None]:
    """A transaction in which the other full-text index is dropped; rolled back at the end."""
    other = GIN_INDEX if keep == RUM_INDEX else RUM_INDEX
    with conn.transaction(force_rollback=True):
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(*other.split("."))))
        yield


def _ensure_gin(conn: Conn) -> dict[str, Any]:
    if scalar(conn, "SELECT to_regclass(%s)", [GIN_INDEX]) is not None:
        return {"gin_reused": True}
    say("building the GIN baseline index")
    started = time.perf_counter()
    schema_name, index_name = GIN_INDEX.split(".")
    conn.execute(
        sql.SQL("CREATE INDEX {} ON {} USING gin (search_vector)").format(
            sql.Identifier(index_name), sql.Identifier(schema_name, "meeting_page")
        )
    )
    return {"gin_build_seconds": round(time.perf_counter() - started, 1)}


def _index_bytes(conn: Conn, parent: str) -> int:
    return int(scalar(conn, "SELECT coalesce(sum(pg_relation_size(relid)), 0) FROM pg_partition_tree(%s::regclass)",
                      [parent]) or 0)


def _sample(fn: Callable[[], Any], runs: int) -> list[float]:
    fn()  # warm
    return [timed_ms(fn) for _ in range(runs)]


def _run(conn: Conn, text: Any, params: dict[str, Any]) -> None:
    conn.execute(text, params).fetchall()


def relevance_part(conn: Conn, runs: int, heavy_runs: int) -> list[dict[str, Any]]:
    from schema import search_sql
    from schema.search_sql import SearchSpec

    out = []
    for name, q in RELEVANCE_CLASSES.items():
        spec = SearchSpec(query=q, order="RELEVANCE")
        text, params = search_sql.relevance_page(spec, forward=True, size=PAGE_SIZE, cursor=None)
        with only_index(conn, GIN_INDEX):
            matches = int(scalar(conn, COUNT_ALL, {"q": q}) or 0)
            exact = conn.execute(STOCK, {"q": q}).fetchall()
            n = heavy_runs if matches > 50_000 else runs
            stock_ms = _sample(functools.partial(_run, conn, STOCK, {"q": q}), n)
        with only_index(conn, RUM_INDEX):
            rows = [r for r in conn.execute(text, params).fetchall() if r[0] is not None][:PAGE_SIZE]
            rum_ms = _sample(functools.partial(_run, conn, text, params), n)
        with only_index(conn, GIN_INDEX):
            ts_rank_ids = {str(r[0]) for r in conn.execute(STOCK_TS_RANK, {"q": q}).fetchall()}
            phrase_row_ids = {str(r[0]) for r in conn.execute(STOCK_PHRASE_ROW, {"q": q}).fetchall()}
        got = [(str(r[0]), float(r[8])) for r in rows]
        exact_ids = {str(r[0]) for r in exact}
        ceiling = float(exact[-1][1]) if exact else 0.0
        cell = {
            "class": name, "query": q, "matches": matches,
            "stock_gin_score_all": summary(stock_ms), "rum": summary(rum_ms),
            "p95_ratio": round(summary(rum_ms)["p95"] / max(summary(stock_ms)["p95"], 1e-9), 3),
            "recall_ids": round(len(exact_ids & {g[0] for g in got}) / max(1, len(exact_ids)), 3),
            "recall_by_score": round(sum(1 for g in got if g[1] <= ceiling) / max(1, len(exact)), 3),
            "overlap_with_ts_rank_top20": round(len(ts_rank_ids & {g[0] for g in got}) / max(1, len(ts_rank_ids)), 3),
            "overlap_with_phrase_operator_top20": round(
                len(phrase_row_ids & {g[0] for g in got}) / max(1, len(phrase_row_ids)), 3),
        }
        out.append(cell)
        say(json.dumps(cell))
    return out


def recall_part(conn: Conn) -> list[dict[str, Any]]:
    """Recall of the first 20 only, no timings: a correctness check, light enough to run like a test.

    The exact order is the documented score computed on every match's row: with index scans off, the RUM index
    can only find the matches (a bitmap scan), and the score is evaluated per row and sorted, as the stock query
    does through GIN. The gateway's statement runs with the planner's own choices.
    """
    from schema import search_sql
    from schema.search_sql import SearchSpec

    out = []
    for name, q in RELEVANCE_CLASSES.items():
        spec = SearchSpec(query=q, order="RELEVANCE")
        text, params = search_sql.relevance_page(spec, forward=True, size=PAGE_SIZE, cursor=None)
        with conn.transaction(force_rollback=True):
            conn.execute("SET LOCAL enable_indexscan = off")
            matches = int(scalar(conn, COUNT_ALL, {"q": q}) or 0)
            exact = conn.execute(STOCK, {"q": q}).fetchall()
            phrase_row_ids = {str(r[0]) for r in conn.execute(STOCK_PHRASE_ROW, {"q": q}).fetchall()}
        plan = "\n".join(str(r[0]) for r in conn.execute(sql.SQL("EXPLAIN ") + text, params).fetchall())
        rows = [r for r in conn.execute(text, params).fetchall() if r[0] is not None][:PAGE_SIZE]
        got = [(str(r[0]), float(r[8])) for r in rows]
        exact_ids = {str(r[0]) for r in exact}
        ceiling = float(exact[-1][1]) if exact else 0.0
        cell = {
            "class": name, "query": q, "matches": matches, "rum_ordered_scan": "Order By: (search_vector <=>" in plan,
            "recall_ids": round(len(exact_ids & {g[0] for g in got}) / max(1, len(exact_ids)), 3),
            "recall_by_score": round(sum(1 for g in got if g[1] <= ceiling) / max(1, len(exact)), 3),
            "overlap_with_phrase_operator_top20": round(
                len(phrase_row_ids & {g[0] for g in got}) / max(1, len(phrase_row_ids)), 3),
        }
        out.append(cell)
        say(json.dumps(cell))
    return out


def _post(http: httpx.Client, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    r = http.post("/graphql", json={"query": query, "variables": variables})
    body: dict[str, Any] = r.json()
    if r.status_code != 200 or body.get("errors"):
        raise RuntimeError(f"gateway error: {r.text[:500]}")
    return body


def phrase_part(conn: Conn, http: httpx.Client, runs: int) -> list[dict[str, Any]]:
    out = []
    for q in PHRASES:
        with only_index(conn, GIN_INDEX):
            exact = int(scalar(conn, COUNT_ALL, {"q": q}) or 0)
            plain = _sample(functools.partial(_run, conn, COUNT_ALL, {"q": q}), runs)
        cell: dict[str, Any] = {"query": q, "matches": exact, "plain_count_gin_sql": summary(plain)}
        for order in ("NEWEST", "RELEVANCE"):
            v = {"q": q, "o": order}
            body = _post(http, COUNTED, v)
            ms = _sample(functools.partial(_post, http, COUNTED, v), runs)
            cell[f"gateway_{order.lower()}_with_count"] = summary(ms)
            cell[f"{order.lower()}_ratio_p95"] = round(summary(ms)["p95"] / max(summary(plain)["p95"], 1e-9), 3)
            cell["total_count"] = body["data"]["search"]["totalCount"]
        out.append(cell)
        say(json.dumps(cell))
    return out


def estimate_part(conn: Conn, http: httpx.Client) -> list[dict[str, Any]]:
    """The stated error of estimated counts next to the real one."""
    out = []
    for q in ("council", "budget", "zoning", "cannabis", "variance or easement"):
        with only_index(conn, GIN_INDEX):
            exact = int(scalar(conn, COUNT_ALL, {"q": q}) or 0)
        got = _post(http, COUNTED, {"q": q, "o": "NEWEST"})["data"]["search"]["totalCount"]
        cell = {"query": q, "exact": exact, "reported": got,
                "real_relative_error": round(abs(got["value"] - exact) / max(exact, 1), 3)}
        out.append(cell)
        say(json.dumps(cell))
    return out


def newest_part(conn: Conn, http: httpx.Client, runs: int) -> dict[str, Any]:
    town = str(scalar(conn, "SELECT subdomain FROM public.municipality ORDER BY id LIMIT 1 OFFSET 3"))
    cells = {**COMMON_NEWEST, **SELECTIVE_NEWEST}
    calls: dict[str, Callable[[], Any]] = {}
    for name, (q, flt) in cells.items():
        f = {k: ([town] if v == ["@town"] else v) for k, v in flt.items()} if flt else None
        calls[name] = functools.partial(_post, http, GRAPHQL, {"q": q, "f": f, "o": "NEWEST", "a": None})
        calls[name]()
    samples: dict[str, list[float]] = {n: [] for n in calls}
    names = list(calls)
    for i in range(runs):
        for n in names[i % len(names):] + names[: i % len(names)]:
            samples[n].append(timed_ms(calls[n]))
    common_p95 = max(summary(samples[n])["p95"] for n in COMMON_NEWEST)
    result: dict[str, dict[str, Any]] = {n: {**summary(samples[n]), "query": cells[n][0]} for n in names}
    for n in SELECTIVE_NEWEST:
        result[n]["ratio_to_common_p95"] = round(summary(samples[n])["p95"] / common_p95, 2)
    say(json.dumps(result))
    return {"common_p95_ms": common_p95, "cells": result}


def bench_relevance(args: argparse.Namespace) -> int:
    at_start = machine()
    layout = stack.up(Path(args.dir))
    total = ensure_corpus(layout, args.pages)
    started = time.perf_counter()
    report: dict[str, Any] = {"benchmark": "relevance", "pages": total, "runs": args.runs, "machine": at_start}
    secret = "bench-secret"  # noqa: S105  # signs cursors for this run only
    env = {**layout.gateway_env(), "GATEWAY_CURSOR_SECRET": secret, "GATEWAY_CACHE_ENABLED": "false",
           "GATEWAY_ROUTING_METADATA": "false"}
    only = args.only or ["relevance", "phrases", "estimates", "newest"]
    with psycopg.connect(direct_dsn(layout), autocommit=True) as conn:
        report["server"] = server_info(conn)
        if only == ["recall"]:
            report["recall"] = recall_part(conn)
            report["machine_at_end"] = machine()
            say(f"\nwritten to {write_report(args.out or 'relevance_recall', report)}")
            return 0
        report["build"] = {**_ensure_gin(conn), "rum_index_bytes": _index_bytes(conn, RUM_INDEX),
                           "gin_index_bytes": _index_bytes(conn, GIN_INDEX)}
        say(json.dumps(report["build"]))
        try:
            if "relevance" in only:
                report["relevance"] = relevance_part(conn, args.runs, args.heavy_runs)
            with GatewayProcess(env, port=args.port) as gw, \
                    httpx.Client(base_url=f"http://127.0.0.1:{gw.port}", timeout=60) as http:
                if "phrases" in only:
                    report["phrases"] = phrase_part(conn, http, args.runs)
                if "estimates" in only:
                    report["estimates"] = estimate_part(conn, http)
                if "newest" in only:
                    report["newest"] = newest_part(conn, http, max(args.runs, 20))
        finally:
            if not args.reuse:
                conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(*GIN_INDEX.split("."))))
    report["seconds"] = round(time.perf_counter() - started)
    report["machine_at_end"] = machine()
    out = write_report(args.out or "relevance", report)
    say(markdown_relevance(report))
    say(f"\nwritten to {out}")
    return 0


def markdown_relevance(report: dict[str, Any]) -> str:
    lines = ["| class | query | matches | stock GIN p50 / p95 | RUM p50 / p95 | p95 ratio | recall (ids / score) | "
             "ts_rank overlap | phrase-operator overlap |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in report.get("relevance", []):
        s, g = r["stock_gin_score_all"], r["rum"]
        lines.append(f"| {r['class']} | `{r['query']}` | {r['matches']:,} | {s['p50']:.0f} / {s['p95']:.0f} | "
                     f"{g['p50']:.0f} / {g['p95']:.0f} | {r['p95_ratio']} | {r['recall_ids']} / {r['recall_by_score']} | "
                     f"{r['overlap_with_ts_rank_top20']} | {r.get('overlap_with_phrase_operator_top20', '')} |")
    lines += ["", "| phrase | matches | count(*) GIN p95 | NEWEST+count p95 (ratio) | RELEVANCE+count p95 (ratio) |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for r in report.get("phrases", []):
        lines.append(f"| `{r['query']}` | {r['matches']:,} | {r['plain_count_gin_sql']['p95']:.0f} | "
                     f"{r['gateway_newest_with_count']['p95']:.0f} ({r['newest_ratio_p95']}) | "
                     f"{r['gateway_relevance_with_count']['p95']:.0f} ({r['relevance_ratio_p95']}) |")
    newest = report.get("newest")
    if newest:
        lines += ["", f"NEWEST through the gateway, p50 / p95 ms (common-word p95 {newest['common_p95_ms']:.1f}):", ""]
        for n, c in newest["cells"].items():
            ratio = f" ({c['ratio_to_common_p95']}x)" if "ratio_to_common_p95" in c else ""
            lines.append(f"- {n} `{c['query']}`: {c['p50']:.1f} / {c['p95']:.1f}{ratio}")
    return "\n".join(lines)
