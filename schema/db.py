"""Running the schema's SQL through the router: spans, queryids, SQL comments, and error translation.

Every statement gets an OpenTelemetry CLIENT span with the current database semantic conventions
(``db.system.name``, ``db.query.text`` with the parameterised SQL, never the values, ``db.namespace``,
``server.address``/``server.port`` of the node's PgBouncer, ``db.response.returned_rows``) and the project's
extras under ``civic.db.*``: the node and role that served it, the replica lag, whether it waited for a
consistency token, the retry, the statement's label and its pg_stat_statements queryid. With ``sql_comments`` on, a sqlcommenter-style comment carrying the
``traceparent`` and the operation name is appended, so PostgreSQL's slow-query and auto_explain logs point
back to the trace.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from routing import OverloadedError, RequestRouting, RouteInfo, Router, RoutingError
from schema.context import Context
from schema.errors import BadUserInput, Overloaded, Timeout, Unavailable

Query = sql.Composed | sql.SQL
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_]")


def require_router(ctx: Context) -> Router:
    """The router, or UNAVAILABLE while the gateway is still starting (or stopping)."""
    if ctx.router is None:
        raise Unavailable("the gateway is not connected to the database yet; retry shortly")
    return ctx.router


def statement_text(query: Query) -> str:
    """The SQL as sent, with its %(name)s placeholders: safe to show, it never holds a value."""
    return query.as_string(None)


def sql_comment(ctx: Context, span: trace.Span) -> str:
    """A sqlcommenter comment (keys sorted, values quoted) built only from [A-Za-z0-9_-] characters."""
    parts = {}
    if ctx.operation_name:
        parts["action"] = _SAFE_NAME.sub("", ctx.operation_name)[:64]
    span_ctx = span.get_span_context()
    if span_ctx.is_valid:
        parts["traceparent"] = f"00-{span_ctx.trace_id:032x}-{span_ctx.span_id:016x}-01"
    parts["application"] = "civic_gateway"
    body = ",".join(f"{k}='{v}'" for k, v in sorted(parts.items()) if v)
    return f" /*{body}*/"


NodeAttributes = Mapping[str, Mapping[str, str | int]]


def connection_attributes(dsns: Mapping[str, str]) -> dict[str, dict[str, str | int]]:
    """Per node name: ``db.namespace``, ``server.address`` and ``server.port`` from its DSN (computed once)."""
    out: dict[str, dict[str, str | int]] = {}
    for name, dsn in dsns.items():
        params = conninfo_to_dict(dsn)
        attrs: dict[str, str | int] = {}
        if params.get("dbname"):
            attrs["db.namespace"] = str(params["dbname"])
        if params.get("host"):
            attrs["server.address"] = str(params["host"])
        attrs["server.port"] = int(str(params.get("port") or 5432))
        out[name] = attrs
    return out


def annotate(
    span: trace.Span, decision: RouteInfo | None, queryid: int | None, nodes: NodeAttributes | None = None
) -> None:
    if decision is not None:
        if nodes and decision.node in nodes:
            span.set_attributes(nodes[decision.node])
        span.set_attribute("civic.db.node", decision.node)
        span.set_attribute("civic.db.role", decision.role)
        if decision.lag_ms is not None:
            span.set_attribute("civic.db.replica_lag_ms", decision.lag_ms)
        span.set_attribute("civic.db.waited_for_token", decision.waited_ms > 0)
        span.set_attribute("civic.db.waited_ms", decision.waited_ms)
        span.set_attribute("civic.db.retry_count", 1 if decision.retried else 0)
    if queryid is not None:
        span.set_attribute("civic.db.queryid", str(queryid))


async def fetch_all(
    ctx: Context, label: str, query: Query, params: dict[str, Any] | Sequence[Any] | None = None
) -> list[tuple[Any, ...]]:
    """Run one read statement on a node the router chooses; returns every row."""
    rows, _ = await fetch_routed(ctx, label, query, params)
    return rows


async def fetch_routed(
    ctx: Context, label: str, query: Query, params: dict[str, Any] | Sequence[Any] | None = None
) -> tuple[list[tuple[Any, ...]], RouteInfo | None]:
    """Like fetch_all, and also where the statement was served (its data LSN guards cache entries)."""
    router = require_router(ctx)
    ctx.statements += 1
    if ctx.on_statement is not None:
        ctx.on_statement(label)
    text = statement_text(query)
    tracer = ctx.tracer or trace.get_tracer("civic.schema", tracer_provider=trace.NoOpTracerProvider())
    queryids = ctx.queryids

    with tracer.start_as_current_span(f"SQL {label}", kind=SpanKind.CLIENT) as span:
        recording = span.is_recording()
        if recording:
            span.set_attribute("db.system.name", "postgresql")
            span.set_attribute("db.query.text", text)
            span.set_attribute("civic.db.statement", label)
        to_send: Query = query + sql.SQL(sql_comment(ctx, span)) if ctx.sql_comments else query

        async def run(conn: psycopg.AsyncConnection[Any]) -> list[tuple[Any, ...]]:
            cur = await conn.execute(to_send, params)
            rows = await cur.fetchall()
            if queryids is not None and queryids.get(text) is None:
                await queryids.learn(conn, text, query, params, label)
            return rows

        # Loaders of one request run concurrently: give each call its own record, then merge it.
        call = RequestRouting(max_staleness_ms=ctx.routing.max_staleness_ms, min_lsn=ctx.routing.min_lsn)
        try:
            rows = await router.read(run, call)
        except Exception as exc:
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            _translate(exc)
            raise
        finally:
            ctx.routing.decisions.extend(call.decisions)
            if recording:
                annotate(
                    span,
                    call.decisions[-1] if call.decisions else None,
                    queryids.get(text) if queryids else None,
                    ctx.db_attributes,
                )
        if recording:
            span.set_attribute("db.response.returned_rows", len(rows))
        return rows, call.decisions[-1] if call.decisions else None


def _translate(exc: Exception) -> None:
    """Raise the client error for a database failure (or return, to re-raise it unchanged)."""
    if isinstance(exc, pg_errors.QueryCanceled):
        raise Timeout("the search took too long; narrow it with more words or filters") from None
    if isinstance(
        exc,
        pg_errors.InvalidTextRepresentation | pg_errors.CharacterNotInRepertoire | pg_errors.UntranslatableCharacter,
    ):
        raise BadUserInput("the request contains characters that cannot be searched") from None
    if isinstance(exc, OverloadedError):
        raise Overloaded("the databases are at capacity; retry in a second") from None
    if isinstance(exc, RoutingError):
        raise Unavailable(f"no database node can serve this read right now ({type(exc).__name__})") from None
