"""What an archive run works on: which partitions qualify, each one's state, and the timing policy."""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
import json
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import psycopg
from psycopg import sql

from migrations import partitions

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
# left out because the text fixes it (the trigger of migration 0011 computes it from the text; the dump carries
# the stored vector as data, and a table attached again gets the parent's trigger back).
CHECKSUM_SQL = "SELECT count(*), coalesce(sum(('x' || left(md5(ROW({cols})::text), 16))::bit(64)::bigint), 0)::text FROM {tbl}"
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


def effective_cutoff(older_than: str | None, before: dt.date | None, today: dt.date | None) -> dt.date:
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


@dataclasses.dataclass(frozen=True)
class ArchiveRun:
    conn: Conn
    dsn: str
    scratch_dsn: str
    dest: Path
    stamp: str
    strategy: Strategy
    progress: ProgressHook
    pg_dump: str
    pg_restore: str
