"""The map from the gateway's own statement templates to their pg_stat_statements ``queryid``.

A span for a statement and a metric row from pg_stat_statements share the queryid, which is what lets an
operator go from a slow trace to that statement's history. The id is learned once per template and process,
from ``EXPLAIN (VERBOSE)`` of the statement as the gateway sends it (``compute_query_id`` is on, and the id
does not depend on parameter values or on trailing comments). Physical replicas share the primary's OIDs, so
the id is the same on every node.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg import sql


class QueryIds:
    """Learned ids, by statement text; and a label for each id, for /metrics."""

    def __init__(self) -> None:
        self._by_text: dict[str, int] = {}
        self._labels: dict[int, str] = {}

    def get(self, text: str) -> int | None:
        return self._by_text.get(text)

    def labels(self) -> dict[int, str]:
        """queryid -> the gateway's name for the statement (e.g. ``search``, ``headlines``)."""
        return dict(self._labels)

    async def learn(
        self, conn: psycopg.AsyncConnection[Any], text: str, query: sql.Composable, params: Any, label: str
    ) -> int | None:
        """EXPLAIN the statement in the caller's transaction and remember its queryid."""
        if text in self._by_text:
            return self._by_text[text]
        if text.lstrip().upper().startswith("EXPLAIN"):
            return None
        try:
            # A savepoint: whatever happens here must not abort the caller's transaction.
            async with conn.transaction():
                cur = await conn.execute(sql.SQL("EXPLAIN (VERBOSE, FORMAT JSON) ") + query, params)
                row = await cur.fetchone()
        except psycopg.Error:
            return None
        if row is None:
            return None
        plan = json.loads(row[0]) if isinstance(row[0], str) else row[0]
        queryid = plan[0].get("Query Identifier")
        if not isinstance(queryid, int):
            return None
        self._by_text[text] = queryid
        self._labels[queryid] = label
        return queryid
