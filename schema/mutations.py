"""Mutations: write rights required, validated input, one transaction each, and a consistency token.

Each mutation runs as one transaction on the primary. Any failure rolls the whole transaction back, so a
failed write leaves nothing behind. The payload's ``consistencyToken`` encodes the primary's WAL position
after commit; a client that sends it back as ``X-Consistency-Token`` reads its own write.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
import strawberry
from psycopg import errors as pg_errors
from psycopg import sql
from strawberry.types import Info

from migrations.partitions import PAGE_COLUMNS
from routing import NoPrimaryError, RoutingError, encode_token
from schema import ids
from schema.context import Context
from schema.db import require_router
from schema.errors import BadUserInput, Forbidden, Timeout, Unauthenticated, Unavailable
from schema.loaders import DOCUMENT_COLUMNS, MUNICIPALITY_COLUMNS, DocumentRow, MunicipalityRow
from schema.types import DocumentType, MeetingDocument, Municipality

Ctx = Info[Context, None]
T = TypeVar("T")

MAX_PAGE_TEXT_BYTES = 1_000_000
MAX_PAGES = 5000
MIN_DATE = dt.date(1800, 1, 1)
MAX_DATE = dt.date(2200, 12, 31)


@strawberry.input(description="A municipality to create or update, keyed by subdomain.")
class MunicipalityInput:
    subdomain: str = strawberry.field(description="Public key, lowercase, e.g. `alameda.ca`.")
    name: str = strawberry.field(description="Display name.")
    state: str = strawberry.field(description="Two-letter state code.")
    country: str | None = strawberry.field(default="US", description="Two-letter country code.")
    kind: str | None = strawberry.field(default=None, description="city, town, county...")


@strawberry.input(description="One page of a document.")
class PageInput:
    source_id: str = strawberry.field(description="The source's own page id.")
    page_number: int = strawberry.field(description="Page number, unique within the document.")
    text: str = strawberry.field(description="The page text (at most 1 MB, no NUL bytes).")
    page_image: str | None = strawberry.field(default=None, description="Path or URL of the page image.")


@strawberry.input(description="A document with its complete set of pages.")
class DocumentInput:
    municipality: str = strawberry.field(description="Subdomain of an existing municipality.")
    meeting_name: str = strawberry.field(description="Name of the meeting body, e.g. CityCouncil.")
    meeting_date: dt.date = strawberry.field(description="Date of the meeting.")
    document_type: DocumentType = strawberry.field(description="Agenda or minutes.")
    pages: list[PageInput] = strawberry.field(description="Every page; replaces what was stored.")


@strawberry.type(description="Result of upsertMunicipality.")
class UpsertMunicipalityPayload:
    municipality: Municipality = strawberry.field(description="The municipality as stored.")
    consistency_token: str = strawberry.field(
        description="Send back as X-Consistency-Token to read this write."
    )


@strawberry.type(description="Result of upsertDocument.")
class UpsertDocumentPayload:
    document: MeetingDocument = strawberry.field(description="The document as stored.")
    consistency_token: str = strawberry.field(
        description="Send back as X-Consistency-Token to read this write."
    )


@strawberry.type(description="Result of deleteDocument.")
class DeleteDocumentPayload:
    deleted_id: strawberry.ID = strawberry.field(description="Global id of the deleted document.")
    consistency_token: str = strawberry.field(
        description="Send back as X-Consistency-Token to read this write."
    )


def require_writer(ctx: Context) -> None:
    """UNAUTHENTICATED without a valid token, FORBIDDEN with a token that lacks write rights."""
    if ctx.viewer.auth_problem or not ctx.viewer.authenticated:
        raise Unauthenticated(ctx.viewer.auth_problem or "writes need an Authorization: Bearer token")
    if not ctx.viewer.can_write:
        raise Forbidden("this token has no write rights")


def _clean(value: str, what: str, *, limit: int, required: bool = True) -> str:
    if "\x00" in value:
        raise BadUserInput(f"{what} contains a NUL byte, which PostgreSQL cannot store")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadUserInput(f"{what} is not valid Unicode text") from None
    if required and not value.strip():
        raise BadUserInput(f"{what} is empty")
    if len(value) > limit:
        raise BadUserInput(f"{what} is longer than {limit} characters")
    return value


async def _write(ctx: Context, fn: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
    """Run one transaction on the primary; record the token; translate failures into client errors."""
    ctx.statements += 1
    try:
        result, lsn = await require_router(ctx).write(fn, ctx.routing)
    except NoPrimaryError:
        raise Unavailable(
            "no primary is reachable: writes are unavailable right now; nothing was written"
        ) from None
    except RoutingError:
        # The primary failed during the call: the transaction may or may not have committed.
        raise Unavailable(
            "the primary failed during the write; it may or may not have been applied - read it back before retrying"
        ) from None
    except pg_errors.QueryCanceled:
        raise Timeout("the write took too long and was rolled back") from None
    except pg_errors.LockNotAvailable:
        raise Timeout("the document is being written by another request; retry") from None
    ctx.consistency_token = ctx.tokens.encode(lsn) if ctx.tokens is not None else encode_token(lsn)
    if ctx.after_write is not None:
        await ctx.after_write()
    return result


async def _upsert_municipality(ctx: Context, data: MunicipalityInput) -> MunicipalityRow:
    subdomain = _clean(data.subdomain, "subdomain", limit=100).strip().lower()
    name = _clean(data.name, "name", limit=200).strip()
    state = _clean(data.state, "state", limit=2).strip().upper()
    country = _clean(data.country or "US", "country", limit=2).strip().upper()
    kind = _clean(data.kind, "kind", limit=50, required=False) if data.kind is not None else None
    if not (len(state) == 2 and state.isalpha() and len(country) == 2 and country.isalpha()):
        raise BadUserInput("state and country are two-letter codes")
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789.-")
    if not set(subdomain) <= allowed or not subdomain[0].isalnum():
        raise BadUserInput("subdomain may hold lowercase letters, digits, dots and dashes, e.g. alameda.ca")

    async def run(conn: psycopg.AsyncConnection[Any]) -> MunicipalityRow:
        cur = await conn.execute(
            sql.SQL(
                "INSERT INTO public.municipality AS m (subdomain, name, state, country, kind) "
                "VALUES (%(s)s, %(n)s, %(st)s, %(c)s, %(k)s) "
                "ON CONFLICT (subdomain) DO UPDATE SET name = EXCLUDED.name, state = EXCLUDED.state, "
                "country = EXCLUDED.country, kind = EXCLUDED.kind RETURNING {}"
            ).format(MUNICIPALITY_COLUMNS),
            {"s": subdomain, "n": name, "st": state, "c": country, "k": kind},
        )
        row = await cur.fetchone()
        assert row is not None
        return MunicipalityRow(*row)

    return await _write(ctx, run)


def _validate_document(data: DocumentInput) -> list[tuple[str, int, str, str | None]]:
    _clean(data.municipality, "municipality", limit=100)
    _clean(data.meeting_name, "meetingName", limit=300)
    if not MIN_DATE <= data.meeting_date <= MAX_DATE:
        raise BadUserInput(f"meetingDate must be between {MIN_DATE} and {MAX_DATE}")
    if len(data.pages) > MAX_PAGES:
        raise BadUserInput(f"a document may have at most {MAX_PAGES} pages")
    seen_numbers: set[int] = set()
    seen_ids: set[str] = set()
    pages = []
    for i, page in enumerate(data.pages):
        where = f"pages[{i}]"
        source_id = _clean(page.source_id, f"{where}.sourceId", limit=200).strip()
        if page.page_number < 0:
            raise BadUserInput(f"{where}.pageNumber must not be negative")
        if page.page_number in seen_numbers:
            raise BadUserInput(f"{where}.pageNumber {page.page_number} appears twice in the document")
        if source_id in seen_ids:
            raise BadUserInput(f"{where}.sourceId {source_id!r} appears twice in the document")
        if len(page.text) > MAX_PAGE_TEXT_BYTES or len(page.text.encode("utf-8")) > MAX_PAGE_TEXT_BYTES:
            raise BadUserInput(f"{where}.text is larger than 1 MB")
        _clean(page.text, f"{where}.text", limit=MAX_PAGE_TEXT_BYTES, required=False)
        image = (
            _clean(page.page_image, f"{where}.pageImage", limit=2000, required=False)
            if page.page_image
            else None
        )
        seen_numbers.add(page.page_number)
        seen_ids.add(source_id)
        pages.append((source_id, page.page_number, page.text, image))
    return pages


async def upsert_document(ctx: Context, data: DocumentInput) -> DocumentRow:
    """Create or replace a document and all its pages in one transaction."""
    pages = _validate_document(data)
    subdomain = data.municipality.strip().lower()

    async def run(conn: psycopg.AsyncConnection[Any]) -> DocumentRow:
        cur = await conn.execute("SELECT id FROM public.municipality WHERE subdomain = %s", [subdomain])
        found = await cur.fetchone()
        if found is None:
            raise BadUserInput(f"unknown municipality {subdomain!r}: create it with upsertMunicipality first")
        cur = await conn.execute(
            sql.SQL(
                "INSERT INTO public.meeting_document AS d (municipality_id, meeting_name, meeting_date, document_type) "
                "VALUES (%(m)s, %(n)s, %(day)s, %(t)s::public.document_type) "
                "ON CONFLICT (municipality_id, meeting_name, meeting_date, document_type) "
                "DO UPDATE SET meeting_name = EXCLUDED.meeting_name RETURNING {}"
            ).format(DOCUMENT_COLUMNS),
            {"m": found[0], "n": data.meeting_name, "day": data.meeting_date, "t": str(data.document_type.value)},
        )
        row = await cur.fetchone()
        assert row is not None
        doc = DocumentRow(*row)
        # The date is the partition key: with it, the delete touches one partition.
        await conn.execute(
            "DELETE FROM public.meeting_page WHERE document_id = %s AND meeting_date = %s",
            [doc.id, doc.meeting_date],
        )
        if pages:
            try:
                await conn.execute(
                    sql.SQL(
                        """
                    INSERT INTO public.meeting_page ({columns})
                    SELECT u.id, %(day)s, %(doc)s, %(m)s, %(t)s::public.document_type, u.n, u.txt, u.img
                      FROM unnest(%(ids)s::text[], %(nums)s::int[], %(texts)s::text[], %(imgs)s::text[])
                           AS u(id, n, txt, img)
                    """
                    ).format(columns=sql.SQL(", ").join(sql.Identifier(c) for c in PAGE_COLUMNS)),
                    {
                        "day": doc.meeting_date,
                        "doc": doc.id,
                        "m": doc.municipality_id,
                        "t": doc.document_type,
                        "ids": [p[0] for p in pages],
                        "nums": [p[1] for p in pages],
                        "texts": [p[2] for p in pages],
                        "imgs": [p[3] for p in pages],
                    },
                )
            except pg_errors.UniqueViolation:
                raise BadUserInput("a page id already belongs to another document of the same date") from None
        return doc

    return await _write(ctx, run)


async def delete_document(ctx: Context, global_id: str) -> None:
    type_name, key = ids.decode(global_id)
    if type_name != "MeetingDocument":
        raise BadUserInput("deleteDocument takes the id of a MeetingDocument")
    doc_id = ids.int_key(key)

    async def run(conn: psycopg.AsyncConnection[Any]) -> None:
        cur = await conn.execute(
            "DELETE FROM public.meeting_document WHERE id = %s RETURNING meeting_date", [doc_id]
        )
        row = await cur.fetchone()
        if row is None:
            raise BadUserInput("no such document")
        await conn.execute(
            "DELETE FROM public.meeting_page WHERE document_id = %s AND meeting_date = %s", [doc_id, row[0]]
        )

    await _write(ctx, run)


@strawberry.type(description="Writes. Each needs an Authorization: Bearer token with write rights.")
class Mutation:
    @strawberry.mutation(description="Create or update a municipality by subdomain.")
    async def upsert_municipality(self, info: Ctx, input: MunicipalityInput) -> UpsertMunicipalityPayload:
        ctx = info.context
        require_writer(ctx)
        row = await _upsert_municipality(ctx, input)
        return UpsertMunicipalityPayload(
            municipality=Municipality.from_row(row), consistency_token=ctx.consistency_token or ""
        )

    @strawberry.mutation(
        description="Create or replace a document and its complete set of pages, atomically."
    )
    async def upsert_document(self, info: Ctx, input: DocumentInput) -> UpsertDocumentPayload:
        ctx = info.context
        require_writer(ctx)
        row = await upsert_document(ctx, input)
        return UpsertDocumentPayload(
            document=MeetingDocument.from_row(row), consistency_token=ctx.consistency_token or ""
        )

    @strawberry.mutation(description="Delete a document and its pages.")
    async def delete_document(self, info: Ctx, id: strawberry.ID) -> DeleteDocumentPayload:
        ctx = info.context
        require_writer(ctx)
        await delete_document(ctx, str(id))
        return DeleteDocumentPayload(deleted_id=id, consistency_token=ctx.consistency_token or "")
