"""COPYing a corpus into the database over parallel connections, and ``python -m ops corpus``.

Municipalities and documents go over one connection; the documents are then split in date order between
worker processes that each generate their share of pages and COPY it over their own connection. The server
computes every page's ``search_vector`` (its trigger), and that, not Python, is the expensive part, so parallel
connections keep every core busy.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import multiprocessing
import time
from collections.abc import Iterable, Sequence
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import psycopg
from psycopg import sql
from tqdm import tqdm

from migrations import partitions
from migrations.partitions import PAGE_COLUMNS
from ops import stack
from ops.corpus import bulk
from ops.corpus.model import CorpusError, Document, LoadStats, Page, Plan
from ops.corpus.planning import plan
from ops.corpus.text import document_pages

if TYPE_CHECKING:
    from multiprocessing.sharedctypes import Synchronized

_COPY_MUNICIPALITIES = "COPY public.municipality (id, subdomain, name, state, country, kind) FROM STDIN"
_COPY_DOCUMENTS = (
    "COPY public.meeting_document (id, municipality_id, meeting_name, meeting_date, document_type) FROM STDIN"
)
_PAGE_COLUMNS = sql.SQL(", ").join(sql.Identifier(c) for c in PAGE_COLUMNS)


def _copy_pages_into(table: str) -> sql.Composed:
    return sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier("public", table), _PAGE_COLUMNS)

_CLEAN_GIN_PENDING = """
    SELECT gin_clean_pending_list(x.indexrelid)
      FROM pg_inherits p
      JOIN pg_index x ON x.indrelid = p.inhrelid
      JOIN pg_class c ON c.oid = x.indexrelid
      JOIN pg_am a ON a.oid = c.relam
     WHERE p.inhparent = 'public.meeting_page'::regclass AND a.amname = 'gin'
"""
# (modulus, residues): the documents at positions i with i % modulus in residues (a step of a growing corpus).
Selection = tuple[int, tuple[int, ...]]
_CHUNK_CHARS = 1 << 20  # hand psycopg about 1 MB at a time: few calls, bounded memory


def _copy_text(value: str) -> str:
    """Escape a value for COPY's text format. Chained ``str.replace`` scans at memchr speed when, as here,
    there is almost nothing to replace; the backslash goes first so later escapes are not doubled."""
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _page_line(page: Page) -> str:
    # Only text can hold tabs, newlines or backslashes: ids, dates, names and paths use [A-Za-z0-9./-] only.
    return (
        f"{page.id}\t{page.meeting_date.isoformat()}\t{page.document_id}\t{page.municipality_id}\t"
        f"{page.document_type}\t{page.page_number}\t{_copy_text(page.text)}\t{page.page_image}\n"
    )


def _copy_lines(cursor: psycopg.Cursor[tuple[object, ...]], statement: str, lines: Iterable[str]) -> None:
    with cursor.copy(statement) as copy:
        buffer: list[str] = []
        size = 0
        for line in lines:
            buffer.append(line)
            size += len(line)
            if size >= _CHUNK_CHARS:
                copy.write("".join(buffer).encode())
                buffer, size = [], 0
        if buffer:
            copy.write("".join(buffer).encode())


def _copy_pages(
    conn: psycopg.Connection[tuple[object, ...]],
    corpus: Plan,
    documents: Sequence[Document],
    on_pages: _Progress,
    targets: bulk.Targets | None = None,
) -> int:
    """COPY the pages of ``documents`` in one transaction; returns the bytes of text sent.

    With ``targets`` each document's pages go straight into its period's table (the documents are in date
    order, so a share switches tables a few times); without, everything goes through ``meeting_page``.
    """
    # GIN insertion appends to the index's pending list, and whichever backend overflows it (4 MB) merges
    # it into the index using work_mem: 4 MB by default, which makes the merge run in many small passes.
    # SET LOCAL: nothing outlives the transaction, even on a PgBouncer server connection that is reused.
    conn.execute("SET LOCAL work_mem = '64MB'")
    text_bytes = 0

    def table_of(doc: Document) -> str:
        return targets.table(doc.meeting_date) if targets is not None else partitions.PARENT

    with conn.cursor() as cursor:
        for table, group in itertools.groupby(documents, key=table_of):
            with cursor.copy(_copy_pages_into(table)) as copy:
                buffer: list[str] = []
                size = 0
                done = 0
                for doc in group:
                    for page in document_pages(corpus, doc):
                        line = _page_line(page)
                        buffer.append(line)
                        size += len(line)
                        text_bytes += len(page.text.encode())
                    done += doc.pages
                    if size >= _CHUNK_CHARS:
                        copy.write("".join(buffer).encode())
                        buffer, size = [], 0
                        on_pages(done)
                        done = 0
                if buffer:
                    copy.write("".join(buffer).encode())
                on_pages(done)
    return text_bytes


class _Progress:
    """Counts pages sent; in a worker process it adds to a counter shared with the parent's progress bar."""

    def __init__(self, counter: Synchronized[int] | None = None, bar: tqdm[NoReturn] | None = None) -> None:
        self.counter = counter
        self.bar = bar

    def __call__(self, pages: int) -> None:
        if self.counter is not None:
            with self.counter.get_lock():
                self.counter.value += pages
        if self.bar is not None:
            self.bar.update(pages)


_worker_counter: Synchronized[int] | None = None


def _init_worker(counter: Synchronized[int]) -> None:
    # Shared counters cannot be pickled with each task; they are handed over once, when the process starts.
    global _worker_counter
    _worker_counter = counter


def _connect(dsn: str, *, autocommit: bool = False) -> psycopg.Connection[tuple[object, ...]]:
    # prepare_threshold=None: the DSN may point at PgBouncer, where server-side prepared statements break.
    return psycopg.connect(dsn, prepare_threshold=None, autocommit=autocommit)


def select(documents: Sequence[Document], selection: Selection | None) -> Sequence[Document]:
    """The documents whose position in ``documents`` is one of the selection's residues (all when None)."""
    if selection is None:
        return documents
    modulus, residues = selection
    return [d for i, d in enumerate(documents) if i % modulus in residues]


def _load_share(
    dsn: str,
    pages: int,
    seed: int,
    first: int,
    stop: int,
    selection: Selection | None = None,
    targets: bulk.Targets | None = None,
) -> int:
    """Worker process: generate and COPY the pages of documents [first, stop) of the selection; returns the
    bytes of text."""
    corpus = plan(pages, seed)  # cheap next to the pages, and identical in every process
    with _connect(dsn) as conn:
        chosen = select(corpus.documents, selection)
        return _copy_pages(conn, corpus, chosen[first:stop], _Progress(_worker_counter), targets)


def _shares(documents: Sequence[Document], workers: int) -> list[tuple[int, int]]:
    """Split documents, in date order, into ``workers`` contiguous runs of about equal page counts.

    Contiguous runs of dates send each worker to different yearly partitions, so the two connections do not
    contend for the same GIN pending list and B-tree pages.
    """
    total = sum(d.pages for d in documents)
    shares: list[tuple[int, int]] = []
    first = 0
    running = 0
    for index, doc in enumerate(documents):
        running += doc.pages
        if len(shares) < workers - 1 and running >= total * (len(shares) + 1) / workers:
            shares.append((first, index + 1))
            first = index + 1
    shares.append((first, len(documents)))
    return [s for s in shares if s[0] < s[1]]


def _has_rows(conn: psycopg.Connection[tuple[object, ...]], table: str) -> bool:
    # EXISTS, not count(*): counting a loaded meeting_page would read every partition.
    row = conn.execute(
        sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier("public", table))
    ).fetchone()
    return bool(row and row[0])


def has_pages(dsn: str) -> bool:
    """Whether ``meeting_page`` holds any row (what ``--if-empty`` checks)."""
    with _connect(dsn, autocommit=True) as conn:
        return _has_rows(conn, "meeting_page")


def load(dsn: str, *, pages: int, seed: int = 1, workers: int = 2, progress: bool = True) -> LoadStats:
    """Generate the corpus of ``pages`` pages for ``seed`` and COPY it into the database at ``dsn``.

    ``dsn`` is an admin connection string to the primary (a superuser or the table owner; session-mode
    PgBouncer is fine). The three tables must be empty (``TRUNCATE meeting_page, meeting_document,
    municipality RESTART IDENTITY CASCADE`` empties them). Each period the dates need gets a table of its own,
    loaded without the full-text index and attached once indexed (:mod:`ops.corpus.bulk`); municipalities and
    documents go in one transaction, pages over ``workers`` parallel connections (one transaction each,
    ``workers=1`` stays in this process); then the indexes are built over the same number of connections, the
    tables attached, and everything ANALYZEd. With ``progress`` a bar and a summary line are printed. Raises
    :class:`CorpusError` when the database is not empty, is a replica, or the page load fails (after which the
    tables must be truncated).
    """
    started = time.perf_counter()
    corpus = plan(pages, seed)
    with _connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        if row is None or row[0]:
            raise CorpusError("the corpus must be loaded on the primary, and this server is a replica")
        for table in ("meeting_page", "meeting_document", "municipality"):
            if _has_rows(conn, table):
                raise CorpusError(
                    f"{table} is not empty: run 'TRUNCATE meeting_page, meeting_document, municipality "
                    "RESTART IDENTITY CASCADE' first, or pass --if-empty to keep what is there"
                )
        # Tables for every period first (rows COPYed into DEFAULT would have to be moved out later, row by
        # row), made without the full-text index, which is built once the rows are in (see ops.corpus.bulk).
        targets = bulk.prepare(conn, corpus.first_date, corpus.last_date)
        with conn.transaction(), conn.cursor() as cursor:
            _copy_lines(
                cursor,
                _COPY_MUNICIPALITIES,
                (
                    f"{m.id}\t{_copy_text(m.subdomain)}\t{_copy_text(m.name)}\t{m.state}\tUS\t{m.kind}\n"
                    for m in corpus.municipalities
                ),
            )
            _copy_lines(
                cursor,
                _COPY_DOCUMENTS,
                (
                    f"{d.id}\t{d.municipality_id}\t{d.meeting_name}\t{d.meeting_date.isoformat()}\t{d.document_type}\n"
                    for d in corpus.documents
                ),
            )
            # Ids were given explicitly, so the identity sequences have not moved: move them past our ids, or
            # the next ordinary INSERT would collide with id 1.
            for table in ("municipality", "meeting_document"):
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('public.{table}', 'id'), "
                    f"coalesce(max(id), 0) + 1, false) FROM public.{table}"
                )

    pages_started = time.perf_counter()
    shares = _shares(corpus.documents, max(1, workers))
    bar: tqdm[NoReturn] | None = (
        tqdm(total=pages, unit="page", unit_scale=True, desc="pages", smoothing=0.1) if progress else None
    )
    try:
        if len(shares) <= 1:
            with _connect(dsn) as conn:
                text_bytes = _copy_pages(conn, corpus, corpus.documents, _Progress(bar=bar), targets)
        else:
            text_bytes = _parallel(dsn, corpus, shares, bar, targets=targets)
    except (psycopg.Error, OSError, BrokenProcessPool) as exc:
        # Municipalities and documents are committed, and so may be another worker's pages.
        raise CorpusError(
            f"loading pages failed ({exc}); the database holds part of the corpus: run "
            "'TRUNCATE meeting_page, meeting_document, municipality RESTART IDENTITY CASCADE' and load again"
        ) from exc
    finally:
        if bar is not None:
            bar.close()
    pages_seconds = time.perf_counter() - pages_started
    with _connect(dsn, autocommit=True) as conn:
        index_seconds = bulk.index_and_attach(dsn, conn, targets, max(1, len(shares)))

    analyze_started = time.perf_counter()
    with _connect(dsn, autocommit=True) as conn:
        # Each partition's GIN index is left with up to gin_pending_list_limit (4 MB) of entries not merged
        # yet, which every search then scans linearly until autovacuum merges them; merge them now (about
        # 1.5 s for 50,000 pages) so searches and benchmarks run against a finished index.
        conn.execute(_CLEAN_GIN_PENDING)
        # ANALYZE of the partitioned parent samples every partition and then analyzes each one: the planner
        # has statistics for the new rows at once instead of after autovacuum's next pass.
        conn.execute("ANALYZE public.municipality, public.meeting_document, public.meeting_page")
    now = time.perf_counter()
    stats = LoadStats(
        municipalities=len(corpus.municipalities),
        documents=len(corpus.documents),
        pages=pages,
        text_bytes=text_bytes,
        workers=max(1, len(shares)),
        seconds=now - started,
        pages_seconds=pages_seconds,
        analyze_seconds=now - analyze_started,
        index_seconds=index_seconds,
    )
    if progress:
        print(stats.summary())
    return stats


def _parallel(
    dsn: str,
    corpus: Plan,
    shares: list[tuple[int, int]],
    bar: tqdm[NoReturn] | None,
    selection: Selection | None = None,
    targets: bulk.Targets | None = None,
) -> int:
    # spawn, not fork: the parent holds open libpq connections and tqdm's monitor thread, neither of which
    # may be duplicated into a child.
    context = multiprocessing.get_context("spawn")
    counter: Synchronized[int] = context.Value("q", 0)
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=len(shares), mp_context=context, initializer=_init_worker, initargs=(counter,)
    ) as pool:
        futures = [pool.submit(_load_share, dsn, corpus.pages, corpus.seed, a, b, selection, targets) for a, b in shares]
        shown = 0
        pending: set[concurrent.futures.Future[int]] = set(futures)
        while pending:
            _, pending = concurrent.futures.wait(pending, timeout=0.25)
            if bar is not None:
                value = counter.value
                bar.update(value - shown)
                shown = value
        # .result() re-raises a worker's exception here; the other worker has finished (or failed) by now.
        return sum(f.result() for f in futures)


# --- python -m ops corpus -----------------------------------------------------------------------------------


def main(*, pages: int, seed: int, directory: Path, if_empty: bool) -> LoadStats | None:
    """``python -m ops corpus``: load the corpus into the stack in ``directory``; None when skipped.

    With ``if_empty``, a database that already has pages is left alone (so ``make`` targets can call this
    unconditionally).
    """
    layout = stack.StackLayout.load(directory.resolve())
    if layout is None:
        raise stack.StackError(f"no stack in {directory}: run 'python -m ops stack up' first")
    dsn = stack.primary_admin_dsn(layout)
    if if_empty and has_pages(dsn):
        print("meeting_page already has pages: nothing to do (--if-empty)")
        return None
    return load(dsn, pages=pages, seed=seed)
