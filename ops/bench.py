"""Benchmarks, run by hand (never in CI): ``python -m ops bench search|partitions|relevance|explain ...``.

Method (the machine is shared and noisy): every figure is a distribution over repeated runs, reported as
p50/p95, and every figure is compared with a baseline from the same run, never with a bare time:

* ``search``: the gateway (a subprocess, over HTTP) against the same SQL statements sent directly with
  psycopg through PgBouncer to the replicas; the two are interleaved run by run (ABBA order).
* ``partitions``: copies of the loaded corpus in bench schemas (flat table, yearly and monthly partitions,
  same indexes), queried with the same SQL text, interleaved width by width; planning time is measured warm
  (EXPLAIN on a long-lived session) and cold (the first statement of a new backend).
* ``relevance``: the bounded-candidate ranking the gateway uses, ``ts_rank`` over every match, and RUM's
  ``<=>`` (when the ``rum`` extension is installed), interleaved on one flat copy.

Bench schemas are UNLOGGED copies on the primary (no WAL, nothing shipped to the replicas, which would
triple the disk they take) and are dropped at the end unless ``--keep`` is given. Results are written as
JSON under ``docs/bench/`` and printed as Markdown tables for docs/performance.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import functools
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import httpx
import psycopg
from psycopg import sql

from ops import stack

PROJECT = Path(__file__).resolve().parents[1]
RESULTS_DIR = PROJECT / "docs" / "bench"
TABLE = "public.meeting_page"

# Query classes, chosen against the synthetic corpus (ops/corpus.py) for their share of matching pages on
# the 1,000,000-page corpus of seed 1; the share is measured at the start of every run and reported next to
# the figures. "no match" is the worst case of a plain newest-first index walk (DESIGN.md section 6); a
# term just under 1 % is the worst case of a bounded walk (too few hits in the window, so it falls back to
# the full-text index, where every match is fetched and sorted).
QUERY_CLASSES: dict[str, tuple[str, dict[str, Any]]] = {
    "no match": ("zyzzyva", {}),
    "very rare term": ("wombat alpaca", {}),
    "rare term": ("wombat", {}),
    "medium term": ("cannabis", {}),
    "common term": ("council", {}),
    "phrase": ('"liquor license"', {}),
    "or": ("variance or easement", {}),
    "town filter": ("budget", {"municipalities": ["@town"]}),
    "date filter": ("zoning", {"dateFrom": "2019-01-01", "dateTo": "2019-12-31"}),
}
ORDERS = ("NEWEST", "OLDEST", "RELEVANCE")
PAGES = (1, 2, 50, 1000)
PAGE_SIZE = 20
TOWN_OFFSET = 3  # the municipality with the 4th lowest id: a mid-sized town in the seed-1 corpus

GRAPHQL = """query B($q: String!, $f: SearchFilter, $o: SearchOrder, $a: String) {
  search(query: $q, filter: $f, orderBy: $o, first: 20, after: $a) {
    edges { cursor rank headline node { sourceId document { meetingName municipality { name } } } }
    pageInfo { hasNextPage endCursor }
  }
}"""
FLOOR_GRAPHQL = "{ __typename }"
MINIMAL_GRAPHQL = """query B($q: String!, $f: SearchFilter, $o: SearchOrder, $a: String) {
  search(query: $q, filter: $f, orderBy: $o, first: 20, after: $a) { edges { cursor } pageInfo { hasNextPage } }
}"""
# Cells whose gateway overhead is broken down (GraphQL/HTTP floor, search statement only, full page).
BREAKDOWN = (("common term", "NEWEST"), ("rare term", "NEWEST"), ("medium term", "RELEVANCE"))

# Targets from the issue.
TARGET_NEWEST_P95_MS = 50.0
TARGET_RELEVANCE_P95_MS = 300.0
TARGET_DEEP_RATIO = 1.5
TARGET_GATEWAY_RATIO = 1.3

Conn = psycopg.Connection[Any]


# --- statistics and reporting -------------------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * pct / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(samples: Sequence[float]) -> dict[str, float]:
    return {
        "p50": round(statistics.median(samples), 2),
        "p95": round(percentile(samples, 95), 2),
        "min": round(min(samples), 2),
        "n": len(samples),
    }


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        **code_version(),
    }
    return info


def code_version() -> dict[str, str]:
    """Which search SQL was measured: others edit schema/ while benchmarks run."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT, capture_output=True, text=True,
                          check=False).stdout.strip()
    digest = hashlib.sha1((PROJECT / "schema" / "search_sql.py").read_bytes()).hexdigest()[:12]  # noqa: S324
    return {"git_head": head, "search_sql_sha1": digest}


def server_info(conn: Conn) -> dict[str, Any]:
    names = ("server_version", "shared_buffers", "work_mem", "effective_cache_size", "random_page_cost",
             "maintenance_work_mem", "max_parallel_workers_per_gather", "jit")
    return {n: _scalar(conn, sql.SQL("SELECT current_setting({})").format(sql.Literal(n))) for n in names}


def write_report(name: str, report: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"{name}.json"
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return out


def _scalar(conn: Conn, query: str | sql.SQL | sql.Composed, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    return row[0] if row else None


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def _fetch(conn: Conn, text: str, params: dict[str, Any]) -> None:
    conn.execute(text, params).fetchall()


def _say(*parts: object) -> None:
    print(*parts, flush=True)


# --- the stack and the corpus -------------------------------------------------------------------------------


class GatewayProcess:
    """The gateway as a separate process (so the client's CPU use does not share its interpreter)."""

    def __init__(self, env: dict[str, str], port: int) -> None:
        self.env = {**os.environ, **env}
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        # A file, not a pipe: nobody reads the gateway's log while it runs, and a full pipe would block it.
        self.log: IO[bytes] = tempfile.NamedTemporaryFile(prefix="bench-gateway-", suffix=".log", delete=False)

    def __enter__(self) -> GatewayProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--port", str(self.port)],
            env=self.env,
            cwd=PROJECT,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited ({self.log.name}): {Path(self.log.name).read_text()[-2000:]}")
            time.sleep(0.2)
        self.__exit__(RuntimeError, None, None)  # keeps the log
        raise RuntimeError("gateway did not become ready in 60 s")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.log.close()
        if not exc or exc[0] is None:
            Path(self.log.name).unlink(missing_ok=True)  # kept only when the run failed, for its traceback
        else:
            print(f"gateway log kept in {self.log.name}", file=sys.stderr)


def ensure_corpus(layout: stack.StackLayout, pages: int) -> int:
    """Migrate and load ``pages`` synthetic pages unless at least that many are there already.

    A load is timed and recorded in ``docs/bench/corpus_load.json``.
    """
    from migrations import runner
    from ops import corpus

    admin = layout.bouncer_dsn("node1_session", user="postgres")
    runner.migrate(admin)
    with psycopg.connect(admin, autocommit=True, prepare_threshold=None) as conn:
        have = int(_scalar(conn, sql.SQL("SELECT count(*) FROM public.meeting_page")) or 0)
        if have >= pages:
            return have
        # Also when no page is there: a failed load leaves municipalities and documents behind.
        if have:
            _say(f"reloading: {have:,} pages present, {pages:,} wanted")
        conn.execute("TRUNCATE public.meeting_page, public.meeting_document, public.municipality "
                     "RESTART IDENTITY CASCADE")
    started = time.perf_counter()
    stats = corpus.load(admin, pages=pages, seed=1, workers=2, progress=True)
    wall = time.perf_counter() - started
    with psycopg.connect(admin, autocommit=True, prepare_threshold=None) as conn:
        size = _scalar(conn, sql.SQL(
            "SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('public.meeting_page')"))
        info = server_info(conn)
    write_report("corpus_load", {
        "benchmark": "corpus_load", "machine": machine(), "server": info, "pages": pages, "seed": 1,
        "workers": stats.workers, "seconds": round(stats.seconds, 1), "wall_seconds": round(wall, 1),
        "pages_copy_seconds": round(stats.pages_seconds, 1), "gin_merge_analyze_seconds":
        round(stats.analyze_seconds, 1), "text_mb": round(stats.text_bytes / 1e6, 1),
        "documents": stats.documents, "municipalities": stats.municipalities,
        "meeting_page_total_bytes": int(size or 0),
    })
    _say(f"loaded {pages:,} pages: {stats}")
    return pages


def _town(conn: Conn) -> str:
    value = _scalar(conn, sql.SQL("SELECT m.subdomain FROM public.municipality m ORDER BY m.id LIMIT 1 OFFSET {}")
                    .format(sql.Literal(TOWN_OFFSET)))
    return str(value) if value is not None else "none"


@dataclasses.dataclass(frozen=True)
class Case:
    """One query class, resolved: the GraphQL filter and the SearchSpec-building inputs."""

    name: str
    query: str
    gql_filter: dict[str, Any] | None

    def spec(self, order: str) -> Any:
        from schema.search import SearchFilter, build_spec
        from schema.types import SearchOrder

        f = self.gql_filter or {}
        sf = SearchFilter(
            municipalities=f.get("municipalities"), states=None,
            date_from=dt.date.fromisoformat(f["dateFrom"]) if "dateFrom" in f else None,
            date_to=dt.date.fromisoformat(f["dateTo"]) if "dateTo" in f else None,
            document_type=None, meeting_name=None,
        )
        return build_spec(self.query, sf, SearchOrder(order))


def cases(conn: Conn, only: list[str] | None) -> list[Case]:
    town = _town(conn)
    out = []
    for name, (query, flt) in QUERY_CLASSES.items():
        if only and name not in only:
            continue
        resolved = {k: ([town] if v == ["@town"] else v) for k, v in flt.items()}
        out.append(Case(name, query, resolved or None))
    return out


def match_count(conn: Conn, case: Case) -> int:
    """The exact number of matching pages (set-up only: a full count over the GIN index)."""
    from schema import search_sql

    query, params = search_sql.count_query(case.spec("NEWEST"))
    text = query.as_string(conn).replace(f"LIMIT {search_sql.COUNT_CAP + 1}", "")
    return int(_scalar(conn, text, params) or 0)


def cursor_key_at(conn: Conn, spec: Any, offset: int) -> list[Any] | None:
    """The keyset cursor of the row just before result ``offset + 1`` (set-up only, never timed)."""
    from schema import search_sql

    if spec.order == "RELEVANCE":
        if offset > search_sql.RELEVANCE_CANDIDATES:
            return None  # ranking covers a bounded candidate set: deeper pages do not exist
        query, params = search_sql.relevance_page(spec, forward=True, size=offset + 1, cursor=None)
        rows = [r for r in conn.execute(query, params).fetchall() if r[0] is not None]
        rows.sort(key=lambda r: (r[8], r[1], r[0]), reverse=True)
        if len(rows) < offset:
            return None
        last = rows[offset - 1]
        return [last[8], last[1].isoformat(), last[0]]
    # Walk from the start in chunks (still keyset): one statement per 5,000 rows.
    key: list[Any] | None = None
    left = offset
    while left > 0:
        chunk = min(left, 5000)
        q, p = search_sql.date_page(spec, forward=True, size=chunk, cursor=key)
        rows = [r for r in conn.execute(q, p).fetchall() if r[0] is not None]
        if len(rows) < chunk:
            return None
        last = rows[chunk - 1]
        key = [last[1].isoformat(), last[0]]
        left -= chunk
    return key


# --- python -m ops bench search -----------------------------------------------------------------------------


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
            sa.append(_timed(a))
            sb.append(_timed(b))
        else:
            sb.append(_timed(b))
            sa.append(_timed(a))
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
            _say(json.dumps({"class": case.name, **shares[case.name]}))
    raw = RawClient(replicas)
    try:
        with GatewayProcess(env, args.port) as gw, \
                httpx.Client(base_url=f"http://127.0.0.1:{gw.port}", timeout=60) as http, \
                psycopg.connect(admin_dsn, autocommit=True, prepare_threshold=None) as adm:

            def floor() -> None:
                http.post("/graphql", json={"query": FLOOR_GRAPHQL}).raise_for_status()

            for _ in range(5):
                floor()
            floor_ms = [_timed(floor) for _ in range(max(args.runs, 30))]
            _say(json.dumps({"floor": summary(floor_ms)}))
            for case in todo:
                for order in args.orders:
                    spec = case.spec(order)
                    bound = fingerprint(*spec.binding())
                    for depth in args.depths:
                        cell = {"class": case.name, "query": case.query, "order": order, "page": depth}
                        key = cursor_key_at(adm, spec, (depth - 1) * PAGE_SIZE) if depth > 1 else None
                        if depth > 1 and key is None:
                            skipped = ("n/a: relevance ranks a bounded candidate set"
                                       if order == "RELEVANCE" and (depth - 1) * PAGE_SIZE
                                       > search_sql.RELEVANCE_CANDIDATES else "fewer results")
                            results.append({**cell, "skipped": skipped})
                            _say(json.dumps(results[-1]))
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
                        _say(json.dumps(row))
            breakdown = overhead_breakdown(http, raw, [c for c in todo if any(c.name == b[0] for b in BREAKDOWN)],
                                           args.runs)
    finally:
        raw.close()
    report = {"benchmark": "search", "pages": total, "runs": args.runs, "machine": at_start, "machine_at_end": machine(), "server": info,
              "seconds": round(time.perf_counter() - started), "classes": shares,
              "floor_graphql_typename": summary(floor_ms), "results": results, "breakdown": breakdown}
    report["targets"] = evaluate_targets(results)
    out = write_report(args.out or "search", report)
    _say(markdown_search(report))
    _say(f"\nwritten to {out}")
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
                    samples[n].append(_timed(variants[n]))
            row = {"class": case.name, "order": order, "page": 1, "variants": {n: summary(v) for n, v in samples.items()}}
            out.append(row)
            _say(json.dumps(row))
    return out


def _cell(results: list[dict[str, Any]], cls: str, order: str, page: int) -> dict[str, Any] | None:
    for r in results:
        if r["class"] == cls and r["order"] == order and r["page"] == page and "skipped" not in r:
            return r
    return None


def evaluate_targets(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Each issue target, cell by cell, on the gateway's figures (what a client sees)."""
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


# --- bench schemas (copies of the corpus) -------------------------------------------------------------------

COLUMNS = ("id text NOT NULL, meeting_date date NOT NULL, document_id bigint NOT NULL, "
           "municipality_id integer NOT NULL, document_type public.document_type NOT NULL, "
           "page_number integer NOT NULL, text text NOT NULL, page_image text, search_vector tsvector")
COLUMN_NAMES = "id, meeting_date, document_id, municipality_id, document_type, page_number, text, page_image, search_vector"
INDEXES = (
    ("primary key (id, meeting_date)", "ALTER TABLE {t} ADD PRIMARY KEY (id, meeting_date)"),
    ("btree (meeting_date, id)", "CREATE INDEX ON {t} (meeting_date, id)"),
    ("btree (municipality_id, meeting_date, id)", "CREATE INDEX ON {t} (municipality_id, meeting_date, id)"),
    ("btree (document_id, page_number)", "CREATE INDEX ON {t} (document_id, page_number)"),
    ("gin (search_vector)", "CREATE INDEX ON {t} USING gin (search_vector)"),
)
WIDTHS = ("none", "year", "month")


def _partition_bounds(width: str, first: dt.date, last: dt.date) -> Iterator[tuple[str, dt.date, dt.date]]:
    day = dt.date(first.year, 1 if width == "year" else first.month, 1)
    while day <= last:
        if width == "year":
            nxt, name = dt.date(day.year + 1, 1, 1), f"y{day.year}"
        else:
            nxt = dt.date(day.year + (day.month == 12), day.month % 12 + 1, 1)
            name = f"m{day.year}{day.month:02d}"
        yield name, day, nxt
        day = nxt


def _run(conn: Conn, text: str) -> None:
    conn.execute(text)


def build_copy(conn: Conn, schema: str, width: str, *, extra_index: str | None = None) -> dict[str, Any]:
    """An UNLOGGED copy of public.meeting_page in ``schema``: flat (``none``) or partitioned by ``width``,
    loaded with INSERT ... SELECT (stored vectors copied, not recomputed), then indexed, then VACUUM ANALYZE."""
    t = f"{schema}.meeting_page"
    _run(conn, f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    _run(conn, f"CREATE SCHEMA {schema}")
    timings: dict[str, float] = {}
    started = time.perf_counter()
    if width == "none":
        _run(conn, f"CREATE UNLOGGED TABLE {t} ({COLUMNS})")
        partitions = 0
    else:
        _run(conn, f"CREATE UNLOGGED TABLE {t} ({COLUMNS}) PARTITION BY RANGE (meeting_date)")
        lo, hi = conn.execute("SELECT min(meeting_date), max(meeting_date) FROM public.meeting_page").fetchone() or (
            None, None)
        assert lo is not None and hi is not None
        partitions = 0
        for name, a, b in _partition_bounds(width, lo, hi):
            _run(conn, f"CREATE UNLOGGED TABLE {schema}.meeting_page_{name} PARTITION OF {t} "
                       f"FOR VALUES FROM ('{a.isoformat()}') TO ('{b.isoformat()}')")
            partitions += 1
        _run(conn, f"CREATE UNLOGGED TABLE {schema}.meeting_page_default PARTITION OF {t} DEFAULT")
    timings["create"] = time.perf_counter() - started
    step = time.perf_counter()
    _run(conn, f"INSERT INTO {t} ({COLUMN_NAMES}) SELECT {COLUMN_NAMES} FROM public.meeting_page")
    timings["insert_select"] = time.perf_counter() - step
    indexes = list(INDEXES)
    if extra_index:
        indexes.append(("extra", extra_index))
    for label, ddl in indexes:
        step = time.perf_counter()
        _run(conn, ddl.format(t=t))
        timings[label] = time.perf_counter() - step
        _say(f"  {schema}: {label} {timings[label]:.1f} s")
    step = time.perf_counter()
    _run(conn, f"VACUUM (ANALYZE) {t}")
    if width != "none":  # VACUUM of a partitioned parent does each partition; ANALYZE it for parent stats too
        _run(conn, f"ANALYZE {t}")
    timings["vacuum_analyze"] = time.perf_counter() - step
    total = time.perf_counter() - started
    return {"schema": schema, "width": width, "partitions": partitions,
            "seconds": {k: round(v, 1) for k, v in timings.items()}, "total_seconds": round(total, 1),
            "size": copy_size(conn, t)}


def copy_size(conn: Conn, table: str) -> dict[str, int]:
    """Bytes of heap (+TOAST), of each index kind, and in total, summed over partitions."""
    row = conn.execute(
        """
        WITH leaf AS (SELECT relid FROM pg_partition_tree(%(t)s::regclass) WHERE isleaf
                      UNION  -- a plain table is its own leaf (pg_partition_tree lists nothing for it)
                      SELECT c.oid FROM pg_class c WHERE c.oid = %(t)s::regclass AND c.relkind = 'r')
        SELECT (SELECT sum(pg_table_size(relid)) FROM leaf),
               (SELECT coalesce(sum(pg_relation_size(i.indexrelid)), 0) FROM pg_index i JOIN leaf ON i.indrelid = leaf.relid
                  JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam WHERE a.amname = 'gin'),
               (SELECT coalesce(sum(pg_relation_size(i.indexrelid)), 0) FROM pg_index i JOIN leaf ON i.indrelid = leaf.relid
                  JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam WHERE a.amname = 'btree'),
               (SELECT coalesce(sum(pg_relation_size(i.indexrelid)), 0) FROM pg_index i JOIN leaf ON i.indrelid = leaf.relid
                  JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam WHERE a.amname = 'rum'),
               (SELECT sum(pg_total_relation_size(relid)) FROM leaf)
        """, {"t": table}).fetchone()
    assert row is not None
    return {"heap_toast": int(row[0] or 0), "gin": int(row[1]), "btree": int(row[2]), "rum": int(row[3]),
            "total": int(row[4] or 0)}


def _check_disk(layout: stack.StackLayout, *, need_gb: float = 14.0) -> None:
    """A copy of the 1M corpus takes about 9 GB; refuse to fill a disk that others share."""
    free = shutil.disk_usage(layout.dir).free / 1e9
    if free < need_gb:
        raise stack.StackError(f"only {free:.0f} GB free; a bench copy needs about {need_gb:.0f} GB")


def drop_schemas(conn: Conn, schemas: Sequence[str]) -> None:
    for s in schemas:
        _run(conn, f"DROP SCHEMA IF EXISTS {s} CASCADE")


def on_table(conn: Conn, query: sql.Composable, table: str) -> str:
    """The statement text with the pages table swapped for a bench copy (our own constant SQL, not input)."""
    text = query.as_string(conn)
    return text if table == TABLE else text.replace(TABLE, table)


def direct_dsn(layout: stack.StackLayout) -> str:
    """The primary itself, not through PgBouncer: bench sessions SET things and need new backends."""
    return f"host=127.0.0.1 port={layout.node_ports[0]} dbname=civic user=postgres connect_timeout=3"


def _indexes_used(node: dict[str, Any]) -> list[str]:
    found = [str(node["Index Name"])] if "Index Name" in node else []
    for child in node.get("Plans", []):
        found += [n for n in _indexes_used(child) if n not in found]
    return found


def _plan_times(conn: Conn, text: str, params: dict[str, Any], *, analyze: bool) -> tuple[float, float | None]:
    opts = "ANALYZE, TIMING OFF, SUMMARY ON, FORMAT JSON" if analyze else "SUMMARY ON, FORMAT JSON"
    doc = _scalar(conn, f"EXPLAIN ({opts}) {text}", params)
    plan = (json.loads(doc) if isinstance(doc, str) else doc)[0]
    return float(plan["Planning Time"]), (float(plan["Execution Time"]) if analyze else None)


# --- python -m ops bench partitions -------------------------------------------------------------------------


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
                if args.reuse and _scalar(conn, sql.SQL("SELECT to_regclass({})").format(
                        sql.Literal(f"{schema}.meeting_page"))) is not None:
                    builds[width] = {"schema": schema, "width": width, "reused": True,
                                     "size": copy_size(conn, f"{schema}.meeting_page")}
                    continue
                _check_disk(layout)
                _say(f"building {schema} ({width})")
                builds[width] = build_copy(conn, schema, width)
                _say(json.dumps(builds[width]))
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
                        _say(json.dumps(row))
        finally:
            kept = WIDTHS if args.keep == [] else (args.keep or [])
            gone = [s for w, s in schemas.items() if w not in kept]
            drop_schemas(conn, gone)
            _say(f"dropped {', '.join(gone) or 'nothing'}")
    report = {"benchmark": "partitions", "pages": total, "runs": args.runs, "machine": at_start, "machine_at_end": machine(), "server": info,
              "seconds": round(time.perf_counter() - started), "builds": builds, "results": results,
              "note": "UNLOGGED copies on the primary, loaded with INSERT ... SELECT of the stored vectors; "
                      "indexes built after the load; raw SQL over a direct connection"}
    out = write_report(args.out or "partitions", report)
    _say(markdown_partitions(report))
    _say(f"\nwritten to {out}")
    return 0


def _partition_cell(conn: Conn, layout: stack.StackLayout, case: Case, order: str, depth: int,
                    texts: dict[str, str], params: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    widths = list(texts)
    # Cold planning first (a new backend has empty catalog caches: what a fresh pooled connection pays).
    cold: dict[str, list[tuple[float, float | None]]] = {w: [] for w in widths}
    for i in range(args.cold_runs):
        for w in widths[i % len(widths):] + widths[: i % len(widths)]:
            with psycopg.connect(direct_dsn(layout), autocommit=True) as fresh:
                cold[w].append(_plan_times(fresh, texts[w], params, analyze=True))
    for w in widths:
        conn.execute(texts[w], params).fetchall()  # warm
    samples: dict[str, list[float]] = {w: [] for w in widths}
    plans: dict[str, list[float]] = {w: [] for w in widths}
    for i in range(args.runs):
        for w in widths[i % len(widths):] + widths[: i % len(widths)]:  # rotate who goes first
            text = texts[w]
            samples[w].append(_timed(functools.partial(_fetch, conn, text, params)))
    for i in range(max(3, args.runs // 3)):
        for w in widths[i % len(widths):] + widths[: i % len(widths)]:
            plans[w].append(_plan_times(conn, texts[w], params, analyze=False)[0])
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


# --- python -m ops bench relevance --------------------------------------------------------------------------

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
    return bool(_scalar(conn, sql.SQL("SELECT count(*) FROM pg_available_extensions WHERE name = 'rum'")))


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
            if args.reuse and _scalar(conn, sql.SQL("SELECT to_regclass({})").format(sql.Literal(t))) is not None:
                build = {"reused": True}
            else:
                _check_disk(layout)
                _say(f"building {schema}")
                build = build_copy(conn, schema, "none")
            if rum:
                _run(conn, f"CREATE EXTENSION IF NOT EXISTS rum SCHEMA {schema}")
                if not _scalar(conn, sql.SQL("SELECT count(*) FROM pg_indexes WHERE schemaname = {} AND "
                                             "indexdef LIKE '%USING rum%'").format(sql.Literal(schema))):
                    step = time.perf_counter()
                    _run(conn, f"CREATE INDEX meeting_page_rum ON {t} USING rum (search_vector {schema}.rum_tsvector_ops)")
                    build["rum_index_seconds"] = round(time.perf_counter() - step, 1)
                    _run(conn, f"ANALYZE {t}")
                build["size"] = copy_size(conn, t)
            _say(json.dumps(build))
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
                _say(json.dumps(row))
        finally:
            if args.keep is None:
                drop_schemas(conn, [schema])
                if rum:
                    _run(conn, "DROP EXTENSION IF EXISTS rum")
                _say(f"dropped {schema}")
    report = {"benchmark": "relevance", "pages": total, "runs": args.runs, "machine": at_start, "machine_at_end": machine(), "server": info,
              "rum_available": rum, "seconds": round(time.perf_counter() - started), "build": build,
              "results": results,
              "note": "flat UNLOGGED copy with the same B-tree and GIN indexes (plus RUM when available); raw "
                      "SQL over a direct connection to the primary; overlap = share of the exact top 20 "
                      "(ts_rank over every match) that the approach also returns in its first 20"}
    out = write_report(args.out or "relevance", report)
    _say(markdown_relevance(report))
    _say(f"\nwritten to {out}")
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
            samples[n].append(_timed(functools.partial(_fetch, conn, text, params)))
    used: dict[str, list[str]] = {}
    for n in names:
        text, params = approaches[n]
        plans[n].append(_plan_times(conn, text, params, analyze=False)[0])
        doc = _scalar(conn, f"EXPLAIN (FORMAT JSON) {text}", params)
        used[n] = _indexes_used((json.loads(doc) if isinstance(doc, str) else doc)[0]["Plan"])
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


# --- python -m ops bench explain ----------------------------------------------------------------------------


def bench_explain(args: argparse.Namespace) -> int:
    """EXPLAIN (ANALYZE, BUFFERS) of one search statement on a replica, for the classes and orders given."""
    from schema import search_sql

    layout = stack.up(Path(args.dir))
    replica = layout.bouncer_dsn(f"{layout.node_names[-1]}_session", user="postgres")
    with psycopg.connect(replica, autocommit=True, prepare_threshold=None) as conn:
        for case in cases(conn, args.only):
            for order in args.orders:
                spec = case.spec(order)
                for depth in args.depths:
                    key = cursor_key_at(conn, spec, (depth - 1) * PAGE_SIZE) if depth > 1 else None
                    if depth > 1 and key is None:
                        continue
                    build = search_sql.relevance_page if order == "RELEVANCE" else search_sql.date_page
                    q, p = build(spec, forward=True, size=PAGE_SIZE, cursor=key)
                    conn.execute(q, p).fetchall()  # warm
                    text = q.as_string(conn)
                    plan = conn.execute(sql.SQL("EXPLAIN (ANALYZE, BUFFERS) ") + sql.SQL(text), p)  # our own SQL text, never input.fetchall()
                    _say(f"\n=== {case.name} ({case.query!r}) {order} page {depth}")
                    _say("\n".join(str(r[0]) for r in plan))
    return 0


# --- entry point ----------------------------------------------------------------------------------------------


def main(what: str, rest: list[str]) -> int:
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
        print(f"unknown benchmark {what!r}; choose from {', '.join(benches)}", file=sys.stderr)
        return 2
    return benches[what](args)
