"""``python -m ops partitions ensure|list``: create partitions ahead, empty DEFAULT, show what exists.

The DDL itself lives in :mod:`migrations.partitions`, because ``python -m gateway migrate`` needs it too;
this module adds what only an operator runs.
"""

from __future__ import annotations

import datetime as dt
from typing import TextIO

from migrations.partitions import Conn, ensure_ahead, ensure_range, list_partitions


def drain_default(conn: Conn) -> list[str]:
    """Move every row of DEFAULT into partitions of its own period; returns the partitions created."""
    row = conn.execute(
        "SELECT min(meeting_date), max(meeting_date) FROM public.meeting_page_default"
    ).fetchone()
    if not row or row[0] is None:
        return []
    first, last = row
    assert isinstance(first, dt.date) and isinstance(last, dt.date)
    return ensure_range(conn, first, last)


def ensure(conn: Conn, *, ahead: int, out: TextIO) -> None:
    created = ensure_ahead(conn, ahead)
    created += drain_default(conn)
    print(f"created: {', '.join(created) or 'none'}", file=out)


def show(conn: Conn, *, exact: bool, out: TextIO) -> None:
    print(f"{'partition':<28} {'from':<10} {'to':<10} {'rows':>12} {'size':>10}", file=out)
    for p in list_partitions(conn, exact=exact):
        frm = p.start.isoformat() if p.start else "DEFAULT"
        to = p.end.isoformat() if p.end else ""
        print(f"{p.name:<28} {frm:<10} {to:<10} {p.rows:>12,} {p.bytes / 1048576:>8.1f}MB", file=out)
