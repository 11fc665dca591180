"""The stack before and after a drill: roles, synchronous commit, and whether every acknowledged write survived."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import psycopg

from ops import stack
from ops.bench import loadgen
from ops.drills.options import DrillError


def check_topology(layout: stack.StackLayout, *, timeout: float = 30.0) -> tuple[str, list[str]]:
    """The primary and its streaming standbys; raises DrillError unless every node is up and streaming."""
    deadline = time.monotonic() + timeout
    problem = ""
    while True:
        statuses = {n: stack.node_status(layout, n) for n in layout.node_names}
        primaries = [n for n, s in statuses.items() if s.role == "primary"]
        down = [n for n, s in statuses.items() if s.role == "down"]
        if len(primaries) != 1 or down:
            problem = (
                f"expected one primary and every node up, found primary {primaries or 'none'}, down {down}"
            )
        else:
            primary = primaries[0]
            standbys = [n for n in layout.node_names if n != primary]
            lagging = [n for n in standbys if not stack.is_streaming(layout, n, primary=primary)]
            if not standbys:
                problem = "the stack has no replica"
            elif not lagging:
                return primary, standbys
            else:
                problem = f"{', '.join(lagging)} not streaming from {primary}"
        if time.monotonic() > deadline:
            hint = (
                f"'python -m ops stack status --dir {layout.dir}'; a node left stopped by an earlier drill "
                f"rejoins when 'python -m ops stack up --dir {layout.dir}' starts its Patroni again"
            )
            raise DrillError(f"the stack is not ready for a drill: {problem}; see {hint}")
        time.sleep(0.5)


def checkpoint(layout: stack.StackLayout, names: Sequence[str]) -> None:
    """CHECKPOINT the primary, then the standbys (a restartpoint there), before the fault.

    A crashed node replays all WAL written since its last checkpoint (restartpoint) when it starts again; after
    a corpus load that can be a gigabyte and a minute. The drill measures failover, not the age of the last
    checkpoint, so it starts from a fresh one (production nodes checkpoint every few minutes anyway).
    """
    for name in names:
        with psycopg.connect(layout.direct_dsn(name, dbname="postgres"), autocommit=True) as conn:
            conn.execute("CHECKPOINT")


def show_setting(layout: stack.StackLayout, name: str, setting: str) -> str:
    with psycopg.connect(layout.direct_dsn(name, dbname="postgres"), autocommit=True) as conn:
        row = conn.execute("SELECT current_setting(%s)", [setting]).fetchone()
    return str(row[0]) if row else ""


def wait_sync(layout: stack.StackLayout, primary: str, *, timeout: float = 15.0) -> bool:
    """Wait until at least one standby of ``primary`` is a synchronous (quorum) standby."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with psycopg.connect(layout.direct_dsn(primary, dbname="postgres"), autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')"
            ).fetchone()
        if row and row[0]:
            return True
        time.sleep(0.1)
    return False


def heal(layout: stack.StackLayout, *, timeout: float = 120.0) -> float | None:
    """Start every stopped Patroni and wait until each node streams from the primary; returns the seconds taken
    (None when it did not happen within ``timeout``: the drill's report then says so, nothing raises)."""
    t0 = time.monotonic()
    for name in layout.node_names:
        if not stack.patroni_running(layout, name):
            stack.start_patroni(layout, name)
    try:
        primary = stack.wait_primary(layout, timeout=timeout)
    except stack.StackError:
        return None
    rest = max(1.0, timeout - (time.monotonic() - t0))
    for name in layout.node_names:
        if name != primary and not stack.wait_streaming(layout, name, primary=primary, timeout=rest):
            return None
    return round(time.monotonic() - t0, 3)


def verify_acked(layout: stack.StackLayout, acked: Sequence[loadgen.AckedWrite]) -> dict[str, Any]:
    """Look for every acknowledged page on the current primary; the missing or changed ones are lost."""
    primary = stack.current_primary(layout)
    if primary is None:
        return {
            "checked_on": None,
            "acked": len(acked),
            "lost": None,
            "lost_examples": [],
            "error": "no primary",
        }
    found: dict[str, str] = {}
    with psycopg.connect(layout.direct_dsn(primary), autocommit=True) as conn:
        ids = [a.source_id for a in acked]
        for i in range(0, len(ids), 1000):
            rows = conn.execute(
                "SELECT id, text FROM public.meeting_page WHERE meeting_date = %s AND id = ANY(%s)",
                [loadgen.WRITE_DATE, ids[i : i + 1000]],
            ).fetchall()
            found.update({str(r[0]): str(r[1]) for r in rows})
    lost = [a for a in acked if found.get(a.source_id) != a.text]
    return {
        "checked_on": primary,
        "acked": len(acked),
        "lost": len(lost),
        "lost_examples": [dataclasses.asdict(a) for a in lost[:10]],
    }


def unknown_outcomes_applied(layout: stack.StackLayout, samples: Sequence[loadgen.Sample]) -> dict[str, int]:
    """Writes answered 'may or may not have been applied': how many were in fact applied (for information)."""
    keys = [s.key for s in samples if s.unknown_outcome and s.key]
    primary = stack.current_primary(layout)
    if not keys or primary is None:
        return {"writes": len(keys), "applied": 0}
    with psycopg.connect(layout.direct_dsn(primary), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM public.meeting_page WHERE meeting_date = %s AND id = ANY(%s)",
            [loadgen.WRITE_DATE, keys],
        ).fetchone()
    return {"writes": len(keys), "applied": int(row[0]) if row else 0}
