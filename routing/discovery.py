"""Role discovery: which node is the primary is asked of the nodes, never configured."""

from __future__ import annotations

from collections.abc import Mapping

import psycopg

from routing.errors import NoPrimaryError

__all__ = ["NoPrimaryError", "find_primary_dsn"]


def find_primary_dsn(dsns: Mapping[str, str], *, timeout_s: float = 3.0) -> str:
    """Return the DSN of the one node that is not in recovery (synchronous; for CLI tools)."""
    problems = []
    for name, dsn in dsns.items():
        try:
            with psycopg.connect(
                dsn, autocommit=True, prepare_threshold=None, connect_timeout=max(1, int(timeout_s))
            ) as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        except psycopg.Error as exc:
            problems.append(
                f"{name}: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
            )
            continue
        if row is not None and row[0] is False:
            return dsn
        problems.append(f"{name}: replica")
    raise NoPrimaryError("no primary among the configured nodes (" + "; ".join(problems) + ")")
