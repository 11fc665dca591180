"""The GraphQL object types of the public contract (../shared/contract/schema.graphql)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable
from enum import Enum
from typing import Annotated, Any

import strawberry
from psycopg import sql
from strawberry.types import Info

from schema import document_loaders, ids, loaders
from schema.context import Context
from schema.cursors import fingerprint
from schema.db import fetch_all
from schema.errors import BadUserInput, Unavailable
from schema.loaders import DOCUMENT_COLUMNS, DocumentRow, MunicipalityRow
from schema.pagination import page_request, trim_page
from schema.search_sql import PAGE_COLUMNS, PageRow

Ctx = Info[Context, None]


@strawberry.enum(description="The kind of meeting document.")
class DocumentType(Enum):
    AGENDA = strawberry.enum_value("agenda", description="The agenda published before the meeting.")
    MINUTES = strawberry.enum_value("minutes", description="The minutes recorded after the meeting.")


@strawberry.enum(description="The order of search results.")
class SearchOrder(Enum):
    NEWEST = strawberry.enum_value(
        "NEWEST", description="Meeting date descending, then a stable tie-breaker."
    )
    OLDEST = strawberry.enum_value("OLDEST", description="Meeting date ascending, then a stable tie-breaker.")
    RELEVANCE = strawberry.enum_value(
        "RELEVANCE",
        description="Full-text rank descending over every match (docs/search.md), then newest, then id.",
    )


@strawberry.interface(description="An object with a global id, which `node(id:)` resolves (Relay).")
class Node:
    id: strawberry.ID = strawberry.field(description="The global id of the object.")


@strawberry.type(description="Where a page of a connection sits in the whole list (Relay).")
class PageInfo:
    has_next_page: bool = strawberry.field(description="Whether more edges follow the last one.")
    has_previous_page: bool = strawberry.field(description="Whether edges precede the first one.")
    start_cursor: str | None = strawberry.field(description="The cursor of the first edge.")
    end_cursor: str | None = strawberry.field(description="The cursor of the last edge.")


def page_info(cursors: list[str], *, forward: bool, has_more: bool, has_other: bool) -> PageInfo:
    """pageInfo for a keyset page: ``has_more`` looks ahead in the scan direction, ``has_other`` behind it."""
    return PageInfo(
        has_next_page=has_more if forward else has_other,
        has_previous_page=has_other if forward else has_more,
        start_cursor=cursors[0] if cursors else None,
        end_cursor=cursors[-1] if cursors else None,
    )


# --- Municipality ------------------------------------------------------------------------------------------


@strawberry.type(description="A local government (town, city, county) that publishes meeting records.")
class Municipality(Node):
    pk: strawberry.Private[int]
    subdomain: str = strawberry.field(description="Public key of the municipality, e.g. `alameda.ca`.")
    name: str = strawberry.field(description="Display name.")
    state: str = strawberry.field(description="Two-letter state code.")
    country: str = strawberry.field(description="Two-letter country code.")
    kind: str | None = strawberry.field(description="city, town, county, village... when known.")

    @classmethod
    def from_row(cls, row: MunicipalityRow) -> Municipality:
        return cls(
            id=strawberry.ID(ids.encode("Municipality", str(row.id))),
            pk=row.id,
            subdomain=row.subdomain,
            name=row.name,
            state=row.state,
            country=row.country,
            kind=row.kind,
        )

    @strawberry.field(description="The municipality's meeting documents, newest first.")
    async def documents(
        self,
        info: Ctx,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        document_type: Annotated[
            DocumentType | None, strawberry.argument(description="Only agendas or only minutes.")
        ] = None,
    ) -> MeetingDocumentConnection:
        ctx = info.context
        doc_type = str(document_type.value) if document_type else None
        bound = fingerprint("documents", self.pk, doc_type)
        req = page_request(ctx.codec, bound, first=first, after=after, last=last, before=before)
        desc = req.forward  # newest first
        where: list[sql.Composable] = [sql.SQL("d.municipality_id = %(m)s")]
        params: dict[str, Any] = {"m": self.pk}
        if doc_type:
            where.append(sql.SQL("d.document_type = %(t)s::public.document_type"))
            params["t"] = doc_type
        if req.cursor_key is not None:
            params["kd"], params["ki"] = dt.date.fromisoformat(str(req.cursor_key[0])), int(req.cursor_key[1])
            where.append(
                sql.SQL("(d.meeting_date, d.id) {} (%(kd)s, %(ki)s)").format(sql.SQL("<" if desc else ">"))
            )
        direction = sql.SQL("DESC" if desc else "ASC")
        query = sql.SQL(
            "SELECT {cols} FROM public.meeting_document d WHERE {where} "
            "ORDER BY d.meeting_date {dir}, d.id {dir} LIMIT {limit}"
        ).format(
            cols=DOCUMENT_COLUMNS,
            where=sql.SQL(" AND ").join(where),
            dir=direction,
            limit=sql.Literal(req.size + 1),
        )
        rows = [DocumentRow(*r) for r in await fetch_all(ctx, "municipality_documents", query, params)]
        rows, has_more = trim_page(rows, req)
        edges = [
            MeetingDocumentEdge(
                cursor=ctx.codec.encode(bound, [r.meeting_date.isoformat(), r.id]),
                node=MeetingDocument.from_row(r),
            )
            for r in rows
        ]
        # A cursor names a row the client saw, so there is at least that row behind it.
        return MeetingDocumentConnection(
            edges=edges,
            page_info=page_info(
                [e.cursor for e in edges], forward=req.forward, has_more=has_more, has_other=req.has_cursor
            ),
        )


@strawberry.type(description="An edge to a municipality.")
class MunicipalityEdge:
    cursor: str = strawberry.field(description="Opaque cursor of this edge.")
    node: Municipality = strawberry.field(description="The municipality.")


@strawberry.type(description="A page of municipalities (Relay connection).")
class MunicipalityConnection:
    edges: list[MunicipalityEdge] = strawberry.field(description="The municipalities of this page.")
    page_info: PageInfo = strawberry.field(description="Paging information.")


# --- MeetingDocument ------------------------------------------------------------------------------------------


@strawberry.type(description="One agenda or one set of minutes of one meeting.")
class MeetingDocument(Node):
    pk: strawberry.Private[int]
    municipality_pk: strawberry.Private[int]
    meeting_name: str = strawberry.field(
        description="Name of the meeting body as published, e.g. CityCouncil."
    )
    meeting_date: dt.date = strawberry.field(description="Date of the meeting.")
    document_type: DocumentType = strawberry.field(description="Agenda or minutes.")

    @classmethod
    def from_row(cls, row: DocumentRow) -> MeetingDocument:
        return cls(
            id=strawberry.ID(ids.encode("MeetingDocument", str(row.id))),
            pk=row.id,
            municipality_pk=row.municipality_id,
            meeting_name=row.meeting_name,
            meeting_date=row.meeting_date,
            document_type=DocumentType(row.document_type),
        )

    #: Set when the resolver that made this document already batch-loaded its municipality.
    prefetched_municipality: strawberry.Private[Municipality | None] = None

    @strawberry.field(graphql_type=Municipality, description="The municipality that published the document.")
    def municipality(self, info: Ctx) -> Municipality | Awaitable[Municipality]:
        # Synchronous when prefetched: no coroutine, no task. Otherwise one batched lookup per request.
        if self.prefetched_municipality is not None:
            return self.prefetched_municipality
        return _load_municipality(info.context, self.municipality_pk)

    @strawberry.field(description="The document's pages in page order.")
    async def pages(
        self,
        info: Ctx,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> MeetingPageConnection:
        ctx = info.context
        bound = fingerprint("pages", self.pk)
        req = page_request(ctx.codec, bound, first=first, after=after, last=last, before=before)
        asc = req.forward
        # meeting_date is the partition key: with it the lookup reads one partition.
        where: list[sql.Composable] = [sql.SQL("p.document_id = %(d)s AND p.meeting_date = %(day)s")]
        params: dict[str, Any] = {"d": self.pk, "day": self.meeting_date}
        if req.cursor_key is not None:
            params["kn"], params["ki"] = int(req.cursor_key[0]), str(req.cursor_key[1])
            where.append(
                sql.SQL("(p.page_number, p.id) {} (%(kn)s, %(ki)s)").format(sql.SQL(">" if asc else "<"))
            )
        direction = sql.SQL("ASC" if asc else "DESC")
        query = sql.SQL(
            "SELECT {cols}, NULL::real FROM public.meeting_page p WHERE {where} "
            "ORDER BY p.page_number {dir}, p.id {dir} LIMIT {limit}"
        ).format(
            cols=PAGE_COLUMNS,
            where=sql.SQL(" AND ").join(where),
            dir=direction,
            limit=sql.Literal(req.size + 1),
        )
        rows = [PageRow(*r) for r in await fetch_all(ctx, "document_pages", query, params)]
        rows, has_more = trim_page(rows, req)
        loaders.prime_pages(ctx, rows)
        edges = [
            MeetingPageEdge(
                cursor=ctx.codec.encode(bound, [r.page_number, r.id]), node=MeetingPage.from_row(r)
            )
            for r in rows
        ]
        return MeetingPageConnection(
            edges=edges,
            page_info=page_info(
                [e.cursor for e in edges], forward=req.forward, has_more=has_more, has_other=req.has_cursor
            ),
        )

    @strawberry.field(
        description="The document's pages that match a search query (the `search` syntax), in page order, with "
        "their excerpts, and how many there are. Batched: the documents of one page of results cost one "
        "statement together."
    )
    async def matching_pages(
        self,
        info: Ctx,
        query: Annotated[str, strawberry.argument(description="The search query, as given to `search`.")],
        first: Annotated[
            int, strawberry.argument(description="How many matching pages to list (at most 100).")
        ] = 3,
    ) -> DocumentMatches:
        if not 0 <= first <= document_loaders.MAX_MATCHING_PAGES:
            raise BadUserInput(f"first must be between 0 and {document_loaders.MAX_MATCHING_PAGES}")
        text = document_loaders.check_query(query)
        found = await document_loaders.matching_pages(info.context, text, first).load(
            (self.pk, self.meeting_date)
        )
        matches = []
        for row, headline in found.pages:
            page = MeetingPage.from_row(row)
            page.prefetched_document = self
            matches.append(DocumentMatch(headline=headline, page=page))
        return DocumentMatches(count=found.count, edges=matches)

    @strawberry.field(description="The numbers of the document's pages, in order.")
    async def page_numbers(self, info: Ctx) -> list[int]:
        return await document_loaders.page_numbers(info.context).load((self.pk, self.meeting_date))

    @strawberry.field(description="The numbers of the document's pages that match a search query, in order.")
    async def matching_page_numbers(
        self,
        info: Ctx,
        query: Annotated[str, strawberry.argument(description="The search query, as given to `search`.")],
    ) -> list[int]:
        text = document_loaders.check_query(query)
        return await document_loaders.page_numbers(info.context, text).load((self.pk, self.meeting_date))

    @strawberry.field(description="The page with this number, or null when the document has none.")
    async def page(
        self, info: Ctx, number: Annotated[int, strawberry.argument(description="The page number.")]
    ) -> MeetingPage | None:
        row = await document_loaders.pages_by_number(info.context).load((self.pk, self.meeting_date, number))
        if row is None:
            return None
        page = MeetingPage.from_row(row)
        page.prefetched_document = self
        return page


@strawberry.type(description="A page of a document that matches a search query.")
class DocumentMatch:
    headline: str = strawberry.field(
        description="HTML-escaped excerpt around the matches; matched words are wrapped in <mark>…</mark>."
    )
    page: MeetingPage = strawberry.field(description="The matching page.")


@strawberry.type(description="The pages of one document that match a search query.")
class DocumentMatches:
    count: int = strawberry.field(description="How many of the document's pages match (exact).")
    edges: list[DocumentMatch] = strawberry.field(
        description="The first matching pages in page order (as many as `first` asked for)."
    )


@strawberry.type(description="An edge to a meeting document.")
class MeetingDocumentEdge:
    cursor: str = strawberry.field(description="Opaque cursor of this edge.")
    node: MeetingDocument = strawberry.field(description="The document.")


@strawberry.type(description="A page of meeting documents (Relay connection).")
class MeetingDocumentConnection:
    edges: list[MeetingDocumentEdge] = strawberry.field(description="The documents of this page.")
    page_info: PageInfo = strawberry.field(description="Paging information.")


# --- MeetingPage ----------------------------------------------------------------------------------------------------


@strawberry.type(description="One page of text of a meeting document.")
class MeetingPage(Node):
    row: strawberry.Private[PageRow]
    source_id: str = strawberry.field(description="The page id given by the source at ingest.")
    page_number: int = strawberry.field(description="Page number within the document.")
    text: str = strawberry.field(
        description="The page's raw text. Untrusted: escape it before rendering HTML."
    )
    page_image: str | None = strawberry.field(description="Path or URL of the page's scanned image, if any.")

    @classmethod
    def from_row(cls, row: PageRow) -> MeetingPage:
        return cls(
            id=strawberry.ID(ids.encode("MeetingPage", ids.page_key(row.meeting_date, row.id))),
            row=row,
            source_id=row.id,
            page_number=row.page_number,
            text=row.text,
            page_image=row.page_image,
        )

    #: Set when the resolver that made this page already batch-loaded its document.
    prefetched_document: strawberry.Private[MeetingDocument | None] = None

    @strawberry.field(graphql_type=MeetingDocument, description="The document this page belongs to.")
    def document(self, info: Ctx) -> MeetingDocument | Awaitable[MeetingDocument]:
        if self.prefetched_document is not None:
            return self.prefetched_document
        return _load_document(info.context, self.row.document_id)

    @strawberry.field(
        description="The page's whole text, HTML-escaped, with every match of a search query wrapped in "
        "<mark>…</mark>. Batched: the pages of one response cost one statement together."
    )
    async def highlighted_text(
        self,
        info: Ctx,
        query: Annotated[str, strawberry.argument(description="The search query, as given to `search`.")],
    ) -> str:
        text = document_loaders.check_query(query)
        return await document_loaders.highlighted_text(info.context, text).load(
            (self.row.meeting_date, self.row.id)
        )


@strawberry.type(description="An edge to a meeting page.")
class MeetingPageEdge:
    cursor: str = strawberry.field(description="Opaque cursor of this edge.")
    node: MeetingPage = strawberry.field(description="The page.")


@strawberry.type(description="A page of meeting pages (Relay connection).")
class MeetingPageConnection:
    edges: list[MeetingPageEdge] = strawberry.field(description="The pages of this page.")
    page_info: PageInfo = strawberry.field(description="Paging information.")


async def _load_municipality(ctx: Context, pk: int) -> Municipality:
    row = await loaders.municipalities(ctx).load(pk)
    if row is None:
        raise Unavailable("the document's municipality is not visible on this node yet; retry")
    return Municipality.from_row(row)


async def _load_document(ctx: Context, pk: int) -> MeetingDocument:
    doc = await loaders.documents(ctx).load(pk)
    if doc is None:
        raise Unavailable("the page's document is not visible on this node yet; retry")
    return MeetingDocument.from_row(doc)
