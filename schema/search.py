"""``Query.search``: input validation, the keyset page, headlines and the capped count."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Awaitable
from typing import Any

import strawberry
from strawberry.types import Info

from schema import loaders, search_sql
from schema.context import Context
from schema.cursors import fingerprint
from schema.db import fetch_all, fetch_routed
from schema.errors import BadUserInput
from schema.lookahead import Selection, wants
from schema.pagination import page_request, trim_page
from schema.search_groups import documents_of_page
from schema.search_sql import PageRow, SearchSpec
from schema.types import (
    DocumentType,
    MeetingDocument,
    MeetingPage,
    Municipality,
    PageInfo,
    SearchOrder,
    page_info,
)

Ctx = Info[Context, None]
MAX_QUERY_LENGTH = 500
MAX_FILTER_VALUES = 100
#: Only the first pages of a search are cached: deeper pages are rare and would only evict hot ones.
CACHED_PAGES = 3
_STATE_RE = re.compile(r"^[A-Za-z]{2}$")
# A word in double quotes on its own, not excluded with "-": that exact form is asked for (docs/search.md).
_EXACT_RE = re.compile(r'(?<![\w-])"\s*([^\W_]+)\s*"')
_OR_RE = re.compile(r"(?i)(?<![\w\"])or(?![\w\"])")
MAX_EXACT_FORMS = 8


def exact_forms(query: str) -> tuple[str, ...]:
    """The words of ``query`` asked for in their exact form: a single word in double quotes, e.g. ``"budgets"``.

    Unquoted words and phrases match every form with the same English stem. In a query with ``or`` the
    quotes only group (an exact form cannot be required of one side of an alternative), so none is returned.
    """
    if _OR_RE.search(query):
        return ()
    found = sorted({m.group(1).lower() for m in _EXACT_RE.finditer(query)})
    return tuple(found[:MAX_EXACT_FORMS])


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
    relative_error: float | None = strawberry.field(
        default=None,
        description="When not exact: half the width of the estimate's 95 % confidence interval, as a share of "
        "value (0.1 means the count is within ±10 % of value, 19 times in 20). Null when exact.",
    )


@strawberry.type(description="One search result.")
class SearchEdge:
    key: strawberry.Private[tuple[dt.date, str]]
    query: strawberry.Private[str]
    cursor: str = strawberry.field(description="Opaque cursor of this result, bound to its search.")
    node: MeetingPage = strawberry.field(description="The matching page.")
    rank: float | None = strawberry.field(
        description="Full-text rank, 1 / (search_vector <=> query) (ts_rank for one word or words joined by or; "
        "a phrase's words are scored as if joined by AND, the phrase deciding only which pages match): higher is "
        "better; set when orderBy is RELEVANCE, whose results are in this order over every match (docs/search.md)."
    )

    # Filled in by the search resolver, in one batch per page, only when the client selected it: a plain value,
    # so the field resolves without a coroutine.
    headline: str = strawberry.field(
        default="",
        description="HTML-escaped excerpt around the matches; matched words are wrapped in <mark>…</mark>. "
        "Computed only when selected, in one batch per page of results.",
    )


@strawberry.type(description="A page of search results (Relay connection).")
class SearchConnection:
    spec: strawberry.Private[SearchSpec]
    edges: list[SearchEdge] = strawberry.field(description="The results of this page.")
    page_info: PageInfo = strawberry.field(description="Paging information, exact in both directions.")

    @strawberry.field(
        graphql_type=list[MeetingDocument],
        description="The meeting documents of this page's results, each once, in the order they first appear "
        "(for grouping results by document; ask for `matchingPages` here rather than under every edge).",
    )
    def documents(self, info: Ctx) -> list[MeetingDocument] | Awaitable[list[MeetingDocument]]:
        return documents_of_page(self, info)

    @strawberry.field(description="Number of matches: exact up to 10,000, an estimate (exact: false) above.")
    async def total_count(self, info: Ctx) -> ResultCount:
        ctx = info.context
        query, params = search_sql.count_query(self.spec)
        rows = await fetch_all(ctx, "search_count", query, params)
        value = int(rows[0][0])
        if value <= search_sql.COUNT_CAP:
            return ResultCount(value=value, exact=True)
        query, params = search_sql.estimate_query(self.spec)
        sample = await fetch_all(ctx, "search_estimate", query, params)
        return estimate_count(int(sample[0][0]), int(sample[0][1]), float(sample[0][2] or 0))


def estimate_count(hits: int, sampled: int, table_rows: float) -> ResultCount:
    """The count past COUNT_CAP from ``hits`` matches among ``sampled`` pages of ``table_rows``.

    The share of matches in the sample, scaled to the table, with the normal approximation of the binomial
    interval (1.96 standard errors) as the stated error. The exact count is known to exceed COUNT_CAP, so the
    value never goes below COUNT_CAP + 1; when the sample is too small to say more, value is that lower bound
    and the error is unknown (null).
    """
    floor = search_sql.COUNT_CAP + 1
    if hits == 0 or sampled == 0 or table_rows <= 0:
        return ResultCount(value=floor, exact=False)
    share = hits / sampled
    value = round(share * table_rows)
    error = 1.96 * math.sqrt((1 - share) / hits)
    if value < floor:
        return ResultCount(value=floor, exact=False)
    return ResultCount(value=value, exact=False, relative_error=round(error, 3))


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
        exact=exact_forms(text),
    )


async def run_search(
    ctx: Context,
    spec: SearchSpec,
    *,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
    selected: Selection | None = None,
) -> SearchConnection:
    """One page of results for a validated search.

    ``selected`` is what the client asked for below the connection: headlines, documents and towns it names
    are batch-loaded here, before the edges are returned (everything when it is None).
    """
    bound = fingerprint(*spec.binding())
    req = page_request(ctx.codec, bound, first=first, after=after, last=last, before=before)
    if ctx.on_search is not None and req.page == 0:
        ctx.on_search(spec.query)
    cursor = req.cursor_key
    if cursor is not None:
        _check_cursor_key(cursor, relevance=spec.order == "RELEVANCE")
    build = search_sql.relevance_page if spec.order == "RELEVANCE" else search_sql.date_page
    extras = _extras(selected)
    query, params = build(spec, forward=req.forward, size=req.size, cursor=cursor, extras=extras)

    async def compute() -> tuple[Any, int | None]:
        raw, route = await fetch_routed(ctx, "search", query, params)
        # The search statement's own routing record: its data LSN guards the cache entry.
        return [_jsonable(r) for r in raw], route.lsn if route else None

    if req.page is not None and req.page < CACHED_PAGES:
        if ctx.cache is not None:
            parts = [*spec.binding(), req.size, req.forward, cursor, sorted(extras)]
            raw = await ctx.cache.get_or_compute(parts, min_lsn=ctx.routing.min_lsn, compute=compute)
        else:
            raw, _ = await compute()
    else:
        # Deep and backward pages are rare: sharing their responses would only evict hot entries.
        ctx.shareable = False
        raw, _ = await compute()
    has_other = bool(raw[0][-1]) if raw else False
    pairs = [(_page_row(r), r) for r in raw if r[0] is not None]
    relevance = spec.order == "RELEVANCE"
    if relevance:
        # The rank column holds RUM's distance (lower is better): best first, then newest, then id.
        pairs.sort(key=lambda pr: (-(pr[0].rank or 0.0), pr[0].meeting_date, pr[0].id), reverse=req.forward)
    pairs, has_more = trim_page(pairs, req)
    rows = [pr[0] for pr in pairs]
    loaders.prime_pages(ctx, rows)
    # Relevance cursors also carry the row's position among the results (see search_sql._relevance_page).
    first_pos = _first_position(cursor, req.forward, len(rows)) if relevance else 0
    edges = [
        SearchEdge(
            key=(r.meeting_date, r.id),
            query=spec.query,
            cursor=ctx.codec.encode(
                bound,
                [*r.relevance_key(), first_pos + i] if relevance else r.date_key(),
                page=(req.page or 0) if req.forward else CACHED_PAGES,  # a backward page's depth is unknown
            ),
            node=MeetingPage.from_row(r),
            rank=_score(r.rank) if relevance else None,
        )
        for i, r in enumerate(rows)
    ]
    _attach_extras(ctx, edges, [pr[1] for pr in pairs], extras)
    return SearchConnection(
        spec=spec,
        edges=edges,
        page_info=page_info(
            [e.cursor for e in edges], forward=req.forward, has_more=has_more, has_other=has_other
        ),
    )


def _extras(selected: Selection | None) -> frozenset[str]:
    """What the search statement fetches besides the pages, from what the client selected below the edges."""
    if selected is None:
        return frozenset(search_sql.EXTRA_ORDER)
    out = set()
    if wants(selected, "edges", "headline"):
        out.add("headline")
    # ``documents`` lists the same documents as the edges' nodes: fetched in the same statement.
    if wants(selected, "edges", "node", "document") or wants(selected, "documents"):
        out.add("document")
    if wants(selected, "edges", "node", "document", "municipality") or wants(selected, "documents", "municipality"):
        out.add("town")
    return frozenset(out)


def _attach_extras(ctx: Context, edges: list[SearchEdge], raws: list[list[Any]], extras: frozenset[str]) -> None:
    """Fill in headlines, documents and towns fetched with the rows, and prime the loaders with them."""
    if not extras:
        return
    docs: dict[int, MeetingDocument] = {}
    towns: dict[int, Municipality] = {}
    doc_loader = loaders.documents(ctx)
    town_loader = loaders.municipalities(ctx)
    for edge, raw in zip(edges, raws, strict=True):
        at = search_sql.PAGE_WIDTH
        if "headline" in extras:
            edge.headline = loaders.render_headline(str(raw[at] or ""))
            at += 1
        if "document" in extras:
            d = raw[at : at + 5]
            at += 5
            if d[0] is not None:
                doc = docs.get(int(d[0]))
                if doc is None:
                    row = loaders.DocumentRow(int(d[0]), int(d[1]), d[2], dt.date.fromisoformat(d[3]), d[4])
                    doc_loader.prime(row.id, row)
                    doc = docs[row.id] = MeetingDocument.from_row(row)
                edge.node.prefetched_document = doc
        if "town" in extras:
            m = raw[at : at + 6]
            doc = edge.node.prefetched_document
            if m[0] is not None and doc is not None and doc.prefetched_municipality is None:
                town = towns.get(int(m[0]))
                if town is None:
                    mrow = loaders.MunicipalityRow(int(m[0]), m[1], m[2], m[3], m[4], m[5])
                    town_loader.prime(mrow.id, mrow)
                    town = towns[mrow.id] = Municipality.from_row(mrow)
                doc.prefetched_municipality = town


def _first_position(cursor: list[Any] | None, forward: bool, count: int) -> int:
    """The 0-based position among all results of a relevance page's first row."""
    if cursor is None:
        return 0
    at = int(cursor[3])
    return at + 1 if forward else max(0, at - count)


def _score(distance: float | None) -> float | None:
    """The rank shown: the reciprocal of RUM's distance, the documented score (equal to ``ts_rank`` for one word
    or an ``or`` of words)."""
    if distance is None or distance <= 0 or math.isinf(distance):
        return None
    return 1.0 / distance


def _jsonable(row: tuple[Any, ...]) -> list[Any]:
    """A result row as JSON values (the cache stores JSON, never pickle)."""
    return [v.isoformat() if isinstance(v, dt.date) else v for v in row]


def _page_row(raw: list[Any]) -> PageRow:
    values = list(raw[: search_sql.PAGE_WIDTH])
    values[1] = dt.date.fromisoformat(values[1])
    return PageRow(*values)


def _check_cursor_key(key: list[Any], *, relevance: bool) -> None:
    """A signed cursor was made by us, but an old server version might have signed another shape."""
    try:
        if relevance:
            float(key[0])
            dt.date.fromisoformat(str(key[1]))
            str(key[2])
            if len(key) != 4 or not isinstance(key[3], int) or key[3] < 0:
                raise ValueError
        else:
            dt.date.fromisoformat(str(key[0]))
            str(key[1])
            if len(key) != 2:
                raise ValueError
    except (ValueError, IndexError, TypeError):
        raise BadUserInput("invalid cursor") from None


__all__ = ["ResultCount", "SearchConnection", "SearchEdge", "SearchFilter", "build_spec", "run_search"]
