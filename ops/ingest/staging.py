"""One worker's batch, applied in one transaction: COPY into a staging table, then upsert from it.

Every batch is COPYed into a staging table of its own, an unlogged table that the batch's transaction creates
and drops (a temporary table would be simpler, but a transaction that touched one cannot be prepared), and
then, in the same transaction:

1. the documents it names that do not exist yet are inserted (``meeting_document``, unique on municipality,
   meeting name, date and type) and every staged row gets its document id;
2. per target table (a partition, or a pending table for a new range), the staged rows identical to the stored
   page are deleted from the stage: *unchanged*, nothing is written, and the server computes no vector;
3. the remaining rows whose page exists are UPDATEd (*updated*), the others INSERTed (*inserted*).

Two kinds of bad row can only be seen here, and each is taken out of the stage and reported with its
position (``file:line``) while the rest of the batch goes on:

* a page number that a stored page of the same document already holds (the first page to claim a number
  keeps it: a document cannot have two pages 3; the reader checks the rows of a run against each other);
* a row the database refuses as data (SQLSTATE classes 22, 23 and 54: a value out of range, a constraint,
  "string is too long for tsvector"). The merge of a target runs under a savepoint; when it fails for such a
  reason, it is rolled back to the savepoint and retried on halves of the rows, down to the single row at
  fault, which is reported. Other errors (a lost connection, a full disk) fail the batch as before.

With ``prepare_as``, the transaction is not committed but prepared (``PREPARE TRANSACTION``): the loader
commits the prepared transactions of every worker's share of a batch together, so that a batch is never
committed in part (:mod:`ops.ingest.loader`).

Splitting 2 and 3 this way computes ``search_vector`` exactly once per written row. A single
``INSERT ... ON CONFLICT DO UPDATE`` would build the proposed row, vector included, for every staged row,
unchanged ones too, and build it again for every update. The INSERT keeps an ``ON CONFLICT ... DO UPDATE ...
WHERE ... IS DISTINCT FROM`` for a row another transaction inserted in between.

Statements name the target table itself rather than ``meeting_page``: no tuple routing, no partition pruning
to rely on in the plan, and the same SQL serves pending tables, which are not partitions yet.
"""

from __future__ import annotations

import contextlib
import dataclasses

import psycopg
from psycopg import sql

from migrations.partitions import PAGE_COLUMNS, Conn

# The stage holds one worker's share of one chunk, and lives as long as its transaction: created at the start,
# dropped before the commit (or PREPARE). Unlogged: it is never read after a crash.
# toast_tuple_target = 8160: a page of text (2.5 kB on average) would otherwise cross the default 2 kB threshold and be run through pglz on its way into the stage, only to be decompressed for to_tsvector and
# compressed again by the partition it is written to. Measured here: COPY into the stage 5 times faster.
CREATE_STAGE = sql.SQL("""
    CREATE UNLOGGED TABLE {stage} (
        target          integer NOT NULL,
        line            integer NOT NULL,
        id              text NOT NULL,
        meeting_date    date NOT NULL,
        municipality_id integer NOT NULL,
        document_type   public.document_type NOT NULL,
        meeting_name    text NOT NULL,
        page_number     integer NOT NULL,
        text            text NOT NULL,
        page_image      text,
        document_id     bigint
    ) WITH (toast_tuple_target = 8160, autovacuum_enabled = false)
""")
COPY_STAGE = sql.SQL(
    "COPY {stage} (target, line, id, meeting_date, municipality_id, document_type, meeting_name, "
    "page_number, text, page_image) FROM STDIN"
)
# NOT EXISTS first: ON CONFLICT DO NOTHING alone would draw an identity value for every known document.
_INSERT_DOCUMENTS = sql.SQL("""
    INSERT INTO public.meeting_document (municipality_id, meeting_name, meeting_date, document_type)
    SELECT DISTINCT s.municipality_id, s.meeting_name, s.meeting_date, s.document_type
      FROM {stage} s
     WHERE NOT EXISTS (SELECT 1 FROM public.meeting_document d
                        WHERE d.municipality_id = s.municipality_id AND d.meeting_name = s.meeting_name
                          AND d.meeting_date = s.meeting_date AND d.document_type = s.document_type)
     ORDER BY 1, 2, 3, 4
    ON CONFLICT (municipality_id, meeting_name, meeting_date, document_type) DO NOTHING
""")
_SET_DOCUMENT_IDS = sql.SQL("""
    UPDATE {stage} s SET document_id = d.id
      FROM public.meeting_document d
     WHERE d.municipality_id = s.municipality_id AND d.meeting_name = s.meeting_name
       AND d.meeting_date = s.meeting_date AND d.document_type = s.document_type
""")
# Everything but the key; a page is unchanged when all of these are equal (search_vector follows text).
_VALUE_COLUMNS = [c for c in PAGE_COLUMNS if c not in ("id", "meeting_date")]


def _values(alias: str) -> sql.Composable:
    return sql.SQL(", ").join(
        sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(c)) for c in _VALUE_COLUMNS
    )


# Every merge statement works on the staged rows of one target whose line is in [lo, hi): all of them, or
# the half being retried after a row was refused.
_RANGE = "s.target = %s AND s.line >= %s AND s.line < %s"
_DELETE_UNCHANGED = sql.SQL(
    "DELETE FROM {stage} s USING {target} t "
    "WHERE " + _RANGE + " AND t.id = s.id AND t.meeting_date = s.meeting_date "
    "AND ({old}) IS NOT DISTINCT FROM ({new})"
)
_UPDATE_CHANGED = sql.SQL(
    "UPDATE {target} t SET {sets} FROM {stage} s "
    "WHERE " + _RANGE + " AND t.id = s.id AND t.meeting_date = s.meeting_date "
    "AND ({old}) IS DISTINCT FROM ({new})"
)
# ON CONFLICT covers a row another transaction inserted since the NOT EXISTS looked.
_INSERT_NEW = sql.SQL(
    "INSERT INTO {target} AS t ({cols}) SELECT {scols} FROM {stage} s "
    "WHERE " + _RANGE + " AND NOT EXISTS (SELECT 1 FROM {target} x WHERE x.id = s.id "
    "AND x.meeting_date = s.meeting_date) "
    "ON CONFLICT (id, meeting_date) DO UPDATE SET {esets} WHERE ({old}) IS DISTINCT FROM ({excluded})"
)


# A page number that another page of the same document already holds in the target. The reader has checked
# the rows of the run against each other (ops.ingest.loader); this checks them against stored pages, through
# the (document_id, page_number) index every partition and pending table has (newparts.create_pending).
_DELETE_DUPLICATE_PAGES = sql.SQL(
    "DELETE FROM {stage} s USING {target} t WHERE s.target = %s AND t.document_id = s.document_id "
    "AND t.page_number = s.page_number AND t.id <> s.id RETURNING s.line, s.page_number"
)
_LINES = sql.SQL("SELECT line FROM {stage} s WHERE " + _RANGE + " ORDER BY line")
_DROP_LINE = sql.SQL("DELETE FROM {stage} WHERE line = %s")
_ANALYZE = sql.SQL("ANALYZE {stage} (target, line, id, meeting_date, municipality_id, meeting_name)")
_DROP_STAGE = sql.SQL("DROP TABLE {stage}")
# SQLSTATE classes of a row the database refuses as data: 22 data exception, 23 integrity constraint
# violation, 54 program limit exceeded ("string is too long for tsvector").
_ROW_PROBLEMS = ("22", "23", "54")


def _merge_statements(
    stage: sql.Identifier, target: str
) -> tuple[sql.Composed, sql.Composed, sql.Composed]:
    ident = sql.Identifier("public", target)
    delete = _DELETE_UNCHANGED.format(stage=stage, target=ident, old=_values("t"), new=_values("s"))
    update = _UPDATE_CHANGED.format(
        stage=stage,
        target=ident,
        sets=sql.SQL(", ").join(sql.SQL("{0} = s.{0}").format(sql.Identifier(c)) for c in _VALUE_COLUMNS),
        old=_values("t"),
        new=_values("s"),
    )
    insert = _INSERT_NEW.format(
        stage=stage,
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
    stage: str  # the name of the batch's staging table (unique per run, batch and worker)
    targets: list[str]
    rows: list[tuple[object, ...]]  # (target index, line, id, date, ...): line indexes ``where``
    where: list[str] = dataclasses.field(default_factory=list)  # each row's position in its source


@dataclasses.dataclass
class Counts:
    """What batches did; ``touched`` names the tables that had rows inserted or updated."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    documents: int = 0
    touched: set[str] = dataclasses.field(default_factory=set)
    rejected: list[tuple[int, str]] = dataclasses.field(default_factory=list)  # (line, reason)

    def add(self, other: Counts) -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.documents += other.documents
        self.touched |= other.touched
        self.rejected += other.rejected


def _row_problem(exc: psycopg.Error) -> bool:
    return (exc.sqlstate or "")[:2] in _ROW_PROBLEMS


def _merge(
    cur: psycopg.Cursor[tuple[object, ...]],
    stage: sql.Identifier,
    target: str,
    index: int,
    lo: int,
    hi: int,
    counts: Counts,
) -> None:
    """Merge the staged rows of ``target`` with lines in [lo, hi), isolating any row the database refuses."""
    delete, update, insert = _merge_statements(stage, target)
    args = [index, lo, hi]
    cur.execute("SAVEPOINT ingest_merge")
    try:
        unchanged = cur.execute(delete, args).rowcount
        updated = cur.execute(update, args).rowcount
        inserted = cur.execute(insert, args).rowcount
    except psycopg.Error as exc:
        if not _row_problem(exc):
            raise
        cur.execute("ROLLBACK TO SAVEPOINT ingest_merge")
        cur.execute("RELEASE SAVEPOINT ingest_merge")
        lines = [int(str(r[0])) for r in cur.execute(_LINES.format(stage=stage), args).fetchall()]
        if len(lines) <= 1:
            for line in lines:
                cur.execute(_DROP_LINE.format(stage=stage), [line])
                message = exc.diag.message_primary or str(exc)
                counts.rejected.append((line, f"the database refused the row: {message}"))
            return
        middle = lines[len(lines) // 2]
        _merge(cur, stage, target, index, lo, middle, counts)
        _merge(cur, stage, target, index, middle, hi, counts)
        return
    cur.execute("RELEASE SAVEPOINT ingest_merge")
    counts.unchanged += unchanged
    counts.updated += updated
    counts.inserted += inserted
    if updated or inserted:
        counts.touched.add(target)


def _work(conn: Conn, task: Task) -> Counts:
    counts = Counts()
    stage = sql.Identifier("public", task.stage)
    with conn.cursor() as cur:
        cur.execute(CREATE_STAGE.format(stage=stage))
        with cur.copy(COPY_STAGE.format(stage=stage)) as copy:
            for row in task.rows:
                copy.write_row(row)
        # A new table has no statistics, and without them the planner guesses the stage's size from its
        # pages (tens of thousands of "rows"): it could then hash-join a whole partition of millions of pages
        # instead of probing its primary key once per staged row.
        cur.execute(_ANALYZE.format(stage=stage))
        counts.documents = cur.execute(_INSERT_DOCUMENTS.format(stage=stage)).rowcount
        cur.execute(_SET_DOCUMENT_IDS.format(stage=stage))
        for index, target in enumerate(task.targets):
            duplicate = _DELETE_DUPLICATE_PAGES.format(stage=stage, target=sql.Identifier("public", target))
            for line, number in cur.execute(duplicate, [index]).fetchall():
                counts.rejected.append(
                    (int(str(line)), f"page {number} of this document is already another page's number")
                )
            _merge(cur, stage, target, index, 0, len(task.rows), counts)
        cur.execute(_DROP_STAGE.format(stage=stage))
    return counts


def apply(conn: Conn, task: Task, *, prepare_as: str | None = None) -> Counts:
    """Stage and upsert ``task`` in one transaction; returns its counts (only once it has committed).

    With ``prepare_as``, the transaction is prepared under that global id instead of committed, and the
    counts are returned once it is prepared (the caller commits or rolls it back with ``COMMIT PREPARED``).
    A connection in autocommit mode is expected (the loader's connections are).
    """
    if prepare_as is None:
        with conn.transaction():
            return _work(conn, task)
    conn.execute("BEGIN")
    try:
        counts = _work(conn, task)
        conn.execute(sql.SQL("PREPARE TRANSACTION {}").format(sql.Literal(prepare_as)))
    except BaseException:
        with contextlib.suppress(psycopg.Error):
            conn.execute("ROLLBACK")
        raise
    return counts
