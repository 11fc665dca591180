"""The search cases benchmarks run: query classes, orders and depths, and the corpus they run on."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from typing import Any

import psycopg
from psycopg import sql

from ops import stack
from ops.bench.report import Conn, machine, say, scalar, server_info, write_report
from ops.common.database import migrate_and_load

TABLE = "public.meeting_page"

# Query classes, chosen against the synthetic corpus (ops/corpus/) for their share of matching pages on
# the 1,000,000-page corpus of seed 1; the share is measured at the start of every run and reported next to
# the figures. "no match" is the worst case of a plain newest-first index walk, which checks every row it passes; a
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

# What the search must meet: p95 in milliseconds by order, and ratios to the same SQL sent directly.
TARGET_NEWEST_P95_MS = 50.0
TARGET_RELEVANCE_P95_MS = 300.0
TARGET_DEEP_RATIO = 1.5
TARGET_GATEWAY_RATIO = 1.3


def ensure_corpus(layout: stack.StackLayout, pages: int) -> int:
    """Migrate and load ``pages`` synthetic pages unless at least that many are there already.

    A load is timed and recorded in ``docs/bench/corpus_load.json``.
    """
    admin = layout.bouncer_dsn("node1_session", user="postgres")
    started = time.perf_counter()
    have, stats = migrate_and_load(admin, pages=pages, reload_smaller=True)
    if stats is None:
        return have
    wall = time.perf_counter() - started
    with psycopg.connect(admin, autocommit=True, prepare_threshold=None) as conn:
        size = scalar(conn, sql.SQL(
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
    say(f"loaded {pages:,} pages: {stats}")
    return pages


def _town(conn: Conn) -> str:
    value = scalar(conn, sql.SQL("SELECT m.subdomain FROM public.municipality m ORDER BY m.id LIMIT 1 OFFSET {}")
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
    return int(scalar(conn, text, params) or 0)


def cursor_key_at(conn: Conn, spec: Any, offset: int) -> list[Any] | None:
    """The keyset cursor of the row just before result ``offset + 1`` (set-up only, never timed)."""
    from schema import search_sql

    if spec.order == "RELEVANCE":
        # Column 8 is RUM's distance (lower is better); the key is [distance, date, id, position].
        query, params = search_sql.relevance_page(spec, forward=True, size=offset + 1, cursor=None)
        rows = [r for r in conn.execute(query, params).fetchall() if r[0] is not None]
        rows.sort(key=lambda r: (-r[8], r[1], r[0]), reverse=True)
        if len(rows) < offset:
            return None
        last = rows[offset - 1]
        return [last[8], last[1].isoformat(), last[0], offset - 1]
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
