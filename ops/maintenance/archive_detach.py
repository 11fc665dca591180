"""Detaching a partition from ``meeting_page`` without stalling the searches that read it.

Locking (PostgreSQL 15; modes observed in ``pg_locks``, see tests/test_partitions_lifecycle.py):

* ``DETACH PARTITION`` (plain) takes ACCESS EXCLUSIVE on the parent, on the partition and its indexes, and on
  the DEFAULT partition (whose implicit constraint changes). It is catalog work only: milliseconds once granted.
  But while it *waits* for the lock, every new query on ``meeting_page`` queues behind it.
* ``DETACH PARTITION ... CONCURRENTLY`` first marks the partition "detach pending" in a short transaction under
  SHARE UPDATE EXCLUSIVE (which blocks no reader or writer), commits, then waits for every older transaction.
  While it waits it holds no lock on ``meeting_page`` at all (only a ShareLock wait on the older transactions'
  virtualxid), so nothing queues behind it; it ends with ACCESS EXCLUSIVE on the partition alone, which new
  queries no longer see. ``lock_timeout`` also bounds that wait; interrupted there, the partition stays
  "detach pending" until ``DETACH ... FINALIZE``. It refuses to run while a DEFAULT partition exists ("cannot
  detach partitions concurrently when a default partition exists"), and our schema has one.
* ``ATTACH PARTITION ... DEFAULT`` takes SHARE UPDATE EXCLUSIVE on the parent and ACCESS EXCLUSIVE on the table
  being attached, and scans it (cheap when empty).

Two strategies follow from that; docs/performance.md has what each cost readers when measured:

``lock-timeout``
    One plain DETACH, in a short transaction that first takes ``LOCK TABLE ONLY meeting_page IN ACCESS
    EXCLUSIVE MODE`` under a small ``lock_timeout``, retried with backoff. A query arriving while we wait is
    delayed by at most that timeout; once granted, the lock is held for a few milliseconds. If every attempt
    times out, nothing has changed.
``swap-default`` (the default)
    Drain DEFAULT into real partitions and make sure the current period has one (so hardly any insert needs
    DEFAULT), detach DEFAULT as above, ``DETACH ... CONCURRENTLY`` the target, and re-attach DEFAULT in a
    ``finally``. It still needs one ACCESS EXCLUSIVE on the parent (to detach DEFAULT), exactly like
    ``lock-timeout``, so it does not lower the peak lock (and draining may create partitions, another ACCESS
    EXCLUSIVE, under ``ensure_partition``'s lock_timeout). It adds a window, as long as the concurrent detach
    waits for older transactions (a long search stretches it to seconds), in which inserts for dates without a
    partition fail with "no partition of relation found for row" (SQLSTATE 23514, shown by the tests); and a
    process killed inside that window (no ``finally`` runs) leaves DEFAULT detached until someone re-attaches it.

It is the default because the detach of the partition itself is ``CONCURRENTLY`` and readers saw a lower worst
case: the only exclusive lock is taken for DEFAULT, which a search touches only for dates without a partition.
Its window for such inserts is closed in practice by ``partitions ensure --ahead`` (run before, and by the
archive itself), and a killed run is repaired by the next one, which re-attaches DEFAULT and finalizes a pending
detach. ``--strategy lock-timeout`` is the alternative with no window at all. With no DEFAULT partition, both
strategies use ``CONCURRENTLY`` directly.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Callable, Iterator

import psycopg
from psycopg import sql

from migrations import partitions
from ops.maintenance import partitions as maintenance_partitions
from ops.maintenance.archive_model import (
    DEFAULT,
    MARKER,
    PARENT,
    ArchiveError,
    ArchiveItem,
    ArchivePolicy,
    Conn,
    LockWait,
    ProgressHook,
)


def _set_lock_timeout(conn: Conn, seconds: float, *, local: bool) -> None:
    conn.execute("SELECT set_config('lock_timeout', %s, %s)", [f"{max(1, int(seconds * 1000))}ms", local])


def with_retries(conn: Conn, body: Callable[[], None], *, lock_parent: bool) -> LockWait:
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


def default_exists(conn: Conn) -> bool:
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = 'public.meeting_page'::regclass "
        "AND partdefid <> 0)"
    ).fetchone()
    return bool(row and row[0])


def finalize(conn: Conn, item: ArchiveItem) -> None:
    ident = sql.Identifier("public", item.name)
    t0 = time.monotonic()
    with _session_lock_timeout(conn, ArchivePolicy.concurrent_wait_s):
        conn.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {} FINALIZE").format(PARENT, ident))
    item.locks["finalize"] = LockWait(1, round(time.monotonic() - t0, 4), 0.0)
    item.state = "detached"
    _mark(conn, item)


def detach_concurrently(conn: Conn, item: ArchiveItem) -> None:
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


def detach_locked(conn: Conn, item: ArchiveItem) -> None:
    ident = sql.Identifier("public", item.name)

    def body() -> None:
        conn.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(PARENT, ident))
        _mark(conn, item)  # same transaction: detached implies marked

    item.locks["detach"] = with_retries(conn, body, lock_parent=True)
    item.state = "detached"


def detach_swapping_default(conn: Conn, item: ArchiveItem, progress: ProgressHook) -> None:
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

    item.locks["default-detach"] = with_retries(conn, detach_default, lock_parent=True)
    progress("default-detached", item)
    try:
        detach_concurrently(conn, item)
    finally:

        def attach_default() -> None:
            conn.execute(sql.SQL("ALTER TABLE {} ATTACH PARTITION {} DEFAULT").format(PARENT, DEFAULT))

        try:
            item.locks["default-attach"] = with_retries(conn, attach_default, lock_parent=False)
        except psycopg.Error as exc:
            raise ArchiveError(
                f"could not re-attach {partitions.DEFAULT_PARTITION} ({exc}); inserts for dates without a "
                f"partition fail until someone runs: ALTER TABLE public.{partitions.PARENT} ATTACH PARTITION "
                f"public.{partitions.DEFAULT_PARTITION} DEFAULT;",
                item=item,
            ) from exc
        progress("default-attached", item)
