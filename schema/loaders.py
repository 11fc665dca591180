"""DataLoaders: every object lookup and every headline of one result page is one SQL statement.

A page of 20 search results that selects ``node { document { municipality { name } } }`` and ``headline``
costs four statements whatever its size: the search, one headline batch, one document batch and one
municipality batch.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from opentelemetry import trace
from psycopg import sql
from strawberry.dataloader import DataLoader

from schema import search_sql
from schema.context import Context
from schema.db import fetch_all, fetch_routed
from schema.search_sql import PageRow

PageKey = tuple[dt.date, str]


@dataclasses.dataclass(frozen=True)
class MunicipalityRow:
    id: int
    subdomain: str
    name: str
    state: str
    country: str
    kind: str | None


@dataclasses.dataclass(frozen=True)
class DocumentRow:
    id: int
    municipality_id: int
    meeting_name: str
    meeting_date: dt.date
    document_type: str


MUNICIPALITY_COLUMNS = sql.SQL("m.id, m.subdomain, m.name, m.state, m.country, m.kind")
DOCUMENT_COLUMNS = sql.SQL("d.id, d.municipality_id, d.meeting_name, d.meeting_date, d.document_type::text")


def render_headline(raw: str) -> str:
    """HTML-escape the whole excerpt, then turn the sentinels ts_headline inserted into <mark> tags."""
    escaped = html.escape(raw, quote=True)
    return (
        escaped.replace("\ue000", "<mark>")
        .replace("\ue001", "</mark>")
        .replace("\ue002", "&lt;")
        .replace("\ue003", "&gt;")
    )


async def cached_rows(
    ctx: Context, label: str, query: sql.Composed, params: dict[str, Any], key: list[Any]
) -> list[list[Any]]:
    """Rows of a batch lookup as JSON values, through the result cache when the gateway provides one.

    A cached search page is only fast if what it shows is too: its headlines, documents and towns are batch
    lookups keyed by the page's ids, so they are cached beside it, under the same generation and with the same
    WAL-position guard for readers that carry a consistency token.
    """

    async def compute() -> tuple[list[list[Any]], int | None]:
        rows, route = await fetch_routed(ctx, label, query, params)
        return [[v.isoformat() if isinstance(v, dt.date) else v for v in r] for r in rows], (
            route.lsn if route else None
        )

    if ctx.cache is None:
        rows, _ = await compute()
        return rows
    result: list[list[Any]] = await ctx.cache.get_or_compute(
        [label, *key], min_lsn=ctx.routing.min_lsn, compute=compute
    )
    return result


def _traced(ctx: Context, name: str, load: Callable[[Sequence[Any]], Awaitable[list[Any]]]) -> Any:
    """A batch function inside a "DataLoader batch" span (one per batch, never one per key)."""

    async def batch(keys: Sequence[Any]) -> list[Any]:
        tracer = ctx.tracer or trace.get_tracer("civic.schema", tracer_provider=trace.NoOpTracerProvider())
        with tracer.start_as_current_span(f"DataLoader batch {name}") as span:
            span.set_attribute("civic.dataloader.keys", len(keys))
            return await load(keys)

    return batch


#: For batch functions of other loader modules.
traced = _traced


def _municipalities(ctx: Context) -> DataLoader[int, MunicipalityRow | None]:
    async def load(keys: Sequence[int]) -> list[MunicipalityRow | None]:
        rows = await cached_rows(
            ctx,
            "municipalities_by_id",
            sql.SQL("SELECT {} FROM public.municipality m WHERE m.id = ANY (%(ids)s)").format(
                MUNICIPALITY_COLUMNS
            ),
            {"ids": list(keys)},
            sorted(set(keys)),
        )
        found = {int(r[0]): MunicipalityRow(*r) for r in rows}
        return [found.get(k) for k in keys]

    return DataLoader(load_fn=_traced(ctx, "municipalities", load))


def _documents(ctx: Context) -> DataLoader[int, DocumentRow | None]:
    async def load(keys: Sequence[int]) -> list[DocumentRow | None]:
        rows = await cached_rows(
            ctx,
            "documents_by_id",
            sql.SQL("SELECT {} FROM public.meeting_document d WHERE d.id = ANY (%(ids)s)").format(
                DOCUMENT_COLUMNS
            ),
            {"ids": list(keys)},
            sorted(set(keys)),
        )
        found = {int(r[0]): DocumentRow(r[0], r[1], r[2], dt.date.fromisoformat(r[3]), r[4]) for r in rows}
        return [found.get(k) for k in keys]

    return DataLoader(load_fn=_traced(ctx, "documents", load))


def _pages(ctx: Context) -> DataLoader[PageKey, PageRow | None]:
    async def load(keys: Sequence[PageKey]) -> list[PageRow | None]:
        rows = await fetch_all(
            ctx,
            "pages_by_key",
            search_sql.pages_by_key(),
            {"ids": [k[1] for k in keys], "dates": [k[0] for k in keys]},
        )
        found = {(r[1], r[0]): PageRow(*r) for r in rows}
        return [found.get(k) for k in keys]

    return DataLoader(load_fn=_traced(ctx, "pages", load))


def _headlines(ctx: Context, query: str) -> DataLoader[PageKey, str]:
    async def load(keys: Sequence[PageKey]) -> list[str]:
        rows = await cached_rows(
            ctx,
            "headlines",
            search_sql.headline_query(),
            {"q": query, "ids": [k[1] for k in keys], "dates": [k[0] for k in keys]},
            [query, *sorted({f"{k[0].isoformat()}/{k[1]}" for k in keys})],
        )
        found = {(dt.date.fromisoformat(r[1]), r[0]): render_headline(str(r[2])) for r in rows}
        return [found.get(k, "") for k in keys]

    return DataLoader(load_fn=_traced(ctx, "headlines", load))


def municipalities(ctx: Context) -> DataLoader[int, MunicipalityRow | None]:
    loader: DataLoader[int, MunicipalityRow | None] = ctx.loader("municipality", lambda: _municipalities(ctx))
    return loader


def documents(ctx: Context) -> DataLoader[int, DocumentRow | None]:
    loader: DataLoader[int, DocumentRow | None] = ctx.loader("document", lambda: _documents(ctx))
    return loader


def pages(ctx: Context) -> DataLoader[PageKey, PageRow | None]:
    loader: DataLoader[PageKey, PageRow | None] = ctx.loader("page", lambda: _pages(ctx))
    return loader


def headlines(ctx: Context, query: str) -> DataLoader[PageKey, str]:
    """One loader per query text, so that two aliased searches in one request each batch their own pages."""
    loader: DataLoader[PageKey, str] = ctx.loader(f"headline:{query}", lambda: _headlines(ctx, query))
    return loader


def prime_pages(ctx: Context, rows: Sequence[PageRow]) -> None:
    """Search results already hold the page rows; later node lookups need not fetch them again."""
    loader = pages(ctx)
    for row in rows:
        loader.prime((row.meeting_date, row.id), row)
