"""Relay connection arguments: validation and the direction of a keyset page."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from schema.cursors import CursorCodec
from schema.errors import BadUserInput

Row = TypeVar("Row")
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


@dataclasses.dataclass(frozen=True)
class PageRequest:
    """One page of a keyset connection.

    ``forward`` pages follow the connection's order (first/after); backward pages (last/before) walk the
    reversed order from ``cursor_key`` and are flipped back before they are returned.
    """

    size: int
    forward: bool
    cursor_key: list[Any] | None
    has_cursor: bool
    #: Result page number of a forward page (0 for the first), None for backward pages, whose number is unknown.
    page: int | None = None


def page_request(
    codec: CursorCodec,
    bound_to: str,
    *,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
) -> PageRequest:
    """Validate the four Relay arguments; every misuse is BAD_USER_INPUT."""
    if first is not None and last is not None:
        raise BadUserInput("pass either first or last, not both")
    if after is not None and before is not None:
        raise BadUserInput("pass either after or before, not both")
    for name, value in (("first", first), ("last", last)):
        if value is not None and value < 0:
            raise BadUserInput(f"{name} must not be negative")
        if value is not None and value > MAX_PAGE_SIZE:
            raise BadUserInput(f"{name} may not exceed {MAX_PAGE_SIZE}")
    forward = last is None and before is None
    if last is not None and after is not None:
        raise BadUserInput("last pages backward: use it with before, not after")
    if first is not None and before is not None:
        raise BadUserInput("first pages forward: use it with after, not before")
    requested = first if forward else last
    size = DEFAULT_PAGE_SIZE if requested is None else requested
    cursor = after if forward else before
    key, cursor_page = codec.decode_with_page(cursor, bound_to) if cursor is not None else (None, -1)
    return PageRequest(
        size=size, forward=forward, cursor_key=key, has_cursor=cursor is not None,
        page=cursor_page + 1 if forward else None,
    )


def trim_page(rows: list[Row], req: PageRequest) -> tuple[list[Row], bool]:
    """The rows of the page in display order, and whether more rows lie beyond it in the scan direction.

    Keyset queries fetch ``size + 1`` rows in scan order: the extra row only says there is more. Backward
    pages are scanned in reverse, so they are flipped back here.
    """
    has_more = len(rows) > req.size
    page = rows[: req.size]
    if not req.forward:
        page.reverse()
    return page, has_more
