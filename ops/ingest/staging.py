"""One worker's batch, applied in one transaction: COPY into a staging table, then upsert from it.

Every worker connection has its own temporary table ``ingest_stage`` (``ON COMMIT DELETE ROWS``: it is empty
again after every batch). A batch is COPYed into it, and then, in the same transaction:

1. the documents it names that do not exist yet are inserted (``meeting_document``, unique on municipality,
   meeting name, date and type) and every staged row gets its document id;
2. per target table (a partition, or a pending table for a new range), the staged rows identical to the stored
   page are deleted from the stage: *unchanged*, nothing is written, and the server computes no vector;
3. the remaining rows whose page exists are UPDATEd (*updated*), the others INSERTed (*inserted*).

Splitting 2 and 3 this way computes ``search_vector`` exactly once per written row. A single
``INSERT ... ON CONFLICT DO UPDATE`` would build the proposed row, vector included, for every staged row,
unchanged ones too, and build it again for every update. The INSERT keeps an ``ON CONFLICT ... DO UPDATE ...
WHERE ... IS DISTINCT FROM`` for a row another transaction inserted in between.

Statements name the target table itself rather than ``meeting_page``: no tuple routing, no partition pruning
to rely on in the plan, and the same SQL serves pending tables, which are not partitions yet.
"""

from __future__ import annotations

import dataclasses

from psycopg import sql

from migrations.partitions import PAGE_COLUMNS, Conn

# The stage holds one worker's share of one chunk; ON COMMIT DELETE ROWS empties it after every batch.
# toast_tuple_target = 8160: a page of text (2.5 kB on average) would otherwise cross the default 2 kB
# threshold and be run through pglz on its way into the stage, only to be decompressed for to_tsvector and
# compressed again by the partition it is written to. Measured here: COPY into the stage 5 times faster.
CREATE_STAGE = """
    CREATE TEMP TABLE IF NOT EXISTS ingest_stage (
        target          integer NOT NULL,
        id              text NOT NULL,
        meeting_date    date NOT NULL,
        municipality_id integer NOT NULL,
        document_type   public.document_type NOT NULL,
        meeting_name    text NOT NULL,
        page_number     integer NOT NULL,
        text            text NOT NULL,
        page_image      text,
        document_id     bigint
    ) WITH (toast_tuple_target = 8160) ON COMMIT DELETE ROWS
"""
COPY_STAGE = (
    "COPY pg_temp.ingest_stage (target, id, meeting_date, municipality_id, document_type, meeting_name, "
    "page_number, text, page_image) FROM STDIN"
)
# NOT EXISTS first: ON CONFLICT DO NOTHING alone would draw an identity value for every known document.
_INSERT_DOCUMENTS = """
    INSERT INTO public.meeting_document (municipality_id, meeting_name, meeting_date, document_type)
    SELECT DISTINCT s.municipality_id, s.meeting_name, s.meeting_date, s.document_type
      FROM pg_temp.ingest_stage s
     WHERE NOT EXISTS (SELECT 1 FROM public.meeting_document d
                        WHERE d.municipality_id = s.municipality_id AND d.meeting_name = s.meeting_name
                          AND d.meeting_date = s.meeting_date AND d.document_type = s.document_type)
     ORDER BY 1, 2, 3, 4
    ON CONFLICT (municipality_id, meeting_name, meeting_date, document_type) DO NOTHING
"""
_SET_DOCUMENT_IDS = """
    UPDATE pg_temp.ingest_stage s SET document_id = d.id
      FROM public.meeting_document d
     WHERE d.municipality_id = s.municipality_id AND d.meeting_name = s.meeting_name
       AND d.meeting_date = s.meeting_date AND d.document_type = s.document_type
"""
# Everything but the key; a page is unchanged when all of these are equal (search_vector follows text).
_VALUE_COLUMNS = [c for c in PAGE_COLUMNS if c not in ("id", "meeting_date")]


def _values(alias: str) -> sql.Composable:
    return sql.SQL(", ").join(
        sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(c)) for c in _VALUE_COLUMNS
    )


_DELETE_UNCHANGED = sql.SQL(
    "DELETE FROM pg_temp.ingest_stage s USING {target} t "
    "WHERE s.target = %s AND t.id = s.id AND t.meeting_date = s.meeting_date "
    "AND ({old}) IS NOT DISTINCT FROM ({new})"
)
_UPDATE_CHANGED = sql.SQL(
    "UPDATE {target} t SET {sets} FROM pg_temp.ingest_stage s "
    "WHERE s.target = %s AND t.id = s.id AND t.meeting_date = s.meeting_date "
    "AND ({old}) IS DISTINCT FROM ({new})"
)
# ON CONFLICT covers a row another transaction inserted since the NOT EXISTS looked.
_INSERT_NEW = sql.SQL(
    "INSERT INTO {target} AS t ({cols}) SELECT {scols} FROM pg_temp.ingest_stage s "
    "WHERE s.target = %s AND NOT EXISTS (SELECT 1 FROM {target} x WHERE x.id = s.id "
    "AND x.meeting_date = s.meeting_date) "
    "ON CONFLICT (id, meeting_date) DO UPDATE SET {esets} WHERE ({old}) IS DISTINCT FROM ({excluded})"
)


def _merge_statements(target: str) -> tuple[sql.Composed, sql.Composed, sql.Composed]:
    ident = sql.Identifier("public", target)
    delete = _DELETE_UNCHANGED.format(target=ident, old=_values("t"), new=_values("s"))
    update = _UPDATE_CHANGED.format(
        target=ident,
        sets=sql.SQL(", ").join(sql.SQL("{0} = s.{0}").format(sql.Identifier(c)) for c in _VALUE_COLUMNS),
        old=_values("t"),
        new=_values("s"),
    )
    insert = _INSERT_NEW.format(
        target=ident,
        cols=sql.SQL(", ").join(sql.Identifier(c) for c in PAGE_COLUMNS),
        scols=sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(c)) for c in PAGE_COLUMNS),
        esets=sql.SQL(", ").join(
            sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c)) for c in _VALUE_COLUMNS
        ),
        old=_values("t"),
        excluded=_values("excluded"),
    )
    return delete, update, insert


@dataclasses.dataclass
class Task:
    """One worker's share of one batch: stage rows (target index first) and the target tables they index."""

    seq: int
    targets: list[str]
    rows: list[tuple[object, ...]]


@dataclasses.dataclass
class Counts:
    """What batches did; ``touched`` names the tables that had rows inserted or updated."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    documents: int = 0
    touched: set[str] = dataclasses.field(default_factory=set)

    def add(self, other: Counts) -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.documents += other.documents
        self.touched |= other.touched


def create_stage(conn: Conn) -> None:
    """Create this connection's staging table (a session-mode connection: temporary tables live per session)."""
    conn.execute(CREATE_STAGE)


def apply(conn: Conn, task: Task) -> Counts:
    """Stage and upsert ``task`` in one transaction; returns its counts (only once it has committed)."""
    counts = Counts()
    with conn.transaction(), conn.cursor() as cur:
        with cur.copy(COPY_STAGE) as copy:
            for row in task.rows:
                copy.write_row(row)
        # Temporary tables are never auto-analyzed, and without statistics the planner guesses the stage's
        # size from its pages (tens of thousands of "rows"): it could then hash-join a whole partition of
        # millions of pages instead of probing its primary key once per staged row.
        cur.execute("ANALYZE pg_temp.ingest_stage (target, id, meeting_date, municipality_id, meeting_name)")
        counts.documents = cur.execute(_INSERT_DOCUMENTS).rowcount
        cur.execute(_SET_DOCUMENT_IDS)
        for index, target in enumerate(task.targets):
            delete, update, insert = _merge_statements(target)
            counts.unchanged += cur.execute(delete, [index]).rowcount
            updated = cur.execute(update, [index]).rowcount
            inserted = cur.execute(insert, [index]).rowcount
            counts.updated += updated
            counts.inserted += inserted
            if updated or inserted:
                counts.touched.add(target)
    return counts
