"""The end of a complete run: pending tables indexed (in parallel) and attached, written partitions ANALYZEd."""

from __future__ import annotations

import functools
import queue
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from psycopg import sql

from migrations import partitions
from migrations.partitions import Conn
from ops.ingest import newparts, staging


class IngestSummaryLike(Protocol):
    """The part of :class:`ops.ingest.loader.IngestSummary` the finishing phases fill in."""

    phases: dict[str, float]
    partitions_created: list[str]
    pending: list[str]
    analyzed: list[str]
    notes: list[str]


def finish(
    summary: IngestSummaryLike, conn: Conn, conns: list[Conn], router: newparts.Router, totals: staging.Counts
) -> None:
    """Index and attach pending tables, then ANALYZE what was written (each step spread over ``conns``)."""
    pending = sorted(router.pending.values(), key=lambda p: p.start)
    began = time.perf_counter()
    statements = [s for p in pending for s in newparts.index_statements(conn, p.name)]
    parallel(conns, [functools.partial(_execute, s) for s in statements])
    summary.phases["index"] = time.perf_counter() - began

    began = time.perf_counter()
    attached = []
    for p in pending:
        summary.notes.append(newparts.attach(conn, p))
        attached.append(p.name)
    summary.phases["attach"] = time.perf_counter() - began
    summary.partitions_created = attached
    summary.pending = []

    began = time.perf_counter()
    fresh = set(attached)
    # Freshly built GIN indexes have no pending list; the others collected one entry per written row.
    written = sorted(t for t in totals.touched if t != partitions.PARENT and t not in fresh)
    jobs: list[Callable[[Conn], None]] = [functools.partial(_merge_gin_pending, t) for t in written]
    analyze = sorted(set(written) | fresh)
    jobs += [
        functools.partial(_execute, sql.SQL("ANALYZE {}").format(sql.Identifier("public", t)))
        for t in analyze
    ]
    if totals.documents:
        jobs.append(functools.partial(_execute, sql.SQL("ANALYZE public.meeting_document")))
    parallel(conns, jobs)
    summary.analyzed = analyze
    summary.phases["analyze"] = time.perf_counter() - began




def _execute(statement: sql.SQL | sql.Composed, conn: Conn) -> None:
    conn.execute(statement)


def _merge_gin_pending(table: str, conn: Conn) -> None:
    conn.execute(
        "SELECT gin_clean_pending_list(x.indexrelid) FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid "
        "JOIN pg_am a ON a.oid = c.relam WHERE x.indrelid = %s::regclass AND a.amname = 'gin'",
        [f"public.{table}"],
    )


def parallel(conns: list[Conn], jobs: Sequence[Callable[[Conn], None]]) -> None:
    """Run ``jobs`` over the connections, one job per connection at a time; re-raises the first failure."""
    if not jobs:
        return
    free: queue.Queue[Conn] = queue.Queue()
    for c in conns:
        free.put(c)

    def one(job: Callable[[Conn], None]) -> None:
        c = free.get()
        try:
            job(c)
        finally:
            free.put(c)

    with ThreadPoolExecutor(max_workers=len(conns), thread_name_prefix="ingest-finish") as pool:
        for future in [pool.submit(one, job) for job in jobs]:
            future.result()


