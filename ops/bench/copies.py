"""Bench schemas: UNLOGGED copies of the corpus (flat, yearly and monthly partitions) with the same indexes.

They live on the primary, with no WAL, so nothing is shipped to the replicas (which would triple the disk they
take), and are dropped at the end of a run unless ``--keep`` is given.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from collections.abc import Iterator, Sequence
from typing import Any

from psycopg import sql

from ops import stack
from ops.bench.cases import TABLE
from ops.bench.report import Conn, say, scalar

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


def run_sql(conn: Conn, text: str) -> None:
    conn.execute(text)


def build_copy(conn: Conn, schema: str, width: str, *, extra_index: str | None = None) -> dict[str, Any]:
    """An UNLOGGED copy of public.meeting_page in ``schema``: flat (``none``) or partitioned by ``width``,
    loaded with INSERT ... SELECT (stored vectors copied, not recomputed), then indexed, then VACUUM ANALYZE."""
    t = f"{schema}.meeting_page"
    run_sql(conn, f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    run_sql(conn, f"CREATE SCHEMA {schema}")
    timings: dict[str, float] = {}
    started = time.perf_counter()
    if width == "none":
        run_sql(conn, f"CREATE UNLOGGED TABLE {t} ({COLUMNS})")
        partitions = 0
    else:
        run_sql(conn, f"CREATE UNLOGGED TABLE {t} ({COLUMNS}) PARTITION BY RANGE (meeting_date)")
        lo, hi = conn.execute("SELECT min(meeting_date), max(meeting_date) FROM public.meeting_page").fetchone() or (
            None, None)
        assert lo is not None and hi is not None
        partitions = 0
        for name, a, b in _partition_bounds(width, lo, hi):
            run_sql(conn, f"CREATE UNLOGGED TABLE {schema}.meeting_page_{name} PARTITION OF {t} "
                       f"FOR VALUES FROM ('{a.isoformat()}') TO ('{b.isoformat()}')")
            partitions += 1
        run_sql(conn, f"CREATE UNLOGGED TABLE {schema}.meeting_page_default PARTITION OF {t} DEFAULT")
    timings["create"] = time.perf_counter() - started
    step = time.perf_counter()
    run_sql(conn, f"INSERT INTO {t} ({COLUMN_NAMES}) SELECT {COLUMN_NAMES} FROM public.meeting_page")
    timings["insert_select"] = time.perf_counter() - step
    indexes = list(INDEXES)
    if extra_index:
        indexes.append(("extra", extra_index))
    for label, ddl in indexes:
        step = time.perf_counter()
        run_sql(conn, ddl.format(t=t))
        timings[label] = time.perf_counter() - step
        say(f"  {schema}: {label} {timings[label]:.1f} s")
    step = time.perf_counter()
    run_sql(conn, f"VACUUM (ANALYZE) {t}")
    if width != "none":  # VACUUM of a partitioned parent does each partition; ANALYZE it for parent stats too
        run_sql(conn, f"ANALYZE {t}")
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


def check_disk(layout: stack.StackLayout, *, need_gb: float = 14.0) -> None:
    """A copy of the 1M corpus takes about 9 GB; refuse to fill a disk that others share."""
    free = shutil.disk_usage(layout.dir).free / 1e9
    if free < need_gb:
        raise stack.StackError(f"only {free:.0f} GB free; a bench copy needs about {need_gb:.0f} GB")


def drop_schemas(conn: Conn, schemas: Sequence[str]) -> None:
    for s in schemas:
        run_sql(conn, f"DROP SCHEMA IF EXISTS {s} CASCADE")


def on_table(conn: Conn, query: sql.Composable, table: str) -> str:
    """The statement text with the pages table swapped for a bench copy (our own constant SQL, not input)."""
    text = query.as_string(conn)
    return text if table == TABLE else text.replace(TABLE, table)


def direct_dsn(layout: stack.StackLayout) -> str:
    """The primary itself, not through PgBouncer: bench sessions SET things and need new backends."""
    return f"host=127.0.0.1 port={layout.node_ports[0]} dbname=civic user=postgres connect_timeout=3"


def indexes_used(node: dict[str, Any]) -> list[str]:
    found = [str(node["Index Name"])] if "Index Name" in node else []
    for child in node.get("Plans", []):
        found += [n for n in indexes_used(child) if n not in found]
    return found


def plan_times(conn: Conn, text: str, params: dict[str, Any], *, analyze: bool) -> tuple[float, float | None]:
    opts = "ANALYZE, TIMING OFF, SUMMARY ON, FORMAT JSON" if analyze else "SUMMARY ON, FORMAT JSON"
    doc = scalar(conn, f"EXPLAIN ({opts}) {text}", params)
    plan = (json.loads(doc) if isinstance(doc, str) else doc)[0]
    return float(plan["Planning Time"]), (float(plan["Execution Time"]) if analyze else None)
