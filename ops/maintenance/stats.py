"""``python -m ops stats refresh``: refresh the popular-searches view and prune the search log."""

from __future__ import annotations

import time
from typing import TextIO

from migrations.partitions import Conn

LOG_RETENTION = "90 days"


def refresh(conn: Conn, *, out: TextIO) -> None:
    started = time.monotonic()
    # CONCURRENTLY: readers of popularSearches are never blocked by the refresh.
    conn.execute("REFRESH MATERIALIZED VIEW CONCURRENTLY public.popular_search")
    pruned = conn.execute(
        "DELETE FROM public.search_log WHERE logged_at < now() - %s::interval", [LOG_RETENTION]
    ).rowcount
    row = conn.execute("SELECT count(*) FROM public.popular_search").fetchone()
    print(
        f"popular_search refreshed in {time.monotonic() - started:.2f} s: {row[0] if row else 0} queries; "
        f"{pruned} log rows older than {LOG_RETENTION} pruned",
        file=out,
    )
