"""Per-request state shared by every resolver: routing, loaders, cursor codec, and counters.

Built by the HTTP layer for each request; the schema never sees HTTP itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from routing import RequestRouting, Router
from schema.cursors import CursorCodec


@dataclasses.dataclass
class Viewer:
    """Who is calling: anonymous readers have no token; writers hold a token with write rights."""

    authenticated: bool = False
    can_write: bool = False
    auth_problem: str | None = None


@dataclasses.dataclass
class Context:
    """What a resolver may use. ``statements`` counts SQL statements sent for this request."""

    router: Router | None
    routing: RequestRouting
    codec: CursorCodec
    viewer: Viewer = dataclasses.field(default_factory=Viewer)
    statements: int = 0
    consistency_token: str | None = None
    # Optional hook the HTTP layer installs around each read (cache, tracing); receives a label and the thunk.
    loaders: dict[str, Any] = dataclasses.field(default_factory=dict)
    on_statement: Callable[[str], None] | None = None
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)

    def loader(self, name: str, factory: Callable[[], Any]) -> Any:
        """One DataLoader per name per request, created on first use."""
        if name not in self.loaders:
            self.loaders[name] = factory()
        return self.loaders[name]


ReadThunk = Callable[[], Awaitable[Any]]
