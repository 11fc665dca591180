"""``python -m ops bench scale``: how search cost, disk and ingest grow with the corpus (docs/scaling.md).

One corpus is grown in doubling steps (:mod:`ops.corpus.growth`: 125k, 250k, 500k, 1M and 2M pages by
default) on a single-node stack of its own, and at each size the run measures:

* every query class below through the gateway (HTTP, cache off) and the same SQL sent directly (the
  baseline), interleaved ABBA so that noise from the shared machine hits both alike; p50 and p95;
* table and index sizes (heap with TOAST, GIN, B-tree);
* the ingest rate of the step: documents and pages COPYed into the indexed partitions, GIN pending lists
  merged, ANALYZE done.

The curves are fitted and projected by :mod:`ops.bench.scale_model`, which also draws the PNG. The JSON goes
to ``docs/bench/scale.json``. The stack folder is deleted at the end unless ``--keep`` (2M pages: ~20 GB).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

from ops import stack
from ops.bench.report import Conn, machine, say, scalar, server_info, summary, timed_ms, write_report
from ops.common.gateway_process import GatewayProcess

PAGE_SIZE = 20
DEEP_PAGE = 50  # page 50: the keyset cursor of result 980

SEARCH = """query S($q: String!, $o: SearchOrder, $a: String) {
  search(query: $q, orderBy: $o, first: 20, after: $a) {
    edges { cursor rank headline node { sourceId document { meetingName municipality { name } } } }
    pageInfo { hasNextPage endCursor }
  }
}"""
SEARCH_COUNT = """query S($q: String!, $o: SearchOrder, $a: String) {
  search(query: $q, orderBy: $o, first: 20, after: $a) {
    edges { cursor rank headline node { sourceId document { meetingName municipality { name } } } }
    pageInfo { hasNextPage endCursor }
    totalCount { value exact }
  }
}"""


@dataclasses.dataclass(frozen=True)
class QueryClass:
    """One measured class: a query, an order, whether totalCount is asked for, and the result page."""

    name: str
    query: str
    order: str = "NEWEST"
    count: bool = False
    page: int = 1


# The classes of issue 14. Terms are chosen for their share of pages in the synthetic corpus (seed 1): council
# is on nearly every page, cannabis on about 17 %, zyzzyva on none, and the two words of "hearing variance" are
# common but rarely adjacent (the worst case of a phrase: the index finds many candidates, few survive).
CLASSES = (
    QueryClass("NEWEST common", "council"),
    QueryClass("NEWEST selective (no match)", "zyzzyva"),
    QueryClass("NEWEST selective (unlikely phrase)", '"hearing variance"'),
    QueryClass("RELEVANCE common", "council", order="RELEVANCE"),
    QueryClass("RELEVANCE medium", "cannabis", order="RELEVANCE"),
    QueryClass("phrase", '"liquor license"'),
    QueryClass("count", "cannabis", count=True),
    QueryClass("deep page", "council", page=DEEP_PAGE),
)


def _spec(cls: QueryClass) -> Any:
    from schema.search import SearchFilter, build_spec
    from schema.types import SearchOrder

    empty = SearchFilter(
        municipalities=None, states=None, date_from=None, date_to=None, document_type=None, meeting_name=None
    )
    return build_spec(cls.query, empty, SearchOrder(cls.order))


def _cursor(adm: Conn, cls: QueryClass, spec: Any) -> list[Any] | None:
    """The keyset of the row before the class's page (set-up, not timed)."""
    if cls.page == 1:
        return None
    from ops.bench.cases import cursor_key_at

    return cursor_key_at(adm, spec, (cls.page - 1) * PAGE_SIZE)


class Direct:
    """The gateway's statements for one result page (and its count), sent directly through PgBouncer."""

    def __init__(self, dsn: str) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True, prepare_threshold=None)

    def close(self) -> None:
        self.conn.close()

    def page(self, spec: Any, cursor: list[Any] | None, count: bool) -> None:
        from schema import loaders, search_sql

        build = search_sql.relevance_page if spec.order == "RELEVANCE" else search_sql.date_page
        query, params = build(spec, forward=True, size=PAGE_SIZE, cursor=cursor)
        rows = [r for r in self.conn.execute(query, params).fetchall() if r[0] is not None][:PAGE_SIZE]
        if count:
            q, p = search_sql.count_query(spec)
            self.conn.execute(q, p).fetchall()
        if not rows:
            return
        self.conn.execute(search_sql.headline_query(),
                          {"q": spec.query, "ids": [r[0] for r in rows], "dates": [r[1] for r in rows]}).fetchall()
        docs = self.conn.execute(
            sql.SQL("SELECT {} FROM public.meeting_document d WHERE d.id = ANY (%(ids)s)").format(
                loaders.DOCUMENT_COLUMNS), {"ids": sorted({r[2] for r in rows})}).fetchall()
        self.conn.execute(
            sql.SQL("SELECT {} FROM public.municipality m WHERE m.id = ANY (%(ids)s)").format(
                loaders.MUNICIPALITY_COLUMNS), {"ids": sorted({d[1] for d in docs})}).fetchall()


def _interleaved(a: Callable[[], Any], b: Callable[[], Any], runs: int) -> tuple[list[float], list[float]]:
    sa: list[float] = []
    sb: list[float] = []
    for i in range(runs):
        first, second = ((a, sa), (b, sb)) if i % 2 == 0 else ((b, sb), (a, sa))
        first[1].append(timed_ms(first[0]))
        second[1].append(timed_ms(second[0]))
    return sa, sb


_SIZES = sql.SQL("""
    SELECT coalesce(sum(pg_table_size(t.relid)), 0),
           coalesce(sum(pg_relation_size(t.relid)), 0),
           (SELECT coalesce(sum(pg_relation_size(x.indexrelid)), 0)
              FROM pg_partition_tree('public.meeting_page') p JOIN pg_index x ON x.indrelid = p.relid
              JOIN pg_class c ON c.oid = x.indexrelid JOIN pg_am a ON a.oid = c.relam
             WHERE p.isleaf AND a.amname IN ('gin', 'rum')),
           coalesce(sum(pg_indexes_size(t.relid)), 0),
           pg_total_relation_size('public.meeting_document'),
           pg_database_size(current_database())
      FROM pg_partition_tree('public.meeting_page') t WHERE t.isleaf
""")


def sizes(conn: Conn) -> dict[str, int]:
    """Bytes on disk: pages (heap with TOAST; heap alone), the full-text index (GIN or RUM), every index,
    documents, the whole database."""
    row = conn.execute(_SIZES).fetchone()
    assert row is not None
    table, heap, fulltext, indexes, documents, database = (int(v) for v in row)
    return {"pages_table": table, "pages_heap": heap, "pages_toast": table - heap, "fulltext": fulltext,
            "btree_and_other_indexes": indexes - fulltext, "indexes": indexes, "documents": documents,
            "database": database}


def measure(adm: Conn, http: httpx.Client, direct: Direct, codec: Any, runs: int) -> list[dict[str, Any]]:
    """Every class, gateway against direct SQL, at the corpus size loaded now."""
    from schema.cursors import fingerprint

    out: list[dict[str, Any]] = []
    for cls in CLASSES:
        cell: dict[str, Any] = {"class": cls.name, "query": cls.query, "order": cls.order, "count": cls.count,
                                "page": cls.page}
        try:
            spec = _spec(cls)
            key = _cursor(adm, cls, spec)
            if cls.page > 1 and key is None:
                out.append({**cell, "skipped": "fewer results than the page needs"})
                continue
            after = codec.encode(fingerprint(*spec.binding()), key) if key is not None else None
            body = {"query": SEARCH_COUNT if cls.count else SEARCH,
                    "variables": {"q": cls.query, "o": cls.order, "a": after}}

            def via_gateway(body: dict[str, Any] = body) -> None:
                r = http.post("/graphql", json=body)
                if r.status_code != 200 or r.json().get("errors"):
                    raise RuntimeError(f"gateway error: {r.text[:300]}")

            def via_sql(spec: Any = spec, key: list[Any] | None = key, count: bool = cls.count) -> None:
                direct.page(spec, key, count)

            for _ in range(2):  # warm both paths
                via_gateway()
                via_sql()
            gw, raw = _interleaved(via_gateway, via_sql, runs)
        except (RuntimeError, psycopg.Error, AttributeError, TypeError) as exc:
            # A search design under test may change the SQL helpers; a class that cannot run is reported, not
            # allowed to end a run that took an hour to load.
            out.append({**cell, "skipped": f"{type(exc).__name__}: {str(exc)[:200]}"})
            say(json.dumps(out[-1]))
            continue
        g, s = summary(gw), summary(raw)
        out.append({**cell, "gateway": g, "sql": s, "ratio_p50": round(g["p50"] / s["p50"], 2) if s["p50"] else None})
        say(json.dumps(out[-1]))
    return out


def run(args: argparse.Namespace) -> int:
    from migrations import runner
    from ops.bench import scale_model
    from ops.corpus import growth
    from schema.cursors import CursorCodec

    at_start = machine()
    work = Path(tempfile.mkdtemp(prefix="civic-bench-scale-"))
    work.chmod(0o755)  # the stack runs as the postgres user, who must be able to walk into it
    directory = Path(args.dir) if args.dir else work / "stack"
    steps = growth.steps(args.steps)
    corpus = growth.planned(args.max_pages, args.seed)
    report: dict[str, Any] = {
        "benchmark": "scale", "max_pages": args.max_pages, "seed": args.seed, "runs": args.runs,
        "machine": at_start, "classes": [dataclasses.asdict(c) for c in CLASSES], "sizes": []}
    started = time.perf_counter()
    try:
        layout = stack.up(directory, replicas=0, base_port=args.base_port, memory_mb=args.memory_mb)
        admin = layout.bouncer_dsn("node1_session", user="postgres")
        runner.migrate(admin)
        growth.prepare(admin, corpus)
        secret = "bench-secret"  # noqa: S105  # signs cursors for this run only
        env = {**layout.gateway_env(), "GATEWAY_CURSOR_SECRET": secret, "GATEWAY_CACHE_ENABLED": "false",
               "GATEWAY_ROUTING_METADATA": "false", "GATEWAY_SEARCH_LOG_SAMPLE": "0"}
        codec = CursorCodec(hashlib.sha256(secret.encode()).digest())
        with psycopg.connect(admin, autocommit=True, prepare_threshold=None) as adm:
            report["server"] = server_info(adm)
            for step in steps:
                loaded = growth.load_step(admin, corpus, step, workers=args.workers, progress=True)
                pages = int(scalar(adm, "SELECT count(*) FROM public.meeting_page") or 0)
                entry: dict[str, Any] = {
                    "pages": pages,
                    "ingest": {"pages": loaded.pages, "seconds": round(loaded.seconds, 1),
                               "pages_per_second": round(loaded.pages_per_second, 1),
                               "copy_seconds": round(loaded.pages_seconds, 1),
                               "gin_merge_analyze_seconds": round(loaded.analyze_seconds, 1)},
                    "bytes": sizes(adm), "load_average": [round(x, 2) for x in os.getloadavg()]}
                say(json.dumps({k: v for k, v in entry.items() if k != "results"}))
                # A fresh gateway per size: its pools and caches start alike at every size.
                with GatewayProcess(env, port=args.port) as gw, \
                        httpx.Client(base_url=gw.url, timeout=120) as http:
                    direct = Direct(layout.bouncer_dsn(layout.node_names[0]))
                    try:
                        entry["results"] = measure(adm, http, direct, codec, args.runs)
                    finally:
                        direct.close()
                report["sizes"].append(entry)
                write_report(args.out, report)  # after every size: a run cut short keeps what it measured
        report["seconds"] = round(time.perf_counter() - started)
        report["machine_at_end"] = machine()
        report["model"] = scale_model.project(report)
        out = write_report(args.out, report)
        if args.plot:
            scale_model.plot(report, Path(args.plot))
        say(scale_model.markdown(report))
        say(f"written to {out}")
        return 0
    finally:
        if not args.keep:
            with contextlib.suppress(stack.StackError, OSError):
                stack.destroy(directory)
        shutil.rmtree(work, ignore_errors=True)


def main(rest: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops bench scale")
    parser.add_argument("--max-pages", type=int, default=2_000_000, help="the largest size of the series")
    parser.add_argument("--steps", type=int, default=5, help="sizes: max-pages halved steps-1 times")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=15, help="timed requests per class, gateway and SQL each")
    parser.add_argument("--dir", default="", help="stack folder (default: a throwaway one)")
    parser.add_argument("--keep", action="store_true", help="keep the stack (2M pages: about 20 GB)")
    parser.add_argument("--base-port", type=int, default=53432)
    parser.add_argument("--port", type=int, default=8741)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-mb", type=int, default=4096, help="RAM the node plans for")
    parser.add_argument("--out", default="scale", help="name of the JSON under docs/bench/")
    parser.add_argument("--plot", default="docs/scaling.png", help="PNG of the curves ('' for none)")
    parser.add_argument("--replot", action="store_true",
                        help="only redo the model and the plot from docs/bench/<out>.json")
    args = parser.parse_args(rest)
    if args.replot:
        from ops.bench import scale_model

        path = stack.PROJECT_DIR / "docs" / "bench" / f"{args.out}.json"
        report = json.loads(path.read_text())
        report["model"] = scale_model.project(report)
        write_report(args.out, report)
        if args.plot:
            scale_model.plot(report, Path(args.plot))
        say(scale_model.markdown(report))
        return 0
    return run(args)
