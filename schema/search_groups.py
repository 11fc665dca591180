"""``SearchConnection.documents``: the meeting documents of one page of search results, each once.

The search page shows one card per document, so it asks for a document's fields (and its ``matchingPages``)
once per document here instead of once per result under ``edges.node.document``: a page of 20 results from 6
meetings completes 6 documents, not 20, which is most of the CPU the cards would otherwise cost.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from strawberry.types import Info

from schema import loaders
from schema.context import Context
from schema.errors import Unavailable
from schema.types import MeetingDocument


def documents_of_page(
    root: Any, info: Info[Context, None]
) -> list[MeetingDocument] | Awaitable[list[MeetingDocument]]:
    """The distinct documents of the page's results, in the order they first appear (synchronous when the
    search already fetched them, as it does when ``edges.node.document`` is selected too)."""
    order: list[int] = []
    found: dict[int, MeetingDocument] = {}
    for edge in root.edges:
        page = edge.node
        pk = int(page.row.document_id)
        if pk in found or pk in order:
            continue
        order.append(pk)
        if page.prefetched_document is not None:
            found[pk] = page.prefetched_document
    if len(found) == len(order):
        return [found[pk] for pk in order]
    return _load(info.context, order, found)


async def _load(ctx: Context, order: list[int], found: dict[int, MeetingDocument]) -> list[MeetingDocument]:
    missing = [pk for pk in order if pk not in found]
    rows = await loaders.documents(ctx).load_many(missing)
    for pk, row in zip(missing, rows, strict=True):
        if row is None:
            raise Unavailable("a result's document is not visible on this node yet; retry")
        found[pk] = MeetingDocument.from_row(row)
    return [found[pk] for pk in order]
