"""``python -m ops bench explain``: EXPLAIN (ANALYZE, BUFFERS) of the search statements on a replica."""

from __future__ import annotations

import argparse
from pathlib import Path

import psycopg
from psycopg import sql

from ops import stack
from ops.bench.cases import PAGE_SIZE, cases, cursor_key_at
from ops.bench.report import say


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
                    say(f"\n=== {case.name} ({case.query!r}) {order} page {depth}")
                    say("\n".join(str(r[0]) for r in plan))
    return 0
