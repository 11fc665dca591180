"""``python -m ops repack``: online bloat repair of ``meeting_page``'s partitions with pg_repack.

``VACUUM FULL`` would hold an ACCESS EXCLUSIVE lock on a partition for the whole rewrite, so searches over its
dates would queue behind it. pg_repack copies the table into a new file while logging concurrent changes with a
trigger, replays them, and takes the exclusive lock only for the final swap of files. So:

* **One partition at a time.** Each rewrite needs about the partition's size again on disk (the copy and its
  indexes) plus the WAL it writes, which every replica and replication slot must also hold for a while. Doing
  one at a time bounds that to the largest partition, and the free space is measured again before each one.
* **Refuses when headroom is short.** Before each partition the free space of the primary's data directory is
  read on the database server itself (``df`` through ``COPY … FROM PROGRAM``: superuser, which pg_repack needs
  anyway). The run stops, changing nothing more, unless ``free - space_factor * partition size`` stays above
  ``reserve_percent`` of the disk. ``--space-factor`` (default 2: the copy, plus as much WAL) and
  ``--reserve-percent`` (default 10) are the flags.
* **Never kills a client.** ``--no-kill-backend``: when a query holds a conflicting lock past ``--wait-timeout``,
  pg_repack gives up on that partition (reported as failed) instead of cancelling the query.
* **Which partitions.** Those named with ``--partition``, or else every partition whose estimated heap bloat
  (the estimate behind ``civic_table_bloat_bytes``, after an ANALYZE) is at least ``--min-bloat-ratio`` of its
  heap and ``--min-bloat-mb``. Largest bloat first.

The pg_repack extension is created in the database when it is missing (``CREATE EXTENSION pg_repack``); the
server needs Debian's ``postgresql-15-repack`` (``ops/bootstrap.sh`` installs it, the compose image has it) and
the client binary must be the same version. Connections go to the primary through the admin DSNs
(``GATEWAY_ADMIN_NODES``: session mode, which pg_repack's advisory lock and triggers need).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from gateway.dbstats import BLOAT_SQL

PARENT = "meeting_page"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
EXIT_REFUSED = 3
EXIT_FAILED = 1

PARTITIONS_SQL = """
SELECT c.relname, pg_table_size(c.oid), pg_total_relation_size(c.oid), c.relfilenode
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
 WHERE i.inhparent = 'public.meeting_page'::regclass
 ORDER BY c.relname
"""


class RepackError(RuntimeError):
    """The repack cannot start (no pg_repack, no extension, not superuser, disk not measurable)."""


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A partition of meeting_page: sizes in bytes, the heap bloat estimate, and its file (changes on repack)."""

    name: str
    heap_bytes: int
    total_bytes: int
    bloat_bytes: int
    relfilenode: int

    @property
    def bloat_ratio(self) -> float:
        return self.bloat_bytes / self.heap_bytes if self.heap_bytes else 0.0


@dataclasses.dataclass(frozen=True)
class DiskSpace:
    """The filesystem holding the primary's data directory, as the server sees it."""

    path: str
    total_bytes: int
    free_bytes: int


@dataclasses.dataclass(frozen=True)
class Headroom:
    """Whether repacking a partition of ``needed_bytes`` leaves at least the reserve free."""

    ok: bool
    needed_bytes: int
    free_bytes: int
    reserve_bytes: int

    def describe(self) -> str:
        mb = 1024 * 1024
        return (
            f"needs {self.needed_bytes / mb:,.1f} MB, {self.free_bytes / mb:,.1f} MB free, "
            f"{self.reserve_bytes / mb:,.1f} MB must stay free"
        )


def headroom(space: DiskSpace, partition_bytes: int, *, space_factor: float, reserve_percent: float) -> Headroom:
    """The rule: ``free - space_factor * partition size >= reserve_percent`` of the disk."""
    needed = int(partition_bytes * space_factor)
    reserve = int(space.total_bytes * reserve_percent / 100.0)
    return Headroom(space.free_bytes - needed >= reserve, needed, space.free_bytes, reserve)


def disk_space(conn: psycopg.Connection[Any]) -> DiskSpace:
    """Free and total bytes of the data directory's filesystem, measured on the database server."""
    row = conn.execute("SELECT current_setting('data_directory'), usesuper FROM pg_user WHERE usename = current_user").fetchone()
    if row is None or not row[1]:
        raise RepackError("measuring the server's disk needs a superuser connection (so does pg_repack)")
    data_dir = str(row[0])
    with conn.transaction():
        conn.execute("CREATE TEMP TABLE civic_repack_df (line text) ON COMMIT DROP")
        # The path comes from the server's own setting; quoted for the shell and passed as an SQL literal.
        command = f"df -P -B1 {shlex.quote(data_dir)}"
        conn.execute(sql.SQL("COPY civic_repack_df FROM PROGRAM {}").format(sql.Literal(command)))
        lines = [r[0] for r in conn.execute("SELECT line FROM civic_repack_df").fetchall()]
    # POSIX df -P: a header, then "filesystem 1-blocks used available capacity mountpoint".
    fields = lines[-1].split() if len(lines) >= 2 else []
    if len(fields) < 6 or not fields[1].isdigit() or not fields[3].isdigit():
        raise RepackError(f"unexpected df output on the server: {lines!r}")
    return DiskSpace(data_dir, int(fields[1]), int(fields[3]))


def partitions(conn: psycopg.Connection[Any], *, analyze: bool = True) -> list[Candidate]:
    """Every partition of meeting_page with its sizes and bloat estimate (ANALYZEd first, for pg_stats)."""
    rows = conn.execute(PARTITIONS_SQL).fetchall()
    if analyze:
        for name, *_ in rows:
            conn.execute(sql.SQL("ANALYZE public.{}").format(sql.Identifier(name)))
    bloat = {str(name): int(b) for name, b, _dead in conn.execute(BLOAT_SQL).fetchall()}
    return [
        Candidate(str(name), int(heap), int(total), bloat.get(str(name), 0), int(node))
        for name, heap, total, node in rows
    ]


def choose(
    found: Sequence[Candidate], *, names: Sequence[str] | None, min_bloat_ratio: float, min_bloat_bytes: int
) -> list[Candidate]:
    """The partitions to repack, largest bloat first; named ones must exist."""
    if names:
        by_name = {c.name: c for c in found}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise RepackError(f"not partitions of {PARENT}: {', '.join(unknown)}")
        chosen = [by_name[n] for n in dict.fromkeys(names)]
    else:
        chosen = [c for c in found if c.bloat_ratio >= min_bloat_ratio and c.bloat_bytes >= min_bloat_bytes]
    return sorted(chosen, key=lambda c: c.bloat_bytes, reverse=True)


def pg_repack_binary() -> str:
    """The pg_repack client: Debian puts it beside the server's binaries, not on PATH."""
    found = shutil.which("pg_repack") or (str(PG_BIN / "pg_repack") if (PG_BIN / "pg_repack").exists() else None)
    if found is None:
        raise RepackError("pg_repack not installed: apt-get install postgresql-15-repack (make setup installs it)")
    return found


def ensure_extension(conn: psycopg.Connection[Any]) -> str:
    """Create the pg_repack extension when missing; its version (the client's must match)."""
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_repack")
    except psycopg.Error as exc:
        raise RepackError(
            f"cannot create the pg_repack extension ({exc.diag.message_primary}): install postgresql-15-repack "
            "on every database node"
        ) from None
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'pg_repack'").fetchone()
    return str(row[0]) if row else "?"


def repack_command(binary: str, dsn: str, table: str, *, wait_timeout_s: int) -> tuple[list[str], dict[str, str]]:
    """pg_repack's argv (connection parts from the DSN) and the environment carrying the password."""
    params = conninfo_to_dict(dsn)
    argv = [binary, "--no-kill-backend", f"--wait-timeout={wait_timeout_s}", f"--table=public.{table}"]
    for key, flag in (("host", "--host"), ("port", "--port"), ("user", "--username"), ("dbname", "--dbname")):
        if params.get(key):
            argv.append(f"{flag}={params[key]}")
    env = {**os.environ}
    if params.get("password"):
        env["PGPASSWORD"] = str(params["password"])  # never on the command line, where ps would show it
    return argv, env


@dataclasses.dataclass
class Outcome:
    """What happened to one partition."""

    partition: str
    status: str  # repacked | failed | refused
    total_bytes_before: int
    total_bytes_after: int | None = None
    bloat_bytes_before: int = 0
    seconds: float = 0.0
    headroom: str = ""
    message: str = ""


def run(
    dsn: str,
    *,
    names: Sequence[str] | None = None,
    min_bloat_ratio: float = 0.2,
    min_bloat_mb: float = 8.0,
    space_factor: float = 2.0,
    reserve_percent: float = 10.0,
    wait_timeout_s: int = 60,
    dry_run: bool = False,
    out: TextIO,
) -> tuple[int, list[Outcome]]:
    """Repack the chosen partitions one at a time; (exit status, outcomes). See the module docstring."""
    binary = pg_repack_binary()
    outcomes: list[Outcome] = []
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        found = partitions(conn)
        chosen = choose(found, names=names, min_bloat_ratio=min_bloat_ratio, min_bloat_bytes=int(min_bloat_mb * 2**20))
        if not chosen:
            print("no partition of meeting_page is bloated past the thresholds: nothing to do", file=out)
            return 0, outcomes
        version = "(dry run)" if dry_run else ensure_extension(conn)
        print(f"pg_repack {version}: {len(chosen)} partition(s), one at a time", file=out)
        for cand in chosen:
            space = disk_space(conn)
            room = headroom(space, cand.total_bytes, space_factor=space_factor, reserve_percent=reserve_percent)
            outcome = Outcome(cand.name, "refused", cand.total_bytes, bloat_bytes_before=cand.bloat_bytes,
                              headroom=room.describe())
            if not room.ok:
                outcome.message = f"not enough disk headroom on {space.path}: {room.describe()}"
                outcomes.append(outcome)
                print(f"REFUSED {cand.name}: {outcome.message}", file=out)
                return EXIT_REFUSED, outcomes
            if dry_run:
                outcome.status = "would repack"
                outcomes.append(outcome)
                print(f"would repack {cand.name}: {cand.bloat_bytes / 2**20:,.1f} MB bloat "
                      f"({cand.bloat_ratio:.0%} of its heap); {room.describe()}", file=out)
                continue
            argv, env = repack_command(binary, dsn, cand.name, wait_timeout_s=wait_timeout_s)
            started = time.monotonic()
            proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
            outcome.seconds = round(time.monotonic() - started, 2)
            after = conn.execute(
                "SELECT pg_total_relation_size(%s::regclass)", [f"public.{cand.name}"]
            ).fetchone()
            outcome.total_bytes_after = int(after[0]) if after else None
            # pg_repack exits 0 even when it skipped the table (a lock it would not wait for): its stderr says so.
            skipped = "WARNING" in proc.stderr or "ERROR" in proc.stderr
            outcome.status = "repacked" if proc.returncode == 0 and not skipped else "failed"
            outcome.message = (proc.stderr.strip() or proc.stdout.strip())[-2000:]
            outcomes.append(outcome)
            print(
                f"{outcome.status} {cand.name} in {outcome.seconds:.1f} s: "
                f"{cand.total_bytes / 2**20:,.1f} MB -> {(outcome.total_bytes_after or 0) / 2**20:,.1f} MB",
                file=out,
            )
            if outcome.status == "failed":
                print(outcome.message, file=out)
    failed = any(o.status == "failed" for o in outcomes)
    return (EXIT_FAILED if failed else 0), outcomes


def write_report(path: Path, outcomes: Sequence[Outcome], status: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"status": status, "partitions": [dataclasses.asdict(o) for o in outcomes]}
    path.write_text(json.dumps(body, indent=2) + "\n")
