"""One page row as the sources deliver it, and the checks that keep a bad row out of the database.

Both sources (JSONL files and a Datasette JSON API) describe a page with the same fields, civic.band's:

========================  ========================================================================
field                     meaning
========================  ========================================================================
``id``                    the source's own page id: a string (an integer is taken as its digits),
                          1 to 200 characters
``meeting``               the meeting (body) name, as the source spells it ("CityCouncil"), 1 to 300
                          characters
``date``                  the meeting date, ``YYYY-MM-DD``, between 1700-01-01 and 2199-12-31
``page``                  the page number: a JSON integer >= 0 (a string of digits is accepted)
``text``                  the page text: a string of at most 1 MiB of UTF-8, without NUL characters
``page_image``            the path of the page's image, a string or null (may be left out)
``subdomain``             the municipality's civic.band subdomain (``alameda.ca``); JSONL only, and
                          optional there when the run names a default municipality
``kind``                  ``agenda`` or ``minutes`` (``agendas`` is accepted); JSONL only, optional
                          when the run or the file name gives the document type
``municipality_name``,    optional: used only to create a municipality the database does not have yet
``state``                 (never to change an existing one); ``state`` is a two-letter code
========================  ========================================================================

A row that breaks any of these rules becomes a :class:`BadRow` that names its position in the source and the
reason; it is reported and skipped, and the run goes on. The date bounds exist because a typo such as
``0202-05-01`` would otherwise create a partition for the year 202.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Mapping

from migrations.model import DocumentType as DocumentType

MAX_TEXT_BYTES = 1024 * 1024
MAX_ID_CHARS = 200
MAX_MEETING_CHARS = 300
MIN_DATE = dt.date(1700, 1, 1)
MAX_DATE = dt.date(2199, 12, 31)
MAX_PAGE_NUMBER = 2**31 - 1  # the column is an integer
# The same rules as the CHECK constraints of public.municipality (migrations/sql/0002_schema.sql).
SUBDOMAIN_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{0,99}$")
STATE_RE = re.compile(r"^[A-Z]{2}$")
# ASCII only: Python's \d also matches other scripts' digits ("١٢"), which int() would quietly accept.
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$", re.ASCII)
_DIGITS_RE = re.compile(r"^\d{1,10}$", re.ASCII)
_TYPES: dict[str, DocumentType] = {"agenda": "agenda", "agendas": "agenda", "minutes": "minutes"}


@dataclasses.dataclass(frozen=True, slots=True)
class PageRow:
    """A validated page, ready to be staged; ``municipality_name``/``state`` only serve to create a town."""

    subdomain: str
    page_id: str
    meeting: str
    date: dt.date
    page: int
    text: str
    page_image: str | None
    document_type: DocumentType
    municipality_name: str | None = None
    state: str | None = None

    @property
    def key(self) -> tuple[str, dt.date]:
        """The page's primary key in ``meeting_page``: (id, meeting_date)."""
        return (self.page_id, self.date)


@dataclasses.dataclass(frozen=True, slots=True)
class BadRow:
    """A skipped row: where it was (``file:line`` or ``endpoint _next=token row i``) and why."""

    position: str
    reason: str

    def __str__(self) -> str:
        return f"{self.position}: {self.reason}"


@dataclasses.dataclass(frozen=True, slots=True)
class RowDefaults:
    """What a row may leave out because the run (or the file name) says it once for all rows."""

    subdomain: str | None = None
    document_type: DocumentType | None = None


class RowError(ValueError):
    """Why a row cannot be loaded (the message becomes :attr:`BadRow.reason`)."""


def document_type_of(value: object) -> DocumentType | None:
    """``'agenda'``/``'agendas'`` -> agenda, ``'minutes'`` -> minutes, anything else -> None."""
    return _TYPES.get(value.lower()) if isinstance(value, str) else None


def type_from_file_name(name: str) -> DocumentType | None:
    """The document type a file name implies (``alameda-agendas.jsonl``), or None when it names neither or both."""
    lowered = name.lower()
    agenda, minutes = "agenda" in lowered, "minute" in lowered
    if agenda == minutes:
        return None
    return "agenda" if agenda else "minutes"


def _text(obj: Mapping[str, object], field: str, *, limit: int, required: bool = True) -> str | None:
    value = obj.get(field)
    if value is None:
        if required:
            raise RowError(f"missing field {field!r}")
        return None
    if isinstance(value, int) and not isinstance(value, bool) and field == "id":
        value = str(value)
    if not isinstance(value, str):
        raise RowError(f"{field!r} must be a string, not {type(value).__name__}")
    if "\x00" in value:
        raise RowError(f"{field!r} contains a NUL character")
    if len(value) > limit:
        raise RowError(f"{field!r} is longer than {limit:,} characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            # json.loads accepts lone surrogates ("\ud800"), which no UTF-8 database can store.
            raise RowError(f"{field!r} is not valid Unicode (lone surrogate)") from None
    return value


def _page_number(value: object) -> int:
    if value is None:
        raise RowError("missing field 'page'")
    if isinstance(value, str) and _DIGITS_RE.match(value):
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise RowError(f"'page' must be an integer, not {value!r:.40}")
    if not 0 <= value <= MAX_PAGE_NUMBER:
        raise RowError(f"'page' {value} is out of range (0 to {MAX_PAGE_NUMBER})")
    return value


def _date(value: object) -> dt.date:
    if value is None:
        raise RowError("missing field 'date'")
    if not isinstance(value, str) or not _DATE_RE.match(value):
        raise RowError(f"'date' must be YYYY-MM-DD, not {value!r:.40}")
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise RowError(f"'date' {value!r} is not a calendar date") from None
    if not MIN_DATE <= day <= MAX_DATE:
        raise RowError(f"'date' {value} is outside {MIN_DATE} to {MAX_DATE}")
    return day


def _page_text(value: object) -> str:
    if value is None:
        raise RowError("missing field 'text'")
    if not isinstance(value, str):
        raise RowError(f"'text' must be a string, not {type(value).__name__}")
    if "\x00" in value:
        # PostgreSQL text cannot hold NUL; the whole COPY batch would fail on it.
        raise RowError("'text' contains a NUL character")
    if len(value) > MAX_TEXT_BYTES:
        raise RowError(f"'text' is longer than {MAX_TEXT_BYTES:,} bytes")
    if not value.isascii():
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            # json.loads accepts lone surrogates ("\ud800"), which no UTF-8 database can store.
            raise RowError("'text' is not valid Unicode (lone surrogate)") from None
        if size > MAX_TEXT_BYTES:
            raise RowError(f"'text' is longer than {MAX_TEXT_BYTES:,} bytes ({size:,})")
    return value


def _municipality(obj: Mapping[str, object], defaults: RowDefaults) -> tuple[str, str | None, str | None]:
    subdomain = obj.get("subdomain", defaults.subdomain)
    if subdomain is None:
        raise RowError("missing field 'subdomain' (or name a default municipality for the run)")
    if not isinstance(subdomain, str) or not SUBDOMAIN_RE.match(subdomain):
        raise RowError(f"'subdomain' {subdomain!r:.60} is not a civic.band subdomain like 'alameda.ca'")
    name = _text(obj, "municipality_name", limit=200, required=False)
    state = obj.get("state")
    if state is not None and (not isinstance(state, str) or not STATE_RE.match(state.upper())):
        raise RowError(f"'state' must be a two-letter code, not {state!r:.20}")
    return subdomain, name or None, state.upper() if isinstance(state, str) else None


def parse_row(obj: object, defaults: RowDefaults) -> PageRow:
    """Validate one decoded JSON value as a page row; raises :class:`RowError` saying what is wrong."""
    if not isinstance(obj, dict):
        raise RowError(f"expected a JSON object, got {type(obj).__name__}")
    page_id = _text(obj, "id", limit=MAX_ID_CHARS)
    meeting = _text(obj, "meeting", limit=MAX_MEETING_CHARS)
    assert page_id is not None and meeting is not None  # required=True never returns None
    if not page_id:
        raise RowError("'id' is empty")
    if not meeting.strip():
        raise RowError("'meeting' is empty")
    kind = obj.get("kind")
    document_type = document_type_of(kind) if kind is not None else defaults.document_type
    if document_type is None:
        if kind is not None:
            raise RowError(f"'kind' must be 'agenda' or 'minutes', not {kind!r:.40}")
        raise RowError("no document type: give 'kind' on the row, a type for the run, or a file name with it")
    subdomain, name, state = _municipality(obj, defaults)
    return PageRow(
        subdomain=subdomain,
        page_id=page_id,
        meeting=meeting,
        date=_date(obj.get("date")),
        page=_page_number(obj.get("page")),
        text=_page_text(obj.get("text")),
        page_image=_text(obj, "page_image", limit=MAX_TEXT_BYTES, required=False),
        document_type=document_type,
        municipality_name=name,
        state=state,
    )
