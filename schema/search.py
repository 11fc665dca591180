"""``Query.search``: input validation, the keyset page, headlines and the capped count."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import strawberry
from strawberry.types import Info

from schema import loaders, search_sql
from schema.context import Context
from schema.cursors import fingerprint
from schema.db import fetch_all, fetch_routed
from schema.errors import BadUserInput
from schema.pagination import page_request, trim_page
from schema.search_sql import PageRow, SearchSpec
from schema.types import DocumentType, MeetingPage, PageInfo, SearchOrder, page_info

Ctx = Info[Context, None]
MAX_QUERY_LENGTH = 500
MAX_FILTER_VALUES = 100
#: Only the first pages of a search are cached: deeper pages are rare and would only evict hot ones.
CACHED_PAGES = 3
_STATE_RE = re.compile(r"^[A-Za-z]{2}$")


@strawberry.input(description="Narrows a search. Every filter reads columns stored on the page itself.")
class SearchFilter:
    municipalities: list[str] | None = strawberry.field(
        default=None,
        description="Subdomains; pages of any of them. Unknown ones match nothing; [] is no filter.",
    )
    states: list[str] | None = strawberry.field(
        default=None, description="Two-letter codes; pages of any of them."
    )
    date_from: dt.date | None = strawberry.field(
        default=None, description="Inclusive lower bound of the date."
    )
    date_to: dt.date | None = strawberry.field(default=None, description="Inclusive upper bound of the date.")
    document_type: DocumentType | None = strawberry.field(
        default=None, description="Agendas or minutes only."
    )
    meeting_name: str | None = strawberry.field(
        default=None, description="Websearch syntax matched against the meeting's name, e.g. `council`."
    )


@strawberry.type(description="The number of results, exact up to 10,000.")
class ResultCount:
    value: int = strawberry.field(description="The count, or a lower bound or estimate when not exact.")
    exact: bool = strawberry.field(description="False when value is a lower bound or an estimate.")


@strawberry.type(description="One search result.")
class SearchEdge:
    key: strawberry.Private[tuple[dt.date, str]]
    query: strawberry.Private[str]
    cursor: str = strawberry.field(description="Opaque cursor of this result, bound to its search.")
    node: MeetingPage = strawberry.field(description="The matching page.")
    rank: float | None = strawberry.field(description="Full-text rank; set when orderBy is RELEVANCE.")

    @strawberry.field(
        description="HTML-escaped excerpt around the matches; matched words are wrapped in <mark>…</mark>. "
        "Computed only when selected, in one batch per page of results."
    )
    async def headline(self, info: Ctx) -> str:
        result: str = await loaders.headlines(info.context, self.query).load(self.key)
        return result


@strawberry.type(description="A page of search results (Relay connection).")
class SearchConnection:
    spec: strawberry.Private[SearchSpec]
    edges: list[SearchEdge] = strawberry.field(description="The results of this page.")
    page_info: PageInfo = strawberry.field(description="Paging information, exact in both directions.")

    @strawberry.field(description="Number of matches: exact up to 10,000, an estimate (exact: false) above.")
    async def total_count(self, info: Ctx) -> ResultCount:
        ctx = info.context
        query, params = search_sql.count_query(self.spec)
        rows = await fetch_all(ctx, "search_count", query, params)
        value = int(rows[0][0])
        if value <= search_sql.COUNT_CAP:
            return ResultCount(value=value, exact=True)
        query, params = search_sql.estimate_query(self.spec)
        plan = await fetch_all(ctx, "search_estimate", query, params)
        estimate = _plan_rows(plan[0][0])
        return ResultCount(value=max(search_sql.COUNT_CAP, estimate), exact=False)


def _plan_rows(plan: Any) -> int:
    doc = json.loads(plan) if isinstance(plan, str) else plan
    return int(doc[0]["Plan"]["Plan Rows"])


def _check_text(value: str, what: str, *, limit: int) -> str:
    text = " ".join(value.split())
    if not text:
        raise BadUserInput(f"{what} is empty: type one or more words")
    if len(value) > limit:
        raise BadUserInput(f"{what} is longer than {limit} characters")
    if "\x00" in value:
        raise BadUserInput(f"{what} contains a NUL byte")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadUserInput(f"{what} is not valid Unicode text") from None
    words = re.findall(r"\w+", text)
    if not words or all(w.lower() == "or" for w in words):
        raise BadUserInput(
            f'{what} has no words to search for; use words, "quoted phrases", or and -excluded words'
        )
    return text


def _check_values(values: list[str] | None, what: str) -> list[str] | None:
    if values is None or not values:
        return None
    if len(values) > MAX_FILTER_VALUES:
        raise BadUserInput(f"at most {MAX_FILTER_VALUES} {what} per search")
    for value in values:
        if "\x00" in value or len(value) > 200:
            raise BadUserInput(f"invalid value in {what}")
    return values


def build_spec(query: str, search_filter: SearchFilter | None, order: SearchOrder) -> SearchSpec:
    """Validate and normalise a search; the result is what cursors are bound to and the cache keyed on."""
    text = _check_text(query, "query", limit=MAX_QUERY_LENGTH)
    f = search_filter or SearchFilter()
    towns = _check_values(f.municipalities, "municipalities")
    states = _check_values(f.states, "states")
    if states is not None:
        bad = [s for s in states if not _STATE_RE.match(s.strip())]
        if bad:
            raise BadUserInput("states are two-letter codes such as CA or NY")
    if f.date_from and f.date_to and f.date_from > f.date_to:
        raise BadUserInput("dateFrom is after dateTo")
    meeting_name = (
        _check_text(f.meeting_name, "meetingName", limit=200) if f.meeting_name is not None else None
    )
    return SearchSpec(
        query=text,
        order=str(order.value),  # type: ignore[arg-type]  # one of the Order literals
        municipalities=tuple(sorted({t.strip().lower() for t in towns})) if towns else None,
        states=tuple(sorted({s.strip().upper() for s in states})) if states else None,
        date_from=f.date_from,
        date_to=f.date_to,
        document_type=str(f.document_type.value) if f.document_type else None,
        meeting_name=meeting_name,
    )


async def run_search(
    ctx: Context,
    spec: SearchSpec,
    *,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
) -> SearchConnection:
    """One page of results for a validated search."""
    bound = fingerprint(*spec.binding())
    req = page_request(ctx.codec, bound, first=first, after=after, last=last, before=before)
    if ctx.on_search is not None and req.page == 0:
        ctx.on_search(spec.query)
    cursor = req.cursor_key
    if cursor is not None:
        _check_cursor_key(cursor, relevance=spec.order == "RELEVANCE")
    build = search_sql.relevance_page if spec.order == "RELEVANCE" else search_sql.date_page
    query, params = build(spec, forward=req.forward, size=req.size, cursor=cursor)

    async def compute() -> tuple[Any, int | None]:
        raw, route = await fetch_routed(ctx, "search", query, params)
        # The search statement's own routing record: its data LSN guards the cache entry.
        return [_jsonable(r) for r in raw], route.lsn if route else None

    if ctx.cache is not None and req.page is not None and req.page < CACHED_PAGES:
        parts = [*spec.binding(), req.size, req.forward, cursor]
        raw = await ctx.cache.get_or_compute(parts, min_lsn=ctx.routing.min_lsn, compute=compute)
    else:
        raw, _ = await compute()
    has_other = bool(raw[0][-1]) if raw else False
    rows = [_page_row(r) for r in raw if r[0] is not None]
    if spec.order == "RELEVANCE":
        rows.sort(key=lambda r: (r.rank or 0.0, r.meeting_date, r.id), reverse=req.forward)
    rows, has_more = trim_page(rows, req)
    loaders.prime_pages(ctx, rows)
    edges = [
        SearchEdge(
            key=(r.meeting_date, r.id),
            query=spec.query,
            cursor=ctx.codec.encode(
                bound,
                r.relevance_key() if spec.order == "RELEVANCE" else r.date_key(),
                page=(req.page or 0) if req.forward else CACHED_PAGES,  # a backward page's depth is unknown
            ),
            node=MeetingPage.from_row(r),
            rank=r.rank,
        )
        for r in rows
    ]
    return SearchConnection(
        spec=spec,
        edges=edges,
        page_info=page_info(
            [e.cursor for e in edges], forward=req.forward, has_more=has_more, has_other=has_other
        ),
    )


def _jsonable(row: tuple[Any, ...]) -> list[Any]:
    """A result row as JSON values (the cache stores JSON, never pickle)."""
    return [v.isoformat() if isinstance(v, dt.date) else v for v in row]


def _page_row(raw: list[Any]) -> PageRow:
    values = list(raw[:-1])
    values[1] = dt.date.fromisoformat(values[1])
    return PageRow(*values)


def _check_cursor_key(key: list[Any], *, relevance: bool) -> None:
    """A signed cursor was made by us, but an old server version might have signed another shape."""
    try:
        if relevance:
            float(key[0])
            dt.date.fromisoformat(str(key[1]))
            str(key[2])
            if len(key) != 3:
                raise ValueError
        else:
            dt.date.fromisoformat(str(key[0]))
            str(key[1])
            if len(key) != 2:
                raise ValueError
    except (ValueError, IndexError, TypeError):
        raise BadUserInput("invalid cursor") from None


__all__ = ["ResultCount", "SearchConnection", "SearchEdge", "SearchFilter", "build_spec", "run_search"]
