"""Archive old ``meeting_page`` partitions: detach, dump, prove the dump restores, and only then drop.

``python -m ops partitions archive --older-than 2y --to DIR`` runs, for every partition whose whole range
ends on or before the cutoff, these steps; each must succeed before the next starts, and a failure stops the run
with the data kept:

1. **detach** the partition from ``meeting_page`` (see "Locking" below). From here on it is a plain table;
   a comment on it (``civic-archive {...}``) records its range, so a rerun finds it and resumes.
2. **fingerprint** it: row count and an order-independent checksum (the sum of the first 64 bits of the md5 of
   every row's columns, so no sort is needed and memory stays constant).
3. **dump** it with ``pg_dump -Fc -t public.<partition>``, plus a small schema-only dump of what its columns
   need (extensions, the ``document_type`` enum, the ``civic`` text search configuration), so the archive can
   be restored into an empty database. Files are written as ``.partial``, fsynced and renamed.
4. **verify**: create a scratch database, ``pg_restore`` both dumps into it, and compare its row count and
   checksum with step 2; the dump's sha256 must also be unchanged after the restore. The scratch database is
   dropped whatever happens. Only the table and its data are restored, not its indexes: rebuilding a GIN index
   costs about 100 s per million pages here (DESIGN.md §6) and proves nothing about the data.
5. **manifest**: ``<partition>-<stamp>.manifest.json`` next to the dump (range, rows, checksum, files and their
   sha256, timestamps, lock measurements), fsynced before anything is dropped.
6. **drop**: in one transaction, lock the detached table, check it is still not a partition and still matches
   the fingerprint (so no row written after the dump is lost), then ``DROP TABLE``.

A failure before step 6 leaves the table detached with all its rows; the error says how to rerun (which resumes
from the detached table) or re-attach it. A partition left "detach pending" by an interrupted
``DETACH ... CONCURRENTLY`` is finished with ``DETACH ... FINALIZE`` first.

Locking (PostgreSQL 15; modes observed in ``pg_locks``, see tests/test_partitions_lifecycle.py)
-------------------------------------------------------------------------------------------------
* ``DETACH PARTITION`` (plain) takes ACCESS EXCLUSIVE on the parent, on the partition and its indexes, and on
  the DEFAULT partition (whose implicit constraint changes). It is catalog work only: milliseconds once granted.
  But while it *waits* for the lock, every new query on ``meeting_page`` queues behind it.
* ``DETACH PARTITION ... CONCURRENTLY`` first marks the partition "detach pending" in a short transaction under
  SHARE UPDATE EXCLUSIVE (which blocks no reader or writer), commits, then waits for every older transaction.
  While it waits it holds no lock on ``meeting_page`` at all (observed: only a ShareLock wait on the older
  transactions' virtualxid), so nothing queues behind it; it ends with ACCESS EXCLUSIVE on the partition alone,
  which new queries no longer see. ``lock_timeout`` also bounds that wait; interrupted there, the partition stays
  "detach pending" until ``DETACH ... FINALIZE``. It refuses to run while a DEFAULT partition exists ("cannot
  detach partitions concurrently when a default partition exists"), and our schema has one.
* ``ATTACH PARTITION ... DEFAULT`` takes SHARE UPDATE EXCLUSIVE on the parent and ACCESS EXCLUSIVE on the table
  being attached, and scans it (cheap when empty).

Two strategies are implemented, and ``swap-default`` (the ``CONCURRENTLY`` path) is the default:

``lock-timeout``
    One plain DETACH, in a short transaction that first takes ``LOCK TABLE ONLY meeting_page IN ACCESS
    EXCLUSIVE MODE`` under a small ``lock_timeout`` (0.5 s), retried with backoff. A query arriving while we wait
    is delayed by at most that timeout; once granted, the lock is held for a few milliseconds. If every attempt
    times out, nothing has changed. Measured with a 1.2 s search open and ``lock_timeout`` 0.3 s: 3 attempts,
    0.9 s of waiting, the lock held 10-35 ms, and a reader looping meanwhile saw at worst about 0.33 s.
``swap-default``
    Drain DEFAULT into real partitions and make sure the current period has one (so hardly any insert needs
    DEFAULT), detach DEFAULT as above, ``DETACH ... CONCURRENTLY`` the target, and re-attach DEFAULT in a
    ``finally``. It still needs one ACCESS EXCLUSIVE on the parent (to detach DEFAULT), exactly like
    ``lock-timeout``, so it does not lower the peak lock (and draining may create partitions, another ACCESS
    EXCLUSIVE, under ``ensure_partition``'s 5 s lock_timeout). It adds a window, as long as the concurrent detach
    waits for older transactions (a long search stretches it to seconds), in which inserts for dates without a
    partition fail with "no partition of relation found for row" (SQLSTATE 23514, shown by the tests); and a
    process killed inside that window (no ``finally`` runs) leaves DEFAULT detached until someone re-attaches it.
    Measured: DEFAULT detached and re-attached in 10-30 ms each, the concurrent detach waited 1.0 s for an older
    search, and a looping reader saw at worst 85 ms.

Both take one ACCESS EXCLUSIVE on the parent for a few milliseconds. The default is ``swap-default``: the
detach of the partition itself is ``CONCURRENTLY`` as the runbook asks, and readers saw a lower worst case
(85 ms against 330 ms), because the only exclusive lock is taken for DEFAULT, which a search touches only for
dates without a partition. Its window for such inserts is closed in practice by ``partitions ensure --ahead``
(run before, and by the archive itself), and a killed run is repaired by the next one, which re-attaches DEFAULT
and finalizes a pending detach. ``--strategy lock-timeout`` is the alternative with no window at all. With no
DEFAULT partition, both strategies use ``CONCURRENTLY`` directly.

Everything runs on the primary with one autocommit connection (``prepare_threshold=None``; a direct DSN or a
PgBouncer session-mode alias), under a session advisory lock so two archive runs never race. The scratch database
is reached directly at the address the server reports (PgBouncer has no alias for it), or at ``restore_dsn``.
Rows for an archived range that arrive later land in DEFAULT; the run reports them.
"""

from __future__ import annotations

import calendar
import contextlib
import dataclasses
import datetime as dt
import glob
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, TextIO

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from migrations import partitions
from ops.maintenance import partitions as maintenance_partitions

__all__ = [
    "ArchiveError",
    "ArchiveItem",
    "ArchivePolicy",
    "LockWait",
    "archive_partitions",
    "cutoff_date",
    "find_pg_tool",
    "plan",
    "run_cli",
]

Conn = psycopg.Connection[Any]
Strategy = Literal["lock-timeout", "swap-default"]
State = Literal["attached", "detach-pending", "detached", "archived"]
Step = Literal[
    "finalized",
    "default-detached",
    "detached",
    "default-attached",
    "dumped",
    "verified",
    "manifest",
    "dropped",
]
ProgressHook = Callable[[Step, "ArchiveItem"], None]

PARENT = sql.Identifier("public", partitions.PARENT)
DEFAULT = sql.Identifier("public", partitions.DEFAULT_PARTITION)
MARKER = "civic-archive "
SCRATCH_PREFIX = "civic_archive_check_"
ADVISORY_KEY = 0x63697661  # "civa": one archive run at a time across all hosts
_NAME_RE = re.compile(r"^[a-z0-9_]{1,63}$")
_AGE_RE = re.compile(r"(\d+)\s*([ymd])")
# Order-independent: summing 64-bit slices of per-row md5s needs no sort and constant memory; search_vector is
# left out because it is generated (pg_restore recomputes it) and adds nothing the text does not already fix.
_CHECKSUM_SQL = "SELECT count(*), coalesce(sum(('x' || left(md5(ROW({cols})::text), 16))::bit(64)::bigint), 0)::text FROM {tbl}"
CHECKSUM_METHOD = (
    "count(*) and sum of the first 64 bits of md5(ROW(" + ", ".join(partitions.PAGE_COLUMNS) + ")::text)"
)


class ArchivePolicy:
    """Timing constants in one place, so tests can patch them (``monkeypatch.setattr``)."""

    #: How long one attempt waits for ACCESS EXCLUSIVE on ``meeting_page``; new queries queue behind it this long.
    lock_timeout_s: ClassVar[float] = 0.5
    #: Attempts before giving up (nothing has changed then).
    lock_attempts: ClassVar[int] = 12
    backoff_initial_s: ClassVar[float] = 0.2
    backoff_max_s: ClassVar[float] = 5.0
    #: ``DETACH ... CONCURRENTLY``/``FINALIZE`` wait for every older transaction on the parent, blocking no one.
    concurrent_wait_s: ClassVar[float] = 120.0
    #: pg_dump / pg_restore of one partition.
    tool_timeout_s: ClassVar[float] = 6 * 3600.0


class ArchiveError(RuntimeError):
    """A step failed; the run stopped and nothing was dropped. ``hint`` says how to retry or undo."""

    def __init__(
        self, message: str, *, item: ArchiveItem | None = None, completed: Sequence[ArchiveItem] = ()
    ):
        self.message = message
        self.item = item
        self.completed = list(completed)
        self.hint = item.recovery_hint() if item is not None else ""
        super().__init__(f"{message}\n{self.hint}" if self.hint else message)


@dataclasses.dataclass
class LockWait:
    """How one lock-taking step went: attempts, seconds spent waiting, seconds the lock was held.

    For ``CONCURRENTLY``/``FINALIZE`` steps ``waited_s`` is the statement's whole duration, during which it
    blocks no one, and ``held_s`` is 0.
    """

    attempts: int
    waited_s: float
    held_s: float


@dataclasses.dataclass(kw_only=True)
class ArchiveItem:
    """One partition's way through the archive; ``state`` says where it stands now."""

    name: str
    start: dt.date
    end: dt.date
    state: State = "attached"
    rows: int | None = None
    checksum: str | None = None
    dump_path: Path | None = None
    prereq_path: Path | None = None
    manifest_path: Path | None = None
    dump_sha256: str | None = None
    locks: dict[str, LockWait] = dataclasses.field(default_factory=dict)
    timestamps: dict[str, str] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)

    def attach_sql(self) -> str:
        return (
            f"ALTER TABLE public.{partitions.PARENT} ATTACH PARTITION public.{self.name} "
            f"FOR VALUES FROM ('{self.start.isoformat()}') TO ('{self.end.isoformat()}');"
        )

    def recovery_hint(self) -> str:
        if self.state == "attached":
            return f"public.{self.name} is still attached; nothing changed."
        if self.state == "detach-pending":
            return (
                f"public.{self.name} is half-detached (detach pending: new queries no longer see it, no rows lost). "
                "Rerun the archive to finish it with DETACH ... FINALIZE, or run: "
                f"ALTER TABLE public.{partitions.PARENT} DETACH PARTITION public.{self.name} FINALIZE;"
            )
        if self.state == "detached":
            rows = f"all its {self.rows:,} rows" if self.rows is not None else "all its rows"
            return (
                f"public.{self.name} is detached and kept as a plain table with {rows}. Rerun the same archive "
                f"command to retry (it resumes from the detached table), or put it back with: {self.attach_sql()} "
                "(SHARE UPDATE EXCLUSIVE on the parent; rows that reached DEFAULT for that range meanwhile must be "
                "moved first)."
            )
        return ""

    def _touch(self, what: str) -> None:
        self.timestamps[what] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


# --- cutoff -----------------------------------------------------------------------------------------------------


def cutoff_date(older_than: str, *, today: dt.date | None = None) -> dt.date:
    """``today`` minus an age such as ``2y``, ``18m``, ``90d`` or ``1y6m`` (calendar months, clamped day)."""
    text = older_than.strip().lower()
    parts = _AGE_RE.findall(text)
    if not parts or _AGE_RE.sub("", text).strip():
        raise ValueError(f"--older-than {older_than!r}: use a number and y, m or d, e.g. 2y, 18m, 90d")
    day = today or dt.date.today()
    months = sum(int(n) * (12 if unit == "y" else 1) for n, unit in parts if unit != "d")
    days = sum(int(n) for n, unit in parts if unit == "d")
    year, month0 = divmod(day.year * 12 + day.month - 1 - months, 12)
    clamped = min(day.day, calendar.monthrange(year, month0 + 1)[1])
    return dt.date(year, month0 + 1, clamped) - dt.timedelta(days=days)


def _effective_cutoff(older_than: str | None, before: dt.date | None, today: dt.date | None) -> dt.date:
    # Both given: a partition must satisfy both, so the earlier date wins.
    cutoffs = [c for c in (cutoff_date(older_than, today=today) if older_than else None, before) if c]
    if not cutoffs:
        raise ValueError("give --older-than (e.g. 2y) or --before DATE")
    return min(cutoffs)


# --- planning ---------------------------------------------------------------------------------------------------


def plan(conn: Conn, *, cutoff: dt.date, names: Iterable[str] | None = None) -> list[ArchiveItem]:
    """Partitions (attached, detach-pending, or left detached by an earlier run) whose range ends <= cutoff."""
    pending = {
        str(r[0])
        for r in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'public.meeting_page'::regclass AND i.inhdetachpending"
        ).fetchall()
    }
    found: dict[str, ArchiveItem] = {}
    for p in partitions.list_partitions(conn):
        if p.start is not None and p.end is not None and p.end <= cutoff:
            state: State = "detach-pending" if p.name in pending else "attached"
            found[p.name] = ArchiveItem(name=p.name, start=p.start, end=p.end, state=state)
    for name, comment in conn.execute(
        "SELECT c.relname, obj_description(c.oid, 'pg_class') FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind = 'r' AND NOT c.relispartition "
        "AND obj_description(c.oid, 'pg_class') LIKE %s",
        [MARKER + "%"],
    ).fetchall():
        meta = json.loads(str(comment).removeprefix(MARKER))
        start, end = dt.date.fromisoformat(meta["start"]), dt.date.fromisoformat(meta["end"])
        if end <= cutoff:
            found[str(name)] = ArchiveItem(name=str(name), start=start, end=end, state="detached")
    items = sorted(found.values(), key=lambda i: i.start)
    if names is not None:
        wanted = set(names)
        missing = wanted - {i.name for i in items}
        if missing:
            raise ArchiveError(
                f"not archivable with cutoff {cutoff.isoformat()} (no such partition, or its range ends after "
                f"the cutoff): {', '.join(sorted(missing))}"
            )
        items = [i for i in items if i.name in wanted]
    for item in items:
        if not _NAME_RE.match(item.name):
            raise ArchiveError(f"refusing partition with unexpected name {item.name!r}")
    return items


# --- binaries and connections -------------------------------------------------------------------------------------


def find_pg_tool(name: str, *, server_major: int = 15) -> str:
    """Path of ``pg_dump``/``pg_restore`` able to handle this server (Debian keeps them outside PATH).

    pg_dump refuses servers newer than itself, so take the newest installed major >= the server's.
    """
    dirs = sorted(
        (Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin") if Path(p).parent.name.isdigit()),
        key=lambda p: int(p.parent.name),
        reverse=True,
    )
    for bindir in dirs:
        if int(bindir.parent.name) >= server_major and (bindir / name).exists():
            return str(bindir / name)
    found = shutil.which(name)
    if found:
        return found
    raise ArchiveError(
        f"{name} not found: install the PostgreSQL {server_major} client ('apt-get install postgresql')"
    )


def _tool_target(dsn: str, *, dbname: str | None = None) -> tuple[str, dict[str, str]]:
    """A conninfo for a client tool, with the password moved to the environment (argv is world-readable)."""
    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    env = dict(os.environ)
    password = params.pop("password", None)
    if password is not None:
        env["PGPASSWORD"] = password
    if dbname is not None:
        params["dbname"] = dbname
    return make_conninfo("", **params), env


def _scratch_dsn(conn: Conn, dsn: str, restore_dsn: str | None) -> str:
    """The server itself, not PgBouncer: a scratch database has no PgBouncer alias."""
    if restore_dsn:
        return restore_dsn
    row = conn.execute(
        "SELECT host(inet_server_addr()), current_setting('port'), current_setting('unix_socket_directories')"
    ).fetchone()
    assert row is not None
    addr, port, sockets = row
    params = {k: v for k, v in conninfo_to_dict(dsn).items() if k != "hostaddr"}
    params["host"] = str(addr) if addr else str(sockets).split(",")[0].strip()
    params["port"] = str(port)
    return make_conninfo("", **params)


def _run_tools(jobs: Sequence[tuple[list[str], str]], env: dict[str, str]) -> None:
    """Run client tools side by side (each is mostly waiting on the server); any failure fails them all."""
    procs = [
        (subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True), what)
        for cmd, what in jobs
    ]
    deadline = time.monotonic() + ArchivePolicy.tool_timeout_s
    problems = []
    try:
        for proc, what in procs:
            try:
                _, stderr = proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                problems.append(f"{what} timed out after {ArchivePolicy.tool_timeout_s:.0f} s")
                continue
            if proc.returncode != 0:
                tail = " | ".join(stderr.strip().splitlines()[-3:])
                problems.append(f"{what} failed (exit {proc.returncode}): {tail}")
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if problems:
        raise ArchiveError("; ".join(problems))


# --- locking ------------------------------------------------------------------------------------------------------


def _set_lock_timeout(conn: Conn, seconds: float, *, local: bool) -> None:
    conn.execute("SELECT set_config('lock_timeout', %s, %s)", [f"{max(1, int(seconds * 1000))}ms", local])


def _with_retries(conn: Conn, body: Callable[[], None], *, lock_parent: bool) -> LockWait:
    """Run ``body`` in a short transaction under ``lock_timeout``, retrying lock timeouts with backoff.

    With ``lock_parent`` the transaction first takes ACCESS EXCLUSIVE on the parent alone (``ONLY``: not every
    partition), so the wait and the hold can be measured apart; the DDL in ``body`` then takes its other locks
    in the same parent-first order readers use, so it cannot deadlock with them.
    """
    attempts, waited, delay = 0, 0.0, ArchivePolicy.backoff_initial_s
    while True:
        attempts += 1
        t0 = time.monotonic()
        try:
            with conn.transaction():
                _set_lock_timeout(conn, ArchivePolicy.lock_timeout_s, local=True)
                if lock_parent:
                    conn.execute(sql.SQL("LOCK TABLE ONLY {} IN ACCESS EXCLUSIVE MODE").format(PARENT))
                t1 = time.monotonic()
                body()
            return LockWait(attempts, round(waited + t1 - t0, 4), round(time.monotonic() - t1, 4))
        except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected):
            waited += time.monotonic() - t0
            if attempts >= ArchivePolicy.lock_attempts:
                raise
            # Jitter so two maintenance jobs retrying do not collide in step; not security-relevant.
            time.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311
            delay = min(delay * 2, ArchivePolicy.backoff_max_s)


@contextlib.contextmanager
def _session_lock_timeout(conn: Conn, seconds: float) -> Iterator[None]:
    # CONCURRENTLY/FINALIZE refuse to run in a transaction block, so SET LOCAL is impossible; the session value
    # is reset right after (and PgBouncer's session mode runs DISCARD ALL when the client leaves anyway).
    _set_lock_timeout(conn, seconds, local=False)
    try:
        yield
    finally:
        conn.execute("RESET lock_timeout")


def _mark(conn: Conn, item: ArchiveItem) -> None:
    """Record the range on the detached table, so a rerun can resume from it and re-attach it exactly."""
    meta = {"parent": partitions.PARENT, "start": item.start.isoformat(), "end": item.end.isoformat()}
    conn.execute(
        sql.SQL("COMMENT ON TABLE {} IS {}").format(
            sql.Identifier("public", item.name), sql.Literal(MARKER + json.dumps(meta))
        )
    )


def _default_exists(conn: Conn) -> bool:
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = 'public.meeting_page'::regclass "
        "AND partdefid <> 0)"
    ).fetchone()
    return bool(row and row[0])


def _finalize(conn: Conn, item: ArchiveItem) -> None:
    ident = sql.Identifier("public", item.name)
    t0 = time.monotonic()
    with _session_lock_timeout(conn, ArchivePolicy.concurrent_wait_s):
        conn.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {} FINALIZE").format(PARENT, ident))
    item.locks["finalize"] = LockWait(1, round(time.monotonic() - t0, 4), 0.0)
    item.state = "detached"
    _mark(conn, item)


def _detach_concurrently(conn: Conn, item: ArchiveItem) -> None:
    ident = sql.Identifier("public", item.name)
    t0 = time.monotonic()
    try:
        with _session_lock_timeout(conn, ArchivePolicy.concurrent_wait_s):
            conn.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {} CONCURRENTLY").format(PARENT, ident))
    except psycopg.Error:
        # Interrupted after its first transaction, the detach stays pending; only FINALIZE can finish it.
        row = conn.execute(
            "SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = %s::regclass",
            [f"public.{item.name}"],
        ).fetchone()
        if row and row[0]:
            item.state = "detach-pending"
        raise
    item.locks["detach"] = LockWait(1, round(time.monotonic() - t0, 4), 0.0)
    item.state = "detached"
    _mark(conn, item)


def _detach_locked(conn: Conn, item: ArchiveItem) -> None:
    ident = sql.Identifier("public", item.name)

    def body() -> None:
        conn.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(PARENT, ident))
        _mark(conn, item)  # same transaction: detached implies marked

    item.locks["detach"] = _with_retries(conn, body, lock_parent=True)
    item.state = "detached"


def _detach_swapping_default(conn: Conn, item: ArchiveItem, progress: ProgressHook) -> None:
    # DEFAULT must be empty, or its rows would be invisible while it is detached; and the current period needs
    # its partition, so ordinary inserts do not need DEFAULT during the window.
    maintenance_partitions.drain_default(conn)
    partitions.ensure_ahead(conn, 1)

    def detach_default() -> None:
        conn.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(PARENT, DEFAULT))
        left = conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(DEFAULT)).fetchone()
        if left and left[0]:
            # A row arrived between the drain and our lock: roll back and let the caller rerun.
            raise ArchiveError("DEFAULT received rows while being drained; rerun the archive")

    item.locks["default-detach"] = _with_retries(conn, detach_default, lock_parent=True)
    progress("default-detached", item)
    try:
        _detach_concurrently(conn, item)
    finally:

        def attach_default() -> None:
            conn.execute(sql.SQL("ALTER TABLE {} ATTACH PARTITION {} DEFAULT").format(PARENT, DEFAULT))

        try:
            item.locks["default-attach"] = _with_retries(conn, attach_default, lock_parent=False)
        except psycopg.Error as exc:
            raise ArchiveError(
                f"could not re-attach {partitions.DEFAULT_PARTITION} ({exc}); inserts for dates without a "
                f"partition fail until someone runs: ALTER TABLE public.{partitions.PARENT} ATTACH PARTITION "
                f"public.{partitions.DEFAULT_PARTITION} DEFAULT;",
                item=item,
            ) from exc
        progress("default-attached", item)


# --- dump, verify, drop -------------------------------------------------------------------------------------------


def _fingerprint(conn: Conn, name: str) -> tuple[int, str]:
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in partitions.PAGE_COLUMNS)
    query = sql.SQL(_CHECKSUM_SQL).format(cols=cols, tbl=sql.Identifier("public", name))
    row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(partial: Path, final: Path) -> None:
    """Make a finished file durable under its final name (an archive we drop data for must survive a crash)."""
    _fsync(partial)
    partial.replace(final)
    _fsync(final.parent)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    _publish(partial, path)


@dataclasses.dataclass(frozen=True)
class _Run:
    conn: Conn
    dsn: str
    scratch_dsn: str
    dest: Path
    stamp: str
    strategy: Strategy
    progress: ProgressHook
    pg_dump: str
    pg_restore: str


def _dump(run: _Run, item: ArchiveItem) -> None:
    stem = f"{item.name}-{run.stamp}"
    target, env = _tool_target(run.dsn)
    dump = run.dest / f"{stem}.dump"
    prereq = run.dest / f"{stem}.prereq.dump"
    # Quoted pattern: no wildcard or case folding can ever widen the selection beyond this one table.
    table_cmd = [run.pg_dump, "--no-password", "--format=custom", f'--table=public."{item.name}"']
    # Everything but relations (-T '*'): extensions, types, functions, text search configuration. Schema only
    # and no tables, so it locks nothing the gateway uses.
    prereq_cmd = [run.pg_dump, "--no-password", "--format=custom", "--schema-only", "--exclude-table=*"]
    _run_tools(
        [
            ([*table_cmd, f"--file={dump}.partial", f"--dbname={target}"], "pg_dump"),
            ([*prereq_cmd, f"--file={prereq}.partial", f"--dbname={target}"], "pg_dump (prerequisites)"),
        ],
        env,
    )
    _publish(Path(f"{dump}.partial"), dump)
    _publish(Path(f"{prereq}.partial"), prereq)
    item.dump_path, item.prereq_path, item.dump_sha256 = dump, prereq, _sha256(dump)
    item._touch("dumped_at")


def _verify(run: _Run, item: ArchiveItem) -> None:
    assert item.dump_path is not None and item.prereq_path is not None
    scratch = f"{SCRATCH_PREFIX}{os.getpid()}"
    run.conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch)))
    run.conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch)))
    try:
        target, env = _tool_target(run.scratch_dsn, dbname=scratch)
        base = [run.pg_restore, "--no-password", "--exit-on-error", "--no-owner", "--no-privileges"]
        _run_tools(
            [([*base, f"--dbname={target}", str(item.prereq_path)], "pg_restore (prerequisites)")], env
        )
        sections = ["--section=pre-data", "--section=data"]  # not post-data: index builds prove nothing here
        _run_tools([([*base, *sections, f"--dbname={target}", str(item.dump_path)], "pg_restore")], env)
        with psycopg.connect(
            run.scratch_dsn, dbname=scratch, autocommit=True, prepare_threshold=None
        ) as check:
            restored = _fingerprint(check, item.name)
    finally:
        run.conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch)))
    if restored != (item.rows, item.checksum):
        raise ArchiveError(
            f"restore check failed for {item.name}: restored {restored[0]} rows / checksum {restored[1]}, "
            f"expected {item.rows} / {item.checksum}",
            item=item,
        )
    if _sha256(item.dump_path) != item.dump_sha256:
        raise ArchiveError(f"{item.dump_path} changed while it was being verified", item=item)
    item._touch("verified_at")


def _manifest(run: _Run, item: ArchiveItem, status: str) -> None:
    assert item.dump_path is not None and item.prereq_path is not None
    item.manifest_path = run.dest / f"{item.name}-{run.stamp}.manifest.json"
    server = run.conn.info.server_version
    _write_json(
        item.manifest_path,
        {
            "format": 1,
            "status": status,
            "parent": f"public.{partitions.PARENT}",
            "partition": f"public.{item.name}",
            "range": {"from": item.start.isoformat(), "to": item.end.isoformat(), "to_exclusive": True},
            "rows": item.rows,
            "checksum": item.checksum,
            "checksum_method": CHECKSUM_METHOD,
            "dump_file": item.dump_path.name,
            "dump_sha256": item.dump_sha256,
            "dump_bytes": item.dump_path.stat().st_size,
            "prereq_file": item.prereq_path.name,
            "prereq_sha256": _sha256(item.prereq_path),
            "server_version": f"{server // 10000}.{server % 10000}",
            "strategy": run.strategy,
            "locks": {k: dataclasses.asdict(v) for k, v in item.locks.items()},
            "timestamps": item.timestamps,
            "notes": item.notes,
            "restore": [
                "createdb <db>  # an empty database",
                f"pg_restore --no-owner -d <db> {item.prereq_path.name}  # types, text search configuration",
                f"pg_restore --no-owner -d <db> {item.dump_path.name}",
                f"# or back into the live database (the table name is free again): pg_restore -d <live db> "
                f"{item.dump_path.name}, then {item.attach_sql()}",
            ],
        },
    )


def _drop(run: _Run, item: ArchiveItem) -> None:
    ident = sql.Identifier("public", item.name)

    def body() -> None:
        run.conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(ident))
        row = run.conn.execute(
            "SELECT relispartition FROM pg_class WHERE oid = %s::regclass", [f"public.{item.name}"]
        ).fetchone()
        if row is None or row[0]:
            raise ArchiveError(f"public.{item.name} was re-attached meanwhile; not dropping it", item=item)
        # Under the lock: rows written to the detached table after the dump would be lost by the drop.
        if _fingerprint(run.conn, item.name) != (item.rows, item.checksum):
            raise ArchiveError(f"public.{item.name} changed after it was dumped; not dropping it", item=item)
        run.conn.execute(sql.SQL("DROP TABLE {}").format(ident))

    item.locks["drop"] = _with_retries(run.conn, body, lock_parent=False)
    item.state = "archived"
    item._touch("dropped_at")
    if not _default_exists(run.conn):
        return
    strays = run.conn.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE meeting_date >= %s AND meeting_date < %s").format(DEFAULT),
        [item.start, item.end],
    ).fetchone()
    if strays and strays[0]:
        item.notes.append(
            f"{strays[0]} rows for this range arrived in DEFAULT after the detach; they are not archived"
        )


def _archive_one(run: _Run, item: ArchiveItem) -> None:
    item._touch("started_at")
    if item.state == "detach-pending":
        _finalize(run.conn, item)
        run.progress("finalized", item)
    if item.state == "attached":
        if not _default_exists(run.conn):
            _detach_concurrently(run.conn, item)
        elif run.strategy == "swap-default":
            _detach_swapping_default(run.conn, item, run.progress)
        else:
            _detach_locked(run.conn, item)
        item._touch("detached_at")
        run.progress("detached", item)
    item.rows, item.checksum = _fingerprint(run.conn, item.name)
    _dump(run, item)
    run.progress("dumped", item)
    _verify(run, item)
    run.progress("verified", item)
    _manifest(run, item, "verified")  # durable before the drop
    run.progress("manifest", item)
    _drop(run, item)
    _manifest(run, item, "archived")
    run.progress("dropped", item)


def archive_partitions(
    dsn: str,
    *,
    dest: Path,
    older_than: str | None = None,
    before: dt.date | None = None,
    names: Iterable[str] | None = None,
    strategy: Strategy = "swap-default",
    dry_run: bool = False,
    restore_dsn: str | None = None,
    today: dt.date | None = None,
    progress: ProgressHook | None = None,
) -> list[ArchiveItem]:
    """Archive every partition whose range ends on or before the cutoff; returns them, in date order.

    The cutoff is ``today - older_than`` and/or ``before`` (the earlier wins); ``names`` narrows the choice to
    those partitions, each of which must qualify. ``dsn`` must reach the primary in a session (direct, or a
    PgBouncer session-mode alias). ``restore_dsn`` overrides where the scratch database is reached. ``progress``
    is called after each step. Raises :class:`ArchiveError` at the first failure; nothing is dropped then.
    """
    cutoff = _effective_cutoff(older_than, before, today)
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        if row is None or row[0]:
            raise ArchiveError("archive must run on the primary; this DSN reaches a replica")
        items = plan(conn, cutoff=cutoff, names=names)
        if dry_run or not items:
            return items
        locked = conn.execute("SELECT pg_try_advisory_lock(%s)", [ADVISORY_KEY]).fetchone()
        if not locked or not locked[0]:
            raise ArchiveError("another partitions archive run is in progress (advisory lock held)")
        try:
            # Under the lock no other run is verifying, so any scratch database left is a crashed run's.
            for (stale,) in conn.execute(
                "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", [SCRATCH_PREFIX]
            ).fetchall():
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(stale)))
                )
            dest.mkdir(parents=True, exist_ok=True)
            major = conn.info.server_version // 10000
            run = _Run(
                conn=conn,
                dsn=dsn,
                scratch_dsn=_scratch_dsn(conn, dsn, restore_dsn),
                dest=dest,
                stamp=dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ"),
                strategy=strategy,
                progress=progress or (lambda step, item: None),
                pg_dump=find_pg_tool("pg_dump", server_major=major),
                pg_restore=find_pg_tool("pg_restore", server_major=major),
            )
            done: list[ArchiveItem] = []
            for item in items:
                try:
                    _archive_one(run, item)
                except ArchiveError as exc:
                    # Re-raised with the run's context: the hint follows the item's state at the failure.
                    raise ArchiveError(exc.message, item=item, completed=done) from exc
                except (psycopg.Error, OSError) as exc:
                    raise ArchiveError(f"{item.name}: {exc}".strip(), item=item, completed=done) from exc
                done.append(item)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", [ADVISORY_KEY])
    return items


# --- CLI ----------------------------------------------------------------------------------------------------------


def run_cli(
    dsn: str,
    *,
    dest: Path | None,
    older_than: str | None,
    before: dt.date | None = None,
    names: Sequence[str] | None = None,
    strategy: Strategy = "swap-default",
    dry_run: bool = False,
    restore_dsn: str | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """``python -m ops partitions archive``: print progress and a summary; exit status 0, 1 or 2."""

    def say(text: str, *, error: bool = False) -> None:
        print(text, file=(err or sys.stderr) if error else (out or sys.stdout), flush=True)

    if dest is None and not dry_run:
        say("partitions archive: --to DIR is required", error=True)
        return 2

    def progress(step: Step, item: ArchiveItem) -> None:
        lock = item.locks.get("detach")
        extra = (
            f" (lock waited {lock.waited_s:.3f}s, held {lock.held_s:.3f}s)"
            if step == "detached" and lock
            else ""
        )
        say(f"{item.name}: {step}{extra}")

    try:
        items = archive_partitions(
            dsn,
            dest=dest or Path("."),
            older_than=older_than,
            before=before,
            names=names or None,
            strategy=strategy,
            dry_run=dry_run,
            restore_dsn=restore_dsn,
            progress=progress,
        )
    except ValueError as exc:
        say(f"partitions archive: {exc}", error=True)
        return 2
    except ArchiveError as exc:
        say(f"partitions archive FAILED: {exc}", error=True)
        return 1
    if not items:
        say("nothing to archive")
    for item in items:
        rng = f"[{item.start.isoformat()}, {item.end.isoformat()})"
        if dry_run:
            say(f"would archive {item.name} {rng} ({item.state})")
        else:
            say(f"archived {item.name} {rng}: {item.rows:,} rows -> {item.manifest_path}")
            for note in item.notes:
                say(f"  note: {note}")
    return 0
