"""The root Query type and the executable schema."""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable
from typing import Annotated, Any

import strawberry
from graphql import GraphQLError
from psycopg import sql
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionContext, Info

from schema import ids, loaders
from schema.context import Context
from schema.cursors import fingerprint
from schema.db import fetch_all
from schema.errors import BadUserInput, client_code
from schema.loaders import MUNICIPALITY_COLUMNS, MunicipalityRow
from schema.lookahead import selection
from schema.pagination import page_request, trim_page
from schema.search import SearchConnection, SearchFilter, build_spec, run_search
from schema.types import (
    MeetingDocument,
    MeetingPage,
    Municipality,
    MunicipalityConnection,
    MunicipalityEdge,
    Node,
    SearchOrder,
    page_info,
)

Ctx = Info[Context, None]
MAX_NODES = 100
log = logging.getLogger("gateway.errors")


async def resolve_node(ctx: Context, global_id: str) -> Node | None:
    """Any Node by its global id, through the per-request loaders (so `nodes` batches its lookups)."""
    type_name, key = ids.decode(global_id)
    if type_name == "Municipality":
        m = await loaders.municipalities(ctx).load(ids.int_key(key))
        return Municipality.from_row(m) if m else None
    if type_name == "MeetingDocument":
        d = await loaders.documents(ctx).load(ids.int_key(key))
        return MeetingDocument.from_row(d) if d else None
    day, source_id = ids.split_page_key(key)
    p = await loaders.pages(ctx).load((day, source_id))
    return MeetingPage.from_row(p) if p else None


@strawberry.type(description="A query people often run (from a sampled log of the last 30 days).")
class PopularSearch:
    query: str = strawberry.field(description="The normalised query text.")
    searches: int = strawberry.field(
        description="Sampled searches in the window (a share of the real number)."
    )
    last_searched: datetime.datetime = strawberry.field(description="When it was last seen in the sample.")


@strawberry.type(description="Entry points for reading the meeting records. Reads are public.")
class Query:
    @strawberry.field(description="Any object by its global id (Relay). Null when it does not exist.")
    async def node(self, info: Ctx, id: strawberry.ID) -> Node | None:
        return await resolve_node(info.context, str(id))

    @strawberry.field(
        description="Objects by global ids, in the same order; null for those that do not exist."
    )
    async def nodes(self, info: Ctx, ids: list[strawberry.ID]) -> list[Node | None]:
        if len(ids) > MAX_NODES:
            raise BadUserInput(f"at most {MAX_NODES} ids at once")
        return list(await asyncio.gather(*(resolve_node(info.context, str(i)) for i in ids)))

    @strawberry.field(
        description='Full-text search over every page. Query syntax: words, "quoted phrases", or, -excluded.'
    )
    async def search(
        self,
        info: Ctx,
        query: Annotated[str, strawberry.argument(description="Websearch syntax, at most 500 characters.")],
        filter: SearchFilter | None = None,
        order_by: SearchOrder | None = SearchOrder.NEWEST,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> SearchConnection:
        spec = build_spec(query, filter, order_by or SearchOrder.NEWEST)
        raw = info._raw_info  # the AST of this field: what to batch-load before the edges are returned
        return await run_search(
            info.context, spec, first=first, after=after, last=last, before=before,
            selected=selection(raw.field_nodes, raw.fragments),
        )

    @strawberry.field(description="Municipalities ordered by subdomain, optionally of one state.")
    async def municipalities(
        self,
        info: Ctx,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        state: Annotated[str | None, strawberry.argument(description="Two-letter state code.")] = None,
    ) -> MunicipalityConnection:
        ctx = info.context
        st = state.strip().upper() if state else None
        if st is not None and (len(st) != 2 or not st.isalpha()):
            raise BadUserInput("state is a two-letter code such as CA or NY")
        bound = fingerprint("municipalities", st)
        req = page_request(ctx.codec, bound, first=first, after=after, last=last, before=before)
        where: list[sql.Composable] = []
        params: dict[str, Any] = {}
        if st:
            where.append(sql.SQL("m.state = %(st)s"))
            params["st"] = st
        if req.cursor_key is not None:
            if len(req.cursor_key) != 1:
                raise BadUserInput("invalid cursor")
            params["k"] = str(req.cursor_key[0])
            where.append(sql.SQL("m.subdomain {} %(k)s").format(sql.SQL(">" if req.forward else "<")))
        direction = sql.SQL("ASC" if req.forward else "DESC")
        query = sql.SQL(
            "SELECT {cols} FROM public.municipality m WHERE {where} ORDER BY m.subdomain {dir} LIMIT {n}"
        ).format(
            cols=MUNICIPALITY_COLUMNS,
            where=sql.SQL(" AND ").join(where) if where else sql.SQL("true"),
            dir=direction,
            n=sql.Literal(req.size + 1),
        )
        rows = [MunicipalityRow(*r) for r in await fetch_all(ctx, "municipalities", query, params)]
        rows, has_more = trim_page(rows, req)
        edges = [
            MunicipalityEdge(cursor=ctx.codec.encode(bound, [r.subdomain]), node=Municipality.from_row(r))
            for r in rows
        ]
        return MunicipalityConnection(
            edges=edges,
            page_info=page_info(
                [e.cursor for e in edges], forward=req.forward, has_more=has_more, has_other=req.has_cursor
            ),
        )

    @strawberry.field(description="Queries people search for most (beyond the contract).")
    async def popular_searches(self, info: Ctx, first: int | None = 10) -> list[PopularSearch]:
        size = 10 if first is None else first
        if not 0 <= size <= 100:
            raise BadUserInput("first must be between 0 and 100")
        rows = await fetch_all(
            info.context,
            "popular_searches",
            sql.SQL(
                "SELECT query, searches, last_searched FROM public.popular_search "
                "ORDER BY searches DESC, query LIMIT %(n)s"
            ),
            {"n": size},
        )
        return [PopularSearch(query=r[0], searches=int(r[1]), last_searched=r[2]) for r in rows]

    @strawberry.field(description="One municipality by subdomain, e.g. `alameda.ca`; null when unknown.")
    async def municipality(self, info: Ctx, subdomain: str) -> Municipality | None:
        if "\x00" in subdomain or len(subdomain) > 200:
            raise BadUserInput("invalid subdomain")
        rows = await fetch_all(
            info.context,
            "municipality_by_subdomain",
            sql.SQL("SELECT {} FROM public.municipality m WHERE m.subdomain = %(s)s").format(
                MUNICIPALITY_COLUMNS
            ),
            {"s": subdomain.strip().lower()},
        )
        return Municipality.from_row(MunicipalityRow(*rows[0])) if rows else None


class GatewaySchema(strawberry.Schema):
    """Logs unexpected errors with their traceback; client errors (bad input, auth) are not server faults."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        unexpected = [e for e in errors if client_code(e) is None]
        for error in unexpected:
            log.error("unexpected error in %s", error.path, exc_info=error.original_error)


def build_schema(
    *,
    mutation: type | None = None,
    extensions: list[Callable[[], SchemaExtension] | type[SchemaExtension]] | None = None,
) -> strawberry.Schema:
    """The executable schema. Its operation limits are validation rules (schema.limits) that the gateway
    applies when it prepares a document, once per distinct document."""
    schema = GatewaySchema(
        query=Query,
        mutation=mutation,
        types=[Municipality, MeetingDocument, MeetingPage],
        extensions=list(extensions or []),
    )
    _plain_attribute_resolvers(schema)
    return schema


def _attribute(name: str) -> Callable[..., Any]:
    def resolve(source: Any, info: Any, **_: Any) -> Any:
        return getattr(source, name)

    return resolve


def _plain_attribute_resolvers(schema: strawberry.Schema) -> None:
    """Fields that only read an attribute resolve with one plain function call.

    Strawberry wraps even those in two layers of its own (for field extensions this schema does not use); a
    20-result search page resolves over a hundred of them, so the wrappers were a visible share of a request.
    """
    for concrete in schema.schema_converter.type_map.values():
        definition = concrete.definition
        implementation = concrete.implementation
        fields = getattr(definition, "fields", None)
        graphql_fields = getattr(implementation, "fields", None)
        if not fields or not isinstance(graphql_fields, dict):
            continue
        for field in fields:
            name = schema.config.name_converter.get_graphql_name(field)
            if field.is_basic_field and name in graphql_fields:
                graphql_fields[name].resolve = _attribute(field.python_name)
