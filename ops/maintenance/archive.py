"""Archive old ``meeting_page`` partitions: detach, dump, prove the dump restores, and only then drop.

``python -m ops partitions archive --older-than 2y --to DIR`` runs, for every partition whose whole range
ends on or before the cutoff, these steps; each must succeed before the next starts, and a failure stops the run
with the data kept:

1. **detach** the partition from ``meeting_page`` (:mod:`ops.maintenance.archive_detach` explains the locks).
   From here on it is a plain table; a comment on it (``civic-archive {...}``) records its range, so a rerun
   finds it and resumes.
2. **fingerprint** it: row count and an order-independent checksum (the sum of the first 64 bits of the md5 of
   every row's columns, so no sort is needed and memory stays constant).
3. **dump** it with ``pg_dump -Fc -t public.<partition>``, plus a small schema-only dump of what its columns
   need (extensions, the ``document_type`` enum, the ``civic`` text search configuration), so the archive can
   be restored into an empty database. Files are written as ``.partial``, fsynced and renamed.
4. **verify**: create a scratch database, ``pg_restore`` both dumps into it, and compare its row count and
   checksum with step 2; the dump's sha256 must also be unchanged after the restore. The scratch database is
   dropped whatever happens. Only the table and its data are restored, not its indexes: rebuilding a GIN index
   is the slowest part of a restore and proves nothing about the data.
5. **manifest**: ``<partition>-<stamp>.manifest.json`` next to the dump (range, rows, checksum, files and their
   sha256, timestamps, lock measurements), fsynced before anything is dropped.
6. **drop**: in one transaction, lock the detached table, check it is still not a partition and still matches
   the fingerprint (so no row written after the dump is lost), then ``DROP TABLE``.

A failure before step 6 leaves the table detached with all its rows; the error says how to rerun (which resumes
from the detached table) or re-attach it. A partition left "detach pending" by an interrupted
``DETACH ... CONCURRENTLY`` is finished with ``DETACH ... FINALIZE`` first.

Everything runs on the primary with one autocommit connection (``prepare_threshold=None``; a direct DSN or a
PgBouncer session-mode alias), under a session advisory lock so two archive runs never race. The scratch database
is reached directly at the address the server reports (PgBouncer has no alias for it), or at ``restore_dsn``.
Rows for an archived range that arrive later land in DEFAULT; the run reports them.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TextIO

import psycopg
from psycopg import sql

from ops.maintenance.archive_detach import (
    default_exists,
    detach_concurrently,
    detach_locked,
    detach_swapping_default,
    finalize,
    with_retries,
)
from ops.maintenance.archive_dump import dump, find_pg_tool, fingerprint, scratch_dsn, verify, write_manifest
from ops.maintenance.archive_model import (
    ADVISORY_KEY,
    DEFAULT,
    SCRATCH_PREFIX,
    ArchiveError,
    ArchiveItem,
    ArchivePolicy,
    ArchiveRun,
    LockWait,
    ProgressHook,
    Step,
    Strategy,
    cutoff_date,
    effective_cutoff,
    plan,
)

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


def _drop(run: ArchiveRun, item: ArchiveItem) -> None:
    ident = sql.Identifier("public", item.name)

    def body() -> None:
        run.conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(ident))
        row = run.conn.execute(
            "SELECT relispartition FROM pg_class WHERE oid = %s::regclass", [f"public.{item.name}"]
        ).fetchone()
        if row is None or row[0]:
            raise ArchiveError(f"public.{item.name} was re-attached meanwhile; not dropping it", item=item)
        # Under the lock: rows written to the detached table after the dump would be lost by the drop.
        if fingerprint(run.conn, item.name) != (item.rows, item.checksum):
            raise ArchiveError(f"public.{item.name} changed after it was dumped; not dropping it", item=item)
        run.conn.execute(sql.SQL("DROP TABLE {}").format(ident))

    item.locks["drop"] = with_retries(run.conn, body, lock_parent=False)
    item.state = "archived"
    item._touch("dropped_at")
    if not default_exists(run.conn):
        return
    strays = run.conn.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE meeting_date >= %s AND meeting_date < %s").format(DEFAULT),
        [item.start, item.end],
    ).fetchone()
    if strays and strays[0]:
        item.notes.append(
            f"{strays[0]} rows for this range arrived in DEFAULT after the detach; they are not archived"
        )


def _archive_one(run: ArchiveRun, item: ArchiveItem) -> None:
    item._touch("started_at")
    if item.state == "detach-pending":
        finalize(run.conn, item)
        run.progress("finalized", item)
    if item.state == "attached":
        if not default_exists(run.conn):
            detach_concurrently(run.conn, item)
        elif run.strategy == "swap-default":
            detach_swapping_default(run.conn, item, run.progress)
        else:
            detach_locked(run.conn, item)
        item._touch("detached_at")
        run.progress("detached", item)
    item.rows, item.checksum = fingerprint(run.conn, item.name)
    dump(run, item)
    run.progress("dumped", item)
    verify(run, item)
    run.progress("verified", item)
    write_manifest(run, item, "verified")  # durable before the drop
    run.progress("manifest", item)
    _drop(run, item)
    write_manifest(run, item, "archived")
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
    cutoff = effective_cutoff(older_than, before, today)
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
            run = ArchiveRun(
                conn=conn,
                dsn=dsn,
                scratch_dsn=scratch_dsn(conn, dsn, restore_dsn),
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
