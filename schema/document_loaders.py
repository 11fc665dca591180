"""DataLoaders for a document's own pages: one SQL statement per batch, whatever the number of documents.

The search page asks every document of a result page for its matching pages; the document view asks one
document for its page list, one page and that page's marked text. Each of those is one batch, so a result page
with ten documents costs one statement for their matching pages, not ten. Rows go through the result cache
(``loaders.cached_rows``), under the same generation and WAL guard as the search they belong to.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Sequence
from typing import Any

from strawberry.dataloader import DataLoader

from schema import document_sql, loaders
from schema.context import Context
from schema.errors import BadUserInput
from schema.loaders import PageKey, render_headline
from schema.search_sql import PAGE_WIDTH, PageRow

#: A document as its pages are looked up: its id and its date (the partition key of its pages).
DocumentKey = tuple[int, dt.date]

#: The longest query text accepted here, as for ``search``.
MAX_QUERY_LENGTH = 500

#: The most matching pages one document lists with their excerpts.
MAX_MATCHING_PAGES = document_sql.MAX_MATCHING_PAGES


@dataclasses.dataclass(frozen=True)
class Matches:
    """The pages of one document that match a query: how many, and the first few with their excerpts."""

    count: int
    pages: list[tuple[PageRow, str]]


def check_query(query: str) -> str:
    """The query text as the search normalises it; refuse what the search refuses for its size or bytes."""
    text = " ".join(query.split())
    if not text:
        raise BadUserInput("query is empty: type one or more words")
    if len(query) > MAX_QUERY_LENGTH:
        raise BadUserInput(f"query is longer than {MAX_QUERY_LENGTH} characters")
    if "\x00" in query:
        raise BadUserInput("query contains a NUL byte")
    if not re.search(r"\w", text):
        raise BadUserInput('query has no words to search for; use words, "quoted phrases", or and -excluded words')
    return text


def _page_row(values: Sequence[Any]) -> PageRow:
    row = list(values[:PAGE_WIDTH])
    row[1] = dt.date.fromisoformat(str(row[1]))
    return PageRow(*row)


def _doc_params(keys: Sequence[DocumentKey]) -> dict[str, Any]:
    return {"docs": [k[0] for k in keys], "days": [k[1] for k in keys]}


def _doc_cache_key(keys: Sequence[DocumentKey]) -> list[str]:
    return sorted({f"{k[1].isoformat()}/{k[0]}" for k in keys})


def _matching_pages(ctx: Context, query: str, first: int) -> DataLoader[DocumentKey, Matches]:
    async def load(keys: Sequence[DocumentKey]) -> list[Matches]:
        rows = await loaders.cached_rows(
            ctx,
            "document_matches",
            document_sql.matching_pages(),
            {**_doc_params(keys), "q": query, "first": first},
            [query, first, *_doc_cache_key(keys)],
        )
        found: dict[int, Matches] = {}
        for r in rows:
            matches = found.setdefault(int(r[0]), Matches(count=int(r[1]), pages=[]))
            matches.pages.append((_page_row(r[2:]), render_headline(str(r[2 + PAGE_WIDTH] or ""))))
        return [found.get(k[0], Matches(count=0, pages=[])) for k in keys]

    return DataLoader(load_fn=loaders.traced(ctx, "document matches", load))


def _page_numbers(ctx: Context, query: str | None) -> DataLoader[DocumentKey, list[int]]:
    async def load(keys: Sequence[DocumentKey]) -> list[list[int]]:
        params = _doc_params(keys)
        if query is not None:
            params["q"] = query
        rows = await loaders.cached_rows(
            ctx,
            "document_page_numbers",
            document_sql.page_numbers(matching=query is not None),
            params,
            [query, *_doc_cache_key(keys)],
        )
        found = {int(r[0]): [int(n) for n in r[1]] for r in rows}
        return [found.get(k[0], []) for k in keys]

    return DataLoader(load_fn=loaders.traced(ctx, "document page numbers", load))


def _pages_by_number(ctx: Context) -> DataLoader[tuple[int, dt.date, int], PageRow | None]:
    async def load(keys: Sequence[tuple[int, dt.date, int]]) -> list[PageRow | None]:
        rows = await loaders.cached_rows(
            ctx,
            "pages_by_number",
            document_sql.pages_by_number(),
            {"docs": [k[0] for k in keys], "days": [k[1] for k in keys], "numbers": [k[2] for k in keys]},
            sorted({f"{k[1].isoformat()}/{k[0]}/{k[2]}" for k in keys}),
        )
        found: dict[tuple[int, int], PageRow] = {}
        for r in rows:
            page = _page_row(r)
            found.setdefault((page.document_id, page.page_number), page)  # the first by id if numbers repeat
        return [found.get((k[0], k[2])) for k in keys]

    return DataLoader(load_fn=loaders.traced(ctx, "pages by number", load))


def _highlighted(ctx: Context, query: str) -> DataLoader[PageKey, str]:
    async def load(keys: Sequence[PageKey]) -> list[str]:
        rows = await loaders.cached_rows(
            ctx,
            "highlighted_text",
            document_sql.highlighted_text(),
            {"q": query, "ids": [k[1] for k in keys], "dates": [k[0] for k in keys]},
            [query, *sorted({f"{k[0].isoformat()}/{k[1]}" for k in keys})],
        )
        found = {(dt.date.fromisoformat(r[1]), r[0]): render_headline(str(r[2])) for r in rows}
        return [found.get(k, "") for k in keys]

    return DataLoader(load_fn=loaders.traced(ctx, "highlighted text", load))


def matching_pages(ctx: Context, query: str, first: int) -> DataLoader[DocumentKey, Matches]:
    """One loader per (query, first): the documents of one result page share it, so they share one batch."""
    loader: DataLoader[DocumentKey, Matches] = ctx.loader(
        f"document-matches:{first}:{query}", lambda: _matching_pages(ctx, query, first)
    )
    return loader


def page_numbers(ctx: Context, query: str | None = None) -> DataLoader[DocumentKey, list[int]]:
    """Page numbers of documents: all of them, or (with ``query``) those of the pages that match it."""
    loader: DataLoader[DocumentKey, list[int]] = ctx.loader(
        f"document-page-numbers:{query is not None}:{query or ''}", lambda: _page_numbers(ctx, query)
    )
    return loader


def pages_by_number(ctx: Context) -> DataLoader[tuple[int, dt.date, int], PageRow | None]:
    loader: DataLoader[tuple[int, dt.date, int], PageRow | None] = ctx.loader(
        "pages-by-number", lambda: _pages_by_number(ctx)
    )
    return loader


def highlighted_text(ctx: Context, query: str) -> DataLoader[PageKey, str]:
    """One loader per query text: pages' whole text, escaped, with every match in ``<mark>``."""
    loader: DataLoader[PageKey, str] = ctx.loader(f"highlighted:{query}", lambda: _highlighted(ctx, query))
    return loader
