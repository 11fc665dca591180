"""Per-request state shared by every resolver: routing, loaders, cursor codec, and counters.

Built by the HTTP layer for each request; the schema never sees HTTP itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from routing import RequestRouting, Router, TokenCodec
from schema.cursors import CursorCodec
from schema.queryids import QueryIds


@dataclasses.dataclass
class Viewer:
    """Who is calling: anonymous readers have no token; writers hold a token with write rights."""

    authenticated: bool = False
    can_write: bool = False
    auth_problem: str | None = None
    #: Hex SHA-256 of a valid token (never the token): what per-client limits count against.
    token_digest: str | None = None


class ResultCache(Protocol):
    """What the schema needs of a cache (the gateway provides one; without it every read hits the database)."""

    async def get_or_compute(
        self,
        parts: list[Any],
        *,
        min_lsn: int | None,
        compute: Callable[[], Awaitable[tuple[Any, int | None]]],
    ) -> Any: ...


@dataclasses.dataclass
class Context:
    """What a resolver may use. ``statements`` counts SQL statements sent for this request."""

    router: Router | None
    routing: RequestRouting
    codec: CursorCodec
    viewer: Viewer = dataclasses.field(default_factory=Viewer)
    statements: int = 0
    consistency_token: str | None = None
    loaders: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Called with a label for every SQL statement sent (metrics, slow-request evidence).
    on_statement: Callable[[str], None] | None = None
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)
    cache: ResultCache | None = None
    #: OpenTelemetry tracer injected by the gateway (None: no spans).
    tracer: Any = None
    #: Per node name, the connection's span attributes (db.namespace, server.address, server.port).
    db_attributes: Any = None
    queryids: QueryIds | None = None
    #: Append sqlcommenter comments (traceparent, operation) to SQL.
    sql_comments: bool = False
    operation_name: str | None = None
    #: Called with the normalised query text of each new search (page one), for the popular-searches log.
    on_search: Callable[[str], None] | None = None
    #: Hook run after each committed write (the gateway bumps the cache generation there).
    after_write: Callable[[], Awaitable[None]] | None = None
    #: False once a resolver has read something whose response must not be shared with other clients
    #: (a deep or backward page, a write): the gateway's response cache then leaves the response alone.
    shareable: bool = True
    #: Signs the consistency tokens writes hand out (None: the routing package's default key).
    tokens: TokenCodec | None = None
    #: Query texts of the searches this request ran (page one), replayed to the search log on a cache hit.
    searches: list[str] = dataclasses.field(default_factory=list)

    def loader(self, name: str, factory: Callable[[], Any]) -> Any:
        """One DataLoader per name per request, created on first use."""
        if name not in self.loaders:
            self.loaders[name] = factory()
        return self.loaders[name]

