"""Running the schema's SQL through the router, with errors translated into client errors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from routing import Router, RoutingError
from schema.context import Context
from schema.errors import BadUserInput, Timeout, Unavailable

Query = sql.Composed | sql.SQL


def require_router(ctx: Context) -> Router:
    """The router, or UNAVAILABLE while the gateway is still starting (or stopping)."""
    if ctx.router is None:
        raise Unavailable("the gateway is not connected to the database yet; retry shortly")
    return ctx.router


async def fetch_all(
    ctx: Context, label: str, query: Query, params: dict[str, Any] | Sequence[Any] | None = None
) -> list[tuple[Any, ...]]:
    """Run one read statement on a node the router chooses; returns every row."""

    async def run(conn: psycopg.AsyncConnection[Any]) -> list[tuple[Any, ...]]:
        cur = await conn.execute(query, params)
        return await cur.fetchall()

    router = require_router(ctx)
    ctx.statements += 1
    if ctx.on_statement is not None:
        ctx.on_statement(label)
    try:
        return await router.read(run, ctx.routing)
    except pg_errors.QueryCanceled:
        raise Timeout("the search took too long; narrow it with more words or filters") from None
    except (
        pg_errors.InvalidTextRepresentation,
        pg_errors.CharacterNotInRepertoire,
        pg_errors.UntranslatableCharacter,
    ):
        raise BadUserInput("the request contains characters that cannot be searched") from None
    except RoutingError as exc:
        raise Unavailable(f"no database node can serve this read right now ({type(exc).__name__})") from None
