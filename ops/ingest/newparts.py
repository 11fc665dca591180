"""Brand-new partitions: load a standalone table, index it, then attach it to ``meeting_page``.

An index created on the partitioned parent is built on every partition at once, and a partition created with
``PARTITION OF`` therefore has all of them while it is loaded, each updated row by row (the GIN index above all
is several times slower to maintain that way than to build afterwards). A range that has no partition yet is
loaded instead into a plain table made ``LIKE meeting_page`` with:

* the primary key, which the loader's upsert needs (a resumed run reloads rows it may already hold), and the
  parent's index on ``(document_id, page_number)``, which its check for duplicate page numbers probes (a
  B-tree of two integers: cheap to keep up row by row, unlike the GIN index);
* a CHECK constraint equal to the partition bound, so that ``ATTACH PARTITION`` can skip scanning the table;
* a table comment that marks it as pending, so that a run interrupted before attaching is finished by the next
  run (resumed or not): the rows in it are committed data, and the pending state lives in the database itself;
* a trigger of its own that fills ``search_vector`` (:data:`PENDING_TRIGGER`, the function of the parent's
  trigger): ``LIKE`` copies no trigger, and a standalone table does not get the parent's clone until it is
  attached. ``attach`` drops it in the attaching transaction, so that only the clone fires afterwards.

Once loaded, the table gets the parent's other indexes (built in bulk, in parallel across tables), and then,
in one short transaction: the rows that other writers put into the DEFAULT partition for the same range
meanwhile are moved into it (DEFAULT would otherwise make the attach fail), it is attached, and the CHECK
constraint and the comment are dropped. The parent's indexes adopt the matching child indexes, so attaching
builds nothing. When someone else has created a partition for the range in the meantime, the table is merged
into ``meeting_page`` instead and dropped.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import re

from psycopg import sql

from migrations import partitions
from migrations.partitions import PAGE_COLUMNS, Conn, Width

PENDING_TAG = "civic-ingest: pending partition of meeting_page"
_COMMENT_RE = re.compile(re.escape(PENDING_TAG) + r" FROM (\d{4}-\d{2}-\d{2}) TO (\d{4}-\d{2}-\d{2})$")
_INDEXDEF_RE = re.compile(r"^CREATE (UNIQUE )?INDEX \S+ ON (?:ONLY )?\S+ (USING .+)$")
_COLUMNS = sql.SQL(", ").join(sql.Identifier(c) for c in PAGE_COLUMNS)
LOAD_INDEX = "(document_id, page_number)"  # the one parent index a pending table has while it is loaded
# The pending table's own search_vector trigger (migrations/sql/0011_index_prefix.sql). Not the parent's trigger
# name: ATTACH clones the parent's trigger under that name, and refuses when the table already has one.
PENDING_TRIGGER = "civic_pending_search_vector"
VECTOR_FUNCTION = "civic_page_search_vector"
# Columns an upsert may change (everything but the key); the server's trigger computes search_vector.
_CHANGEABLE = [c for c in PAGE_COLUMNS if c not in ("id", "meeting_date")]


@dataclasses.dataclass(frozen=True)
class PendingPartition:
    """A standalone table that will become the partition [start, end) of ``meeting_page``."""

    name: str
    start: dt.date
    end: dt.date

    @property
    def check_name(self) -> str:
        return f"{self.name}_ingest_range"


def overlaps(parts: list[partitions.PartitionInfo], start: dt.date, end: dt.date) -> bool:
    """Whether any attached range partition overlaps [start, end)."""
    return any(p.start is not None and p.end is not None and p.start < end and start < p.end for p in parts)


def find_pending(conn: Conn) -> list[PendingPartition]:
    """The pending tables left in the database (by this run or an interrupted earlier one)."""
    rows = conn.execute(
        """
        SELECT c.relname, d.description
          FROM pg_class c
          JOIN pg_description d ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND NOT c.relispartition
           AND d.description LIKE %s
         ORDER BY 1
        """,
        [PENDING_TAG + "%"],
    ).fetchall()
    found = []
    for name, comment in rows:
        match = _COMMENT_RE.match(str(comment))
        if match:
            start, end = (dt.date.fromisoformat(match.group(i)) for i in (1, 2))
            found.append(PendingPartition(str(name), start, end))
    return found


def create_pending(conn: Conn, start: dt.date, end: dt.date, name: str) -> PendingPartition:
    """Create the standalone table for [start, end) with its primary key, range check and pending mark."""
    pending = PendingPartition(name, start, end)
    table = sql.Identifier("public", name)
    with conn.transaction():
        # INCLUDING CONSTRAINTS: ATTACH wants every CHECK of the parent. search_vector is an ordinary column
        # that the trigger below fills, as the parent's clone does in every partition.
        conn.execute(
            sql.SQL(
                "CREATE TABLE {table} (LIKE public.meeting_page INCLUDING DEFAULTS "
                "INCLUDING CONSTRAINTS, PRIMARY KEY (id, meeting_date), "
                "CONSTRAINT {check} CHECK (meeting_date >= {start} AND meeting_date < {end}))"
            ).format(
                table=table,
                check=sql.Identifier(pending.check_name),
                start=sql.Literal(start),
                end=sql.Literal(end),
            )
        )
        conn.execute(
            sql.SQL(
                "CREATE TRIGGER {trigger} BEFORE INSERT OR UPDATE OF text, search_vector ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION {function}()"
            ).format(
                trigger=sql.Identifier(PENDING_TRIGGER),
                table=table,
                function=sql.Identifier("public", VECTOR_FUNCTION),
            )
        )
        comment = f"{PENDING_TAG} FROM {start.isoformat()} TO {end.isoformat()}"
        conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(table, sql.Literal(comment)))
        for statement in index_statements(conn, name):
            if LOAD_INDEX in statement.as_string(conn):
                conn.execute(statement)
    return pending


def _index_tail(definition: str) -> tuple[bool, str] | None:
    match = _INDEXDEF_RE.match(definition)
    return (bool(match.group(1)), match.group(2)) if match else None


def index_statements(conn: Conn, table: str) -> list[sql.Composed]:
    """``CREATE INDEX`` statements that give ``table`` each parent index it lacks (primary key aside).

    Built from ``pg_get_indexdef`` of the parent's indexes: the part after the table name (``USING gin
    (search_vector)``) is reproduced exactly, so whatever the migrations declare (opclass, INCLUDE, WHERE, sort
    order) the child index matches and ATTACH adopts it instead of building its own.
    """
    parent = conn.execute(
        "SELECT pg_get_indexdef(indexrelid) FROM pg_index "
        "WHERE indrelid = 'public.meeting_page'::regclass AND NOT indisprimary ORDER BY indexrelid"
    ).fetchall()
    have = conn.execute(
        "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = %s::regclass",
        [f"public.{table}"],
    ).fetchall()
    existing = {_index_tail(str(d)) for (d,) in have}
    statements = []
    for (definition,) in parent:
        tail = _index_tail(str(definition))
        if tail is None or tail in existing:
            continue  # unparseable definitions are left to ATTACH, which builds a matching index itself
        unique, rest = tail
        statements.append(
            sql.SQL("CREATE {unique}INDEX ON {table} {rest}").format(
                unique=sql.SQL("UNIQUE " if unique else ""),
                table=sql.Identifier("public", table),
                # Server-generated SQL from pg_get_indexdef, not input: it is the index's own definition.
                rest=sql.SQL(rest),
            )
        )
    return statements


def _default_partition(conn: Conn) -> str | None:
    row = conn.execute(
        "SELECT c.relname FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partdefid "
        "WHERE p.partrelid = 'public.meeting_page'::regclass"
    ).fetchone()
    return str(row[0]) if row else None


def attach(conn: Conn, pending: PendingPartition, *, lock_timeout_ms: int = 10_000) -> str:
    """Attach ``pending`` as a partition (or merge it when its range is taken); returns what was done.

    One transaction under a ``lock_timeout``: ATTACH needs a brief exclusive lock on the DEFAULT partition,
    and it must never queue behind a long transaction while every search queues behind it. On a timeout the
    table simply stays pending and the next run attaches it.
    """
    table = sql.Identifier("public", pending.name)
    with conn.transaction():
        conn.execute("SELECT set_config('lock_timeout', %s, true)", [f"{lock_timeout_ms}ms"])
        if overlaps(partitions.list_partitions(conn), pending.start, pending.end):
            # Someone created a partition for (part of) the range meanwhile: upsert through the parent.
            conn.execute(
                sql.SQL(
                    "INSERT INTO public.meeting_page AS t ({cols}) SELECT {cols} FROM {table} "
                    "ON CONFLICT (id, meeting_date) DO UPDATE SET {sets} WHERE ({old}) IS DISTINCT FROM ({new})"
                ).format(
                    cols=_COLUMNS,
                    table=table,
                    sets=sql.SQL(", ").join(
                        sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c)) for c in _CHANGEABLE
                    ),
                    old=sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in _CHANGEABLE),
                    new=sql.SQL(", ").join(
                        sql.SQL("excluded.{}").format(sql.Identifier(c)) for c in _CHANGEABLE
                    ),
                )
            )
            conn.execute(sql.SQL("DROP TABLE {}").format(table))
            return f"merged {pending.name} into existing partitions"
        moved = 0
        default = _default_partition(conn)
        if default is not None:
            # ATTACH fails if DEFAULT holds rows of the new range ("updated partition constraint for default
            # partition would be violated"). Lock DEFAULT first so no writer adds one between move and attach.
            default_table = sql.Identifier("public", default)
            conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(default_table))
            # The ingested row wins a clash: an ingest is an upsert of its source over what the database had.
            moved = conn.execute(
                sql.SQL(
                    "WITH gone AS (DELETE FROM {default} WHERE meeting_date >= %s AND meeting_date < %s "
                    "RETURNING {cols}) INSERT INTO {table} ({cols}) SELECT {cols} FROM gone "
                    "ON CONFLICT (id, meeting_date) DO NOTHING"
                ).format(default=default_table, table=table, cols=_COLUMNS),
                [pending.start, pending.end],
            ).rowcount
        # ATTACH clones the parent's search_vector trigger onto the table: its own must go first, or every
        # write would compute the vector twice (and the rows moved from DEFAULT above got theirs from it).
        conn.execute(
            sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(sql.Identifier(PENDING_TRIGGER), table)
        )
        conn.execute(
            sql.SQL(
                "ALTER TABLE public.meeting_page ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})"
            ).format(table, sql.Literal(pending.start), sql.Literal(pending.end))
        )
        # The range check duplicates the partition bound now; the comment would make it look pending.
        conn.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(table, sql.Identifier(pending.check_name))
        )
        conn.execute(sql.SQL("COMMENT ON TABLE {} IS NULL").format(table))
    suffix = f" (moved {moved} rows from DEFAULT)" if moved else ""
    return f"attached {pending.name} FOR VALUES FROM ({pending.start}) TO ({pending.end}){suffix}"


class Router:
    """Which table a date's rows go to: its partition, or the pending table of its range (created on demand)."""

    def __init__(self, conn: Conn, width: Width) -> None:
        self.conn = conn
        self.width = width
        self.parts = [p for p in partitions.list_partitions(conn) if p.start is not None]
        # (start, end, name) sorted by start; attached ranges never overlap, so bisecting on start finds a date.
        self.ranges = [
            (p.start, p.end, p.name) for p in self.parts if p.start is not None and p.end is not None
        ]
        self.starts = [r[0] for r in self.ranges]
        self.pending = {p.start: p for p in find_pending(conn)}
        self.created: list[str] = []
        self.notes: list[str] = []

    def target(self, day: dt.date) -> str:
        """The table for rows dated ``day`` (creating a pending table for a range with no partition)."""
        i = bisect.bisect_right(self.starts, day) - 1
        if i >= 0 and day < self.ranges[i][1]:
            return self.ranges[i][2]
        # A pending table may have been made at another width (the policy changed between runs).
        for pending in self.pending.values():
            if pending.start <= day < pending.end:
                return pending.name
        start = partitions.period_start(day, self.width)
        end = partitions.period_end(start, self.width)
        if overlaps(self.parts, start, end):
            # The width changed and this period straddles existing partitions: let the parent route its rows
            # (to DEFAULT), as `partitions ensure` would leave them.
            note = f"[{start}, {end}) overlaps existing partitions: its rows were written through DEFAULT"
            if note not in self.notes:
                self.notes.append(note)
            return partitions.PARENT
        pending = create_pending(self.conn, start, end, partitions.partition_name(start, self.width))
        self.pending[start] = pending
        self.created.append(pending.name)
        return pending.name
