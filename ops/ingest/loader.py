"""The bulk loader: read chunks, stage them over parallel connections, upsert, index new partitions, ANALYZE.

How a run goes:

1. One connection to the primary takes an advisory lock (one ingest at a time: two would race on the same
   pending partitions) and reads the partition layout.
2. The reader (this thread) pulls chunks from the sources, resolves each row's municipality (creating it
   when the row says how), keeps the last row of each page key, and picks the row's **target table**: the
   partition whose range holds its date, or a pending standalone table for a range that has no partition
   yet (:mod:`ops.ingest.newparts`).
3. Each row goes to one of N worker threads, chosen by a hash of its document key (municipality, meeting,
   date, type). Every worker owns a connection and a temporary staging table. Per chunk it runs one
   transaction: COPY its rows into the stage; create the documents that do not exist yet; give the rows their
   document ids; then, per target table, drop the rows identical to what is stored (unchanged: no row is
   rewritten, no vector recomputed), UPDATE the changed ones and INSERT the new ones. The server computes
   ``search_vector`` (to_tsvector) as rows are written, so N backends keep N cores busy; Python only parses.
4. As chunks commit, the checkpoint moves past every chunk committed in order (:mod:`ops.ingest.checkpoint`).
   A chunk is never committed in part: with more than one worker, each worker's share is a *prepared*
   transaction (``PREPARE TRANSACTION``), and the shares of a chunk are committed together once all of them
   are prepared, after the decision is saved in the checkpoint. A run that fails rolls back the shares it
   prepared and did not commit; a run that finds shares left by a process that died settles them by the
   checkpoint's decision (commit) or its absence (roll back). So after any failure the database holds
   exactly the chunks before the checkpoint, and ``--resume`` goes on from there. This needs
   ``max_prepared_transactions`` of at least :data:`IN_FLIGHT` per worker (the local stack sets 64); with
   less, or one worker, shares commit on their own as before and the run says so in its notes.
5. At the end: pending tables get the parent's indexes (in parallel) and are attached, and the partitions
   written to are ANALYZEd (and their GIN pending lists merged) in parallel.

Why hash by document rather than pin whole partitions to workers: sources are often sorted by date (the
synthetic corpus is), so one chunk falls into one partition; pinning partitions would leave all but one
worker idle. Hashing by document keeps each document, and each page with it, on one worker in input order,
so two workers never insert the same document or page at once and the last version of a page wins. A page id
that moves to another document within one input is the one case that can race; the upsert keeps the data
consistent either way, and a deadlock is retried once.

Bad rows never stop a run: a row that breaks a rule (:mod:`ops.ingest.records`), a page number its document
already has (checked here over the chunks in flight, and against stored pages in :mod:`ops.ingest.staging`),
and a row the database refuses are skipped and reported with their position. A text whose search vector would
be too large is stored whole and indexed up to a prefix, by the rule of :mod:`ops.ingest.oversize`; the run
reports it as a warning.

Counts add up: ``read = inserted + updated + unchanged + superseded + skipped``, where ``superseded`` counts
rows replaced by a later row for the same page key in the same chunk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from tqdm import tqdm

from migrations import partitions
from migrations.partitions import Conn
from ops.ingest import finish, newparts, oversize, staging
from ops.ingest.checkpoint import Checkpoint, CheckpointError, CommitTracker
from ops.ingest.records import STATE_RE, SUBDOMAIN_RE, BadRow, PageRow, RowError
from ops.ingest.sources import Source, SourceError

LOCK_KEY = 0x63696E67  # "cing": the advisory lock every ingest run holds (migrations use 0x63697669)
# The summary keeps the first bad rows; all of them are counted, and reported as they come.
MAX_BAD_ROWS_KEPT = 1000
_QUEUE_DEPTH = 2  # tasks waiting per worker: enough to keep it busy while the reader parses the next chunk
_STOP = None
# Chunks read but not committed yet, at most. Bounds the prepared transactions (IN_FLIGHT per worker) and the
# reader's window of recent documents for the duplicate page-number check (older chunks are committed, and
# staging checks against committed pages).
IN_FLIGHT = 6
GID_PREFIX = "civic-ingest-"  # global ids of prepared shares: civic-ingest-<run>-<chunk>-<worker>


class IngestError(RuntimeError):
    """The run stopped (database or source failure); what was committed stays and ``--resume`` goes on."""


class _WorkerFailed(Exception):
    """Raised in the reader when a worker has failed; the worker's exception is the one reported."""


@dataclasses.dataclass
class IngestSummary:
    """What a run did.

    ``phases`` holds wall-clock seconds: ``read`` (reading and parsing the sources, part of ``load``),
    ``load`` (start to last commit), ``index`` (new partitions), ``attach``, ``analyze``. ``complete`` is
    False when the run stopped early (``max_batches``); the finishing phases are then left to a later run.
    """

    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    superseded: int = 0
    skipped: int = 0
    documents_created: int = 0
    municipalities_created: int = 0
    batches: int = 0
    workers: int = 0
    complete: bool = False
    seconds: float = 0.0
    phases: dict[str, float] = dataclasses.field(default_factory=dict)
    partitions_created: list[str] = dataclasses.field(default_factory=list)  # attached by this run
    pending: list[str] = dataclasses.field(default_factory=list)  # left for a later run to attach
    analyzed: list[str] = dataclasses.field(default_factory=list)
    bad_rows: list[BadRow] = dataclasses.field(default_factory=list)
    # Pages stored whole whose search vector covers only a prefix of the text (warnings, not bad rows).
    partly_indexed: list[BadRow] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    two_phase: bool = False  # chunks committed whole with prepared transactions

    @property
    def pages_per_second(self) -> float:
        """Rows read per second of the whole run (parsing, loading, indexing, attaching, ANALYZE)."""
        return self.read / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """One line for humans."""
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in self.phases.items())
        state = "" if self.complete else " (stopped early: resume with --resume)"
        return (
            f"read {self.read:,} rows: {self.inserted:,} inserted, {self.updated:,} updated, "
            f"{self.unchanged:,} unchanged, {self.superseded:,} superseded, {self.skipped:,} skipped; "
            f"{self.documents_created:,} documents and {self.municipalities_created:,} municipalities created; "
            f"{len(self.partitions_created)} partitions attached; {self.seconds:.1f} s = "
            f"{self.pages_per_second:,.0f} pages/s over {self.workers} connections ({phases}){state}"
        )


def connect(dsn: str, *, autocommit: bool = True, name: str = "civic-ingest") -> Conn:
    """A connection for ingest: no server-side prepared statements (PgBouncer), named in pg_stat_activity."""
    return psycopg.connect(dsn, autocommit=autocommit, prepare_threshold=None, application_name=name)


def ensure_municipality(
    conn: Conn, subdomain: str, *, name: str | None = None, state: str | None = None
) -> tuple[int, bool]:
    """The id of the municipality ``subdomain``, creating it from ``name`` and ``state`` when it is missing.

    Returns (id, created). An existing municipality is never changed. Raises :class:`RowError` when it is
    missing and cannot be created (no name or state, or values the schema rejects).
    """
    row = conn.execute("SELECT id FROM public.municipality WHERE subdomain = %s", [subdomain]).fetchone()
    if row is not None:
        return int(row[0]), False
    if not SUBDOMAIN_RE.match(subdomain):
        raise RowError(f"{subdomain!r} is not a civic.band subdomain like 'alameda.ca'")
    if not name or not state:
        raise RowError(f"unknown municipality {subdomain!r}, and no name and state to create it")
    if not STATE_RE.match(state) or not 1 <= len(name) <= 200:
        raise RowError(
            f"cannot create municipality {subdomain!r}: state must be two letters, name 1-200 chars"
        )
    created = conn.execute(
        "INSERT INTO public.municipality (subdomain, name, state) VALUES (%s, %s, %s) "
        "ON CONFLICT (subdomain) DO NOTHING RETURNING id",
        [subdomain, name, state],
    ).fetchone()
    if created is not None:
        return int(created[0]), True
    return ensure_municipality(conn, subdomain)  # created by someone else meanwhile


class _Worker(threading.Thread):
    """Applies tasks over its own connection, one transaction per task, in the order it receives them."""

    def __init__(self, run: _Run, conn: Conn, index: int) -> None:
        super().__init__(name=f"ingest-worker-{index}", daemon=True)
        self.run_ = run
        self.index = index
        self.conn = conn
        self.tasks: queue.Queue[staging.Task | None] = queue.Queue(maxsize=_QUEUE_DEPTH)
        self.counts = staging.Counts()
        self.error: BaseException | None = None

    def run(self) -> None:
        while (task := self.tasks.get()) is not _STOP:
            if self.run_.failed.is_set():
                continue  # drain: another worker failed or the reader stopped
            try:
                gid = self._apply_with_retry(task)
                self.run_.tracker.task_done(task.seq, gid)
            except BaseException as exc:
                self.error = exc
                self.run_.failed.set()
                continue

    def _apply_with_retry(self, task: staging.Task) -> str | None:
        try:
            return self._apply(task)
        except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
            return self._apply(task)  # the transaction was rolled back whole; once more is enough

    def _apply(self, task: staging.Task) -> str | None:
        gid = f"{self.run_.gid_base}-{task.seq}-{self.index}" if self.run_.summary.two_phase else None
        counts = staging.apply(self.conn, task, prepare_as=gid)
        # Counted only once committed or prepared: a rolled-back attempt must not count.
        for line, reason in counts.rejected:
            self.run_.skip(BadRow(task.where[line], reason))
        self.counts.add(counts)
        return gid


class _Run:
    """One ingest run (see the module docstring); not reusable."""

    def __init__(
        self,
        dsn: str,
        *,
        workers: int,
        batch_size: int,
        checkpoint: Checkpoint,
        progress: bool,
        max_batches: int | None,
        on_bad_row: Callable[[BadRow], None] | None,
        decided: Sequence[str] = (),
    ) -> None:
        if workers < 1 or batch_size < 1:
            raise ValueError("workers and batch_size must be >= 1")
        self.dsn = dsn
        self.workers = workers
        self.batch_size = batch_size
        self.checkpoint = checkpoint
        self.max_batches = max_batches
        self.on_bad_row = on_bad_row
        self.decided = set(decided)  # gids an earlier run's checkpoint decided to commit
        self.summary = IngestSummary(workers=workers)
        self.failed = threading.Event()
        self.gid_base = GID_PREFIX + secrets.token_hex(4)
        self._skip_lock = threading.Lock()  # workers report the rows the database refused
        self._commit_conn: Conn | None = None
        # Documents of the chunks in flight: (subdomain, meeting, date, type) -> (last chunk, page -> page id).
        self._recent: dict[tuple[str, str, dt.date, str], tuple[int, dict[int, str]]] = {}
        self.bar: tqdm[Any] | None = (
            tqdm(unit="page", unit_scale=True, smoothing=0.05, dynamic_ncols=True, desc="ingest")
            if progress
            else None
        )
        self.tracker = CommitTracker(checkpoint, on_advance=self._advanced, commit=self._commit_prepared)
        self._towns: dict[str, int | str] = {}  # subdomain -> id, or why its rows are skipped

    def _advanced(self, pages: int) -> None:
        if self.bar is not None:
            self.bar.update(pages)

    # --- reading ----------------------------------------------------------------------------------------

    def _municipality(self, conn: Conn, row: PageRow) -> int:
        known = self._towns.get(row.subdomain)
        if isinstance(known, int):
            return known
        if isinstance(known, str) and (row.municipality_name is None or row.state is None):
            raise RowError(known)
        try:
            town_id, created = ensure_municipality(
                conn, row.subdomain, name=row.municipality_name, state=row.state
            )
        except RowError as exc:
            self._towns[row.subdomain] = str(exc)
            raise
        self._towns[row.subdomain] = town_id
        self.summary.municipalities_created += created
        return town_id

    def skip(self, bad: BadRow) -> None:
        """Count and report a bad row (the reader and the workers call this)."""
        with self._skip_lock:
            self.summary.skipped += 1
            if len(self.summary.bad_rows) < MAX_BAD_ROWS_KEPT:
                self.summary.bad_rows.append(bad)
            if self.on_bad_row is not None:
                self.on_bad_row(bad)

    def _commit_prepared(self, gids: list[str]) -> None:
        assert self._commit_conn is not None
        for gid in gids:
            self._commit_conn.execute(sql.SQL("COMMIT PREPARED {}").format(sql.Literal(gid)))

    def _duplicate_page(self, seq: int, row: PageRow) -> str | None:
        """Why ``row`` repeats a page number of its document among the chunks in flight (None: it does not)."""
        key = (row.subdomain, row.meeting, row.date, row.document_type)
        entry = self._recent.get(key)
        pages = entry[1] if entry is not None else {}
        self._recent[key] = (seq, pages)
        holder = pages.setdefault(row.page, row.page_id)
        if holder != row.page_id:
            return f"page {row.page} of this document is already page id {holder!r}"
        return None

    def _forget_old_documents(self, seq: int) -> None:
        if seq % IN_FLIGHT == 0:
            self._recent = {k: v for k, v in self._recent.items() if v[0] > seq - 2 * IN_FLIGHT}

    def _check_text(self, checker: oversize.VectorCheck, row: PageRow, where: str) -> None:
        indexed = checker.indexed_chars(row.text)
        if indexed is not None:
            self.summary.partly_indexed.append(
                BadRow(
                    where,
                    f"only the first {indexed:,} of {len(row.text):,} characters are searchable (the search "
                    "vector of the whole text would be over PostgreSQL's 1 MB); the whole text is stored",
                )
            )

    def _feed(
        self, conn: Conn, router: newparts.Router, sources: Sequence[Source], workers: list[_Worker]
    ) -> bool:
        """Read every source and hand its chunks to the workers; False when stopped by ``max_batches``."""
        seq = 0
        bytes_seen = records_seen = 0
        read_seconds = 0.0
        checker = oversize.VectorCheck(conn)
        try:
            for source in sources:
                chunks = source.chunks(self.batch_size, self.checkpoint.get(source.key))
                while True:
                    if self.max_batches is not None and seq >= self.max_batches:
                        return False
                    began = time.perf_counter()
                    chunk = next(chunks, None)
                    read_seconds += time.perf_counter() - began
                    if chunk is None:
                        break
                    self.summary.read += chunk.read
                    for bad in chunk.bad:
                        self.skip(bad)
                    self._wait_in_flight(seq)
                    self._forget_old_documents(seq)
                    by_key: dict[tuple[str, dt.date], tuple[int, PageRow, str]] = {}
                    for row, where in zip(chunk.rows, chunk.where, strict=True):
                        try:
                            town = self._municipality(conn, row)
                        except RowError as exc:
                            self.skip(BadRow(where, str(exc)))
                            continue
                        if row.key in by_key:
                            self.summary.superseded += 1
                        self._check_text(checker, row, where)
                        by_key[row.key] = (town, row, where)  # later row wins
                    for key, (_, row, where) in list(by_key.items()):
                        problem = self._duplicate_page(seq, row)
                        if problem is not None:
                            del by_key[key]
                            self.skip(BadRow(where, problem))
                    tasks = self._split(seq, router, by_key.values())
                    self.tracker.register(
                        seq, tasks=len(tasks), source=chunk.source, position=chunk.position, pages=chunk.read
                    )
                    for worker_index, task in tasks:
                        self._put(workers[worker_index], task)
                    seq += 1
                    self.summary.batches = seq
                    bytes_seen += chunk.bytes
                    records_seen += chunk.read
                    self._update_total(
                        sources, bytes_seen / records_seen if bytes_seen and records_seen else None
                    )
            return True
        finally:
            self.summary.phases["read"] = read_seconds

    def _wait_in_flight(self, seq: int) -> None:
        """Hold the reader while :data:`IN_FLIGHT` chunks are uncommitted (or stop when a worker failed)."""
        while not self.tracker.wait_below(seq, IN_FLIGHT, timeout=0.2):
            if self.failed.is_set():
                raise _WorkerFailed

    def _split(
        self, seq: int, router: newparts.Router, rows: Iterable[tuple[int, PageRow, str]]
    ) -> list[tuple[int, staging.Task]]:
        tasks: dict[int, staging.Task] = {}
        target_index: dict[tuple[int, str], int] = {}
        for town, row, where in rows:
            worker = hash((town, row.meeting, row.date, row.document_type)) % self.workers
            task = tasks.get(worker)
            if task is None:
                stage = f"{self.gid_base.replace('-', '_')}_stage_{seq}_{worker}"
                task = tasks[worker] = staging.Task(seq, stage, [], [])
            target = router.target(row.date)
            index = target_index.get((worker, target))
            if index is None:
                index = target_index[(worker, target)] = len(task.targets)
                task.targets.append(target)
            task.rows.append(
                (
                    index,
                    len(task.where),
                    row.page_id,
                    row.date,
                    town,
                    row.document_type,
                    row.meeting,
                    row.page,
                    row.text,
                    row.page_image,
                )
            )
            task.where.append(where)
        return sorted(tasks.items(), key=lambda item: item[0])

    def _put(self, worker: _Worker, task: staging.Task) -> None:
        while True:
            if self.failed.is_set():
                raise _WorkerFailed  # _run_locked reports the worker's own error
            try:
                worker.tasks.put(task, timeout=0.2)
                return
            except queue.Full:
                continue

    def _update_total(self, sources: Sequence[Source], bytes_per_record: float | None) -> None:
        if self.bar is None:
            return
        left = [s.remaining(bytes_per_record) for s in sources]
        known = [x for x in left if x is not None]
        if known:
            self.bar.total = int(self.summary.read + sum(known))
            self.bar.refresh()

    # --- the run ------------------------------------------------------------------------------------------

    def run(self, sources: Sequence[Source]) -> IngestSummary:
        started = time.perf_counter()
        try:
            with connect(self.dsn) as conn:
                row = conn.execute(
                    "SELECT pg_is_in_recovery(), pg_try_advisory_lock(%s)", [LOCK_KEY]
                ).fetchone()
                assert row is not None
                if row[0]:
                    raise IngestError("this server is a replica: ingest writes to the primary")
                if not row[1]:
                    raise IngestError(
                        "another ingest is running against this database; wait for it to finish"
                    )
                try:
                    self._settle_leftovers(conn)
                    self._run_locked(conn, sources, started)
                finally:
                    # A broken connection has released the lock already; its error must not hide the first.
                    with contextlib.suppress(psycopg.Error):
                        conn.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])
        except psycopg.Error as exc:
            raise IngestError(f"database error: {exc}") from exc
        except (SourceError, CheckpointError) as exc:
            raise IngestError(str(exc)) from exc
        finally:
            if self.bar is not None:
                self.bar.close()
        self.summary.seconds = time.perf_counter() - started
        return self.summary

    def _settle_leftovers(self, conn: Conn) -> None:
        """Commit or roll back the prepared shares a dead run left (we hold the lock: nobody else owns them)."""
        rows = conn.execute(
            "SELECT gid FROM pg_prepared_xacts WHERE database = current_database() AND gid LIKE %s ORDER BY gid",
            [GID_PREFIX + "%"],
        ).fetchall()
        gids = [str(r[0]) for r in rows]
        committed = _settle(conn, gids, self.decided)
        if gids:
            self.summary.notes.append(
                f"settled {len(gids)} prepared transactions of an earlier run: {committed} committed "
                f"(its checkpoint had decided so), {len(gids) - committed} rolled back"
            )
        row = conn.execute("SELECT current_setting('max_prepared_transactions')::int").fetchone()
        limit = int(str(row[0])) if row else 0
        self.summary.two_phase = self.workers > 1 and limit >= self.workers * (IN_FLIGHT + 1)
        if self.workers > 1 and not self.summary.two_phase:
            self.summary.notes.append(
                f"max_prepared_transactions = {limit} (< {self.workers * (IN_FLIGHT + 1)}): each worker's share "
                "of a batch commits on its own, so a failed run can leave part of its last batches committed "
                "(--resume completes them)"
            )

    def _run_locked(self, conn: Conn, sources: Sequence[Source], started: float) -> None:
        router = newparts.Router(conn, partitions.get_width(conn))
        conns = [connect(self.dsn) for _ in range(self.workers)]
        self._commit_conn = connect(self.dsn, name="civic-ingest-commit") if self.summary.two_phase else None
        try:
            workers = [_Worker(self, c, i) for i, c in enumerate(conns)]
            for worker in workers:
                worker.start()
            outcome: bool | None = None  # stays None when reading raises (Ctrl-C included)
            try:
                outcome = self._feed(conn, router, sources, workers)
            except _WorkerFailed:
                pass
            finally:
                if outcome is None:
                    self.failed.set()  # drop queued tasks; the running ones finish (commit or roll back)
                for worker in workers:
                    worker.tasks.put(_STOP)
                for worker in workers:
                    worker.join()
                if outcome is None or any(w.error is not None for w in workers):
                    # Nothing runs any more: the shares prepared and not committed are settled here, by the
                    # decision (a batch whose commit had begun is finished), the others rolled back. If this
                    # fails too (the server is gone), the next run settles them.
                    with contextlib.suppress(psycopg.Error):
                        _settle(conn, self.tracker.prepared(), self.checkpoint.committing)
            errors = [w.error for w in workers if w.error is not None]
            if errors:
                raise IngestError(f"loading failed: {errors[0]}") from errors[0]
            complete = bool(outcome)
            totals = self._collect(workers)
            self.summary.pending = sorted(p.name for p in router.pending.values())
            self.summary.notes.extend(router.notes)
            self.summary.phases["load"] = time.perf_counter() - started
            self.summary.complete = complete
            if complete:
                finish.finish(self.summary, conn, conns, router, totals)
        finally:
            for c in conns:
                c.close()
            if self._commit_conn is not None:
                self._commit_conn.close()

    def _collect(self, workers: list[_Worker]) -> staging.Counts:
        totals = staging.Counts()
        for w in workers:
            totals.add(w.counts)
        s = self.summary
        s.inserted, s.updated, s.unchanged, s.documents_created = (
            totals.inserted,
            totals.updated,
            totals.unchanged,
            totals.documents,
        )
        return totals

def _settle(conn: Conn, gids: Sequence[str], decided: Iterable[str]) -> int:
    """COMMIT PREPARED the ``gids`` that are ``decided``, ROLLBACK PREPARED the others; returns how many
    were committed. A gid that is gone already (committed just before a failure) is skipped."""
    commit = set(decided)
    done = 0
    for gid in gids:
        verb = "COMMIT" if gid in commit else "ROLLBACK"
        try:
            conn.execute(sql.SQL(verb + " PREPARED {}").format(sql.Literal(gid)))
        except psycopg.errors.UndefinedObject:
            continue
        done += gid in commit
    return done


def run_ingest(
    admin_dsn: str,
    sources: Sequence[Source],
    *,
    workers: int = 2,
    batch_size: int = 2000,
    checkpoint: Path | None = None,
    resume: bool = False,
    progress: bool = False,
    max_batches: int | None = None,
    on_bad_row: Callable[[BadRow], None] | None = None,
) -> IngestSummary:
    """Ingest ``sources`` into the database at ``admin_dsn`` (see :func:`ops.ingest.ingest_jsonl`)."""
    if resume and checkpoint is None:
        raise ValueError("resume needs a checkpoint path")
    try:
        # Read before a fresh run overwrites the file: what the last run had decided to commit.
        decided = Checkpoint.decided(checkpoint)
        state = Checkpoint.load(checkpoint) if resume and checkpoint else Checkpoint(checkpoint)
        if not resume:
            state.save()  # starting over: a stale checkpoint must not be resumed from later by mistake
    except (CheckpointError, OSError) as exc:
        raise IngestError(str(exc)) from None
    run = _Run(
        admin_dsn,
        workers=workers,
        batch_size=batch_size,
        checkpoint=state,
        progress=progress,
        max_batches=max_batches,
        on_bad_row=on_bad_row,
        decided=decided,
    )
    return run.run(sources)
