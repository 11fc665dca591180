"""Automatic persisted queries (Apollo APQ), stored in PostgreSQL with a per-client quota and a global bound.

Why PostgreSQL and not the Redis result cache: in one Redis every key competes for the same memory, so a client
registering documents could push cached responses out (or, under a TTL-ordered eviction policy, would push them
out first: responses live 60 s, documents a day). In their own table, documents cost disk, are shared by every
worker and instance, survive a Redis restart, and cannot evict anything.

What bounds the table, whatever clients do:

* a document is at most ``apq_max_bytes`` (checked by the endpoint before it gets here);
* a client (its rate-limit key: token hash or address) may register at most ``per_client`` documents; the count
  is taken under a transaction-scoped advisory lock on the client, so concurrent registrations cannot overshoot;
* the table as a whole holds at most ``max_total_bytes``, kept in a one-row account updated in the same
  transaction as the insert;
* only documents that passed validation and the rate limit are registered, so junk costs nothing.

A refused registration is not an error for the client: the request still runs, the document simply is not kept,
and the client's next hash-only request gets ``PERSISTED_QUERY_NOT_FOUND`` and sends the text again (the APQ
protocol's normal path). Lookups read a replica; a document registered a moment ago that a lagging replica does
not have yet takes the same path. Each worker also keeps the prepared document in its LRU, so a hot document
costs no lookup at all.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import logging
from typing import Any, Literal

import psycopg

from routing import Router

log = logging.getLogger("gateway.persisted")
Outcome = Literal["stored", "known", "over_quota", "full", "unavailable", "busy"]
OUTCOMES: tuple[Outcome, ...] = ("stored", "known", "over_quota", "full", "unavailable", "busy")
# Registrations run off the request path; past this many at once in a worker, more are skipped ("busy").
MAX_PENDING = 8

_LOOKUP = "SELECT body FROM public.persisted_query WHERE sha256 = %s"
_CLIENT_STATE = """
SELECT pg_advisory_xact_lock(hashtextextended(%(client)s, 7301)),
       (SELECT count(*) FROM public.persisted_query WHERE client = %(client)s) AS held,
       EXISTS (SELECT 1 FROM public.persisted_query WHERE sha256 = %(sha)s) AS known
"""
_RESERVE = """
UPDATE public.persisted_query_usage
   SET bytes = bytes + %(bytes)s, entries = entries + 1
 WHERE bytes + %(bytes)s <= %(max_total)s
RETURNING bytes
"""
_INSERT = """
INSERT INTO public.persisted_query (sha256, body, bytes, client)
VALUES (%(sha)s, %(body)s, %(bytes)s, %(client)s)
ON CONFLICT (sha256) DO NOTHING
"""


@dataclasses.dataclass
class PersistedStats:
    """Registration outcomes and lookups, exported on /metrics."""

    registrations: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    lookups_found: int = 0
    lookups_missing: int = 0
    lookups_failed: int = 0


class PersistedQueries:
    """The APQ store; see the module docstring for what bounds it."""

    def __init__(self, *, per_client: int, max_total_bytes: int, client_salt: bytes) -> None:
        self.per_client = per_client
        self.max_total_bytes = max_total_bytes
        self._salt = client_salt
        self.stats = PersistedStats()
        self._pending: set[asyncio.Task[Outcome]] = set()

    def register_later(self, router: Router, sha256: str, body: str, client_key: str) -> None:
        """Register in the background: a request never waits for the primary to keep its document."""
        if len(self._pending) >= MAX_PENDING:
            self.stats.registrations["busy"] += 1
            return
        task = asyncio.create_task(self.register(router, sha256, body, client_key))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def drain(self) -> None:
        """Wait for the registrations under way (at shutdown, and in tests)."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    def client_id(self, client_key: str) -> str:
        """The stored form of a client: a keyed hash, so the table holds no addresses or token hashes."""
        return hmac.new(self._salt, client_key.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:32]

    async def lookup(self, router: Router, sha256: str) -> str | None:
        """The registered text of ``sha256``, or None (unknown, or the database could not be asked)."""

        async def read(conn: psycopg.AsyncConnection[Any]) -> str | None:
            cur = await conn.execute(_LOOKUP, (sha256,))
            row = await cur.fetchone()
            return str(row[0]) if row else None

        try:
            body = await router.read(read)
        except Exception as exc:  # no reader: the client resends the text, which always works
            self.stats.lookups_failed += 1
            log.info("persisted query lookup failed: %s", type(exc).__name__)
            return None
        if body is None:
            self.stats.lookups_missing += 1
        else:
            self.stats.lookups_found += 1
        return body

    async def register(self, router: Router, sha256: str, body: str, client_key: str) -> Outcome:
        """Keep ``body`` under ``sha256`` for ``client_key`` if its quota and the global bound allow."""
        size = len(body.encode("utf-8", "surrogatepass"))
        client = self.client_id(client_key)
        params: dict[str, object] = {
            "sha": sha256,
            "body": body,
            "bytes": size,
            "client": client,
            "max_total": self.max_total_bytes,
        }

        async def write(conn: psycopg.AsyncConnection[Any]) -> Outcome:
            cur = await conn.execute(_CLIENT_STATE, params)
            row = await cur.fetchone()
            assert row is not None  # a SELECT without FROM returns one row
            _, held, known = row
            if known:
                return "known"
            if held >= self.per_client:
                return "over_quota"
            cur = await conn.execute(_RESERVE, params)
            if await cur.fetchone() is None:
                return "full"
            await conn.execute(_INSERT, params)
            return "stored"

        try:
            outcome, _ = await router.write(write)
        except Exception as exc:  # no primary: the request runs anyway, the document is just not kept
            log.info("persisted query not registered: %s", type(exc).__name__)
            outcome = "unavailable"
        self.stats.registrations[outcome] += 1
        if outcome in ("over_quota", "full"):
            log.warning("persisted query refused (%s) for client %s", outcome, client[:12])
        return outcome
