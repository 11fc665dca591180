"""Benchmarks, run by hand (never in CI): ``python -m ops bench search|partitions ...``.

Method (the machine is shared and noisy): every figure is a distribution over repeated runs, reported as
p50/p95, and every gateway figure has a baseline from the same run: the same SQL statements sent directly
with psycopg through PgBouncer to a replica. Results are written as JSON under ``docs/bench/`` and printed
as a Markdown table for docs/performance.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg

from ops import stack

PROJECT = Path(__file__).resolve().parents[1]
RESULTS_DIR = PROJECT / "docs" / "bench"

# Query classes: chosen against the synthetic corpus's vocabulary (ops/corpus.py); each is checked for its
# actual share of matching pages at the start of the run and that share is reported next to the figures.
QUERY_CLASSES: dict[str, tuple[str, dict[str, Any]]] = {
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

GRAPHQL = """query B($q: String!, $f: SearchFilter, $o: SearchOrder, $a: String) {
  search(query: $q, filter: $f, orderBy: $o, first: 20, after: $a) {
    edges { cursor rank headline node { sourceId document { meetingName municipality { name } } } }
    pageInfo { hasNextPage endCursor }
  }
}"""


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * pct / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@dataclasses.dataclass
class Timing:
    label: str
    samples_ms: list[float]

    @property
    def p50(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def p95(self) -> float:
        return percentile(self.samples_ms, 95)


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


class GatewayProcess:
    """The gateway as a separate process (so the client's CPU use does not share its interpreter)."""

    def __init__(self, env: dict[str, str], port: int) -> None:
        self.env = {**os.environ, **env}
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> GatewayProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--port", str(self.port)],
            env=self.env,
            cwd=PROJECT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"gateway exited: {err[-2000:]}")
            time.sleep(0.2)
        raise RuntimeError("gateway did not become ready in 60 s")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def _layout(directory: Path) -> stack.StackLayout:
    layout = stack.up(directory)
    return layout


def ensure_corpus(layout: stack.StackLayout, pages: int) -> int:
    """Migrate and load ``pages`` synthetic pages unless at least that many are there already."""
    from migrations import runner
    from ops import corpus

    admin = layout.bouncer_dsn("node1_session", user="postgres")
    runner.migrate(admin)
    with psycopg.connect(admin, autocommit=True, prepare_threshold=None) as conn:
        row = conn.execute("SELECT count(*) FROM public.meeting_page").fetchone()
        have = int(row[0]) if row else 0
        if have >= pages:
            return have
        if have:
            print(f"reloading: {have:,} pages present, {pages:,} wanted", flush=True)
            conn.execute("TRUNCATE public.meeting_page, public.meeting_document, public.municipality RESTART IDENTITY")
    stats = corpus.load(admin, pages=pages, seed=1, workers=2, progress=True)
    print(f"loaded {pages:,} pages: {stats}", flush=True)
    return pages


def _time(fn: Callable[[], Any], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def bench_search(args: argparse.Namespace) -> int:
    """Gateway vs raw SQL for each query class, order and page depth."""
    from schema import search_sql
    from schema.cursors import CursorCodec, fingerprint
    from schema.search import SearchFilter, build_spec
    from schema.types import DocumentType, SearchOrder

    layout = _layout(Path(args.dir))
    total = ensure_corpus(layout, args.pages)
    secret = "bench-secret"  # noqa: S105  # signs cursors for this run only
    env = {**layout.gateway_env(), "GATEWAY_CURSOR_SECRET": secret, "GATEWAY_CACHE_ENABLED": "false",
           "GATEWAY_ROUTING_METADATA": "false"}
    codec = CursorCodec(__import__("hashlib").sha256(secret.encode()).digest())
    replica_dsn = layout.bouncer_dsn(layout.node_names[-1])
    admin = layout.bouncer_dsn("node1_session", user="postgres")
    results: list[dict[str, Any]] = []
    with psycopg.connect(admin, autocommit=True, prepare_threshold=None) as conn:
        town_row = conn.execute(
            "SELECT m.subdomain FROM public.municipality m ORDER BY m.id LIMIT 1 OFFSET 3").fetchone()
        town = str(town_row[0]) if town_row else "none"
    with GatewayProcess(env, args.port) as gw, httpx.Client(base_url=f"http://127.0.0.1:{gw.port}", timeout=60) as http, \
            psycopg.connect(replica_dsn, autocommit=True, prepare_threshold=None) as raw, \
            psycopg.connect(admin, autocommit=True, prepare_threshold=None) as adm:
        for name, (query, flt) in QUERY_CLASSES.items():
            flt = {k: ([town] if v == ["@town"] else v) for k, v in flt.items()}
            share_row = adm.execute(
                "SELECT count(*) FROM (SELECT 1 FROM public.meeting_page WHERE search_vector @@ "
                "websearch_to_tsquery('public.civic', %s) LIMIT 200000) s", [query]).fetchone()
            matches = int(share_row[0]) if share_row else 0
            for order in ORDERS:
                sf = SearchFilter(
                    municipalities=flt.get("municipalities"), states=None,
                    date_from=__import__("datetime").date.fromisoformat(flt["dateFrom"]) if "dateFrom" in flt else None,
                    date_to=__import__("datetime").date.fromisoformat(flt["dateTo"]) if "dateTo" in flt else None,
                    document_type=None, meeting_name=None,
                )
                spec = build_spec(query, sf, SearchOrder(order))
                bound = fingerprint(*spec.binding())
                for depth in PAGES:
                    cursor_key = _cursor_key_at(adm, spec, (depth - 1) * 20) if depth > 1 else None
                    if depth > 1 and cursor_key is None:
                        results.append({"class": name, "order": order, "page": depth, "skipped": "fewer results"})
                        continue
                    after = codec.encode(bound, cursor_key) if cursor_key is not None else None
                    variables = {"q": query, "f": flt or None, "o": order, "a": after}

                    def via_gateway(variables: dict[str, Any] = variables) -> None:
                        r = http.post("/graphql", json={"query": GRAPHQL, "variables": variables})
                        body = r.json()
                        if r.status_code != 200 or body.get("errors"):
                            raise RuntimeError(f"gateway error: {r.text[:500]}")

                    build = search_sql.relevance_page if order == "RELEVANCE" else search_sql.date_page
                    sql_q, params = build(spec, forward=True, size=20, cursor=cursor_key)

                    def via_sql(sql_q: Any = sql_q, params: dict[str, Any] = params, spec: Any = spec) -> None:
                        rows = raw.execute(sql_q, params).fetchall()
                        keys = [r for r in rows if r[0] is not None][:20]
                        if not keys:
                            return
                        ids = [r[0] for r in keys]
                        dates = [r[1] for r in keys]
                        raw.execute(search_sql.headline_query(), {"q": spec.query, "ids": ids, "dates": dates}).fetchall()
                        docs = raw.execute("SELECT id, municipality_id, meeting_name FROM public.meeting_document "
                                           "WHERE id = ANY(%s)", [[r[2] for r in keys]]).fetchall()
                        raw.execute("SELECT id, name FROM public.municipality WHERE id = ANY(%s)",
                                    [[d[1] for d in docs]]).fetchall()

                    via_gateway()
                    via_sql()  # warm both paths once
                    gw_ms, sql_ms = [], []
                    for _ in range(args.runs):  # interleave so that noise hits both alike
                        gw_ms += _time(via_gateway, 1)
                        sql_ms += _time(via_sql, 1)
                    g, s = Timing("gateway", gw_ms), Timing("sql", sql_ms)
                    row = {"class": name, "query": query, "matches_capped_200k": matches, "order": order, "page": depth,
                           "gateway_p50": round(g.p50, 2), "gateway_p95": round(g.p95, 2),
                           "sql_p50": round(s.p50, 2), "sql_p95": round(s.p95, 2),
                           "ratio_p50": round(g.p50 / s.p50, 2) if s.p50 else None}
                    results.append(row)
                    print(json.dumps(row), flush=True)
    report = {"benchmark": "search", "pages": total, "runs": args.runs, "machine": machine(), "results": results}
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / "search.json"
    out.write_text(json.dumps(report, indent=2))
    print(markdown_search(report))
    print(f"\nwritten to {out}")
    _ = DocumentType
    return 0


def _cursor_key_at(conn: psycopg.Connection[Any], spec: Any, offset: int) -> list[Any] | None:
    """The keyset cursor of the row just before page ``offset/20 + 1`` (set-up only; never in the timed path)."""
    from schema import search_sql

    if spec.order == "RELEVANCE":
        query, params = search_sql.relevance_page(spec, forward=True, size=min(offset, 1000) + 1, cursor=None)
        if offset > search_sql.RELEVANCE_CANDIDATES:
            return None
    else:
        query, params = search_sql.date_page(spec, forward=True, size=offset, cursor=None)
        if offset > 20_000:
            # Deep cursors: walk from the start in chunks of 5,000 rows (still keyset, still in set-up).
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
    rows = [r for r in conn.execute(query, params).fetchall() if r[0] is not None]
    if spec.order == "RELEVANCE":
        rows.sort(key=lambda r: (r[8], r[1], r[0]), reverse=True)
    if len(rows) < offset:
        return None
    last = rows[offset - 1]
    if spec.order == "RELEVANCE":
        return [last[8], last[1].isoformat(), last[0]]
    return [last[1].isoformat(), last[0]]


def markdown_search(report: dict[str, Any]) -> str:
    lines = [
        f"{report['pages']:,} pages, {report['runs']} runs per cell, {report['machine']['cpus']} cores.",
        "",
        "| class | order | page | gateway p50 | gateway p95 | SQL p50 | SQL p95 | ratio p50 |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in report["results"]:
        if "skipped" in r:
            lines.append(f"| {r['class']} | {r['order']} | {r['page']} | — | — | — | — | {r['skipped']} |")
            continue
        lines.append(
            f"| {r['class']} | {r['order']} | {r['page']} | {r['gateway_p50']:.1f} | {r['gateway_p95']:.1f} | "
            f"{r['sql_p50']:.1f} | {r['sql_p95']:.1f} | {r['ratio_p50']} |"
        )
    return "\n".join(lines)


def main(what: str, rest: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m ops bench {what}")
    parser.add_argument("--dir", default=str(stack.DEFAULT_DIR))
    parser.add_argument("--pages", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--port", type=int, default=8731)
    args = parser.parse_args(rest)
    benches: dict[str, Callable[[argparse.Namespace], int]] = {"search": bench_search}
    if what not in benches:
        print(f"unknown benchmark {what!r}; choose from {', '.join(benches)}", file=sys.stderr)
        return 2
    return benches[what](args)
