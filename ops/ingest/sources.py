"""The two sources of page rows: JSONL files, and a civic.band-style Datasette JSON API.

Each source yields :class:`Chunk` s: a run of validated rows, the rows it had to skip, and the position just
past the chunk, which is what the checkpoint records once the chunk is committed.

**JSONL** (one JSON object per line, UTF-8; the fields are described in :mod:`ops.ingest.records`)::

    {"subdomain": "alameda.ca", "kind": "agenda", "id": "a1b2", "meeting": "CityCouncil",
     "date": "2024-03-05", "page": 1, "text": "CALL TO ORDER ...", "page_image": "/_agendas/.../1.png"}

Blank lines are ignored. A line that is not valid JSON, or whose object breaks a rule, is skipped and reported
as ``path:line``. The position is a line number and a byte offset, so a resumed run seeks straight to it.

**Datasette**: ``GET {base}/meetings/agendas.json`` (and ``minutes.json``) with ``_size``, ``_next`` and, for
an incremental run, ``date__gte``. Rows come as objects or as arrays beside ``columns`` (Datasette's default
shape before 1.0), and ``next`` is the token of the following page or null. The position is that token.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Protocol

import httpx

from ops.ingest.checkpoint import Position
from ops.ingest.records import BadRow, DocumentType, PageRow, RowDefaults, RowError, parse_row

# A line holds at most 1 MiB of text, but JSON escapes can make it up to six times longer ("\u00e9").
MAX_LINE_BYTES = 8 * 1024 * 1024


class SourceError(RuntimeError):
    """A source cannot be read at all (not a bad row: the run stops; the message says what to do)."""


@dataclasses.dataclass
class Chunk:
    """Rows read from one source in one go, and the source's position just after them."""

    source: str
    rows: list[PageRow]
    where: list[str]  # each row's position (file:line, endpoint _next=token row i), for later reports
    bad: list[BadRow]
    read: int  # records read, bad ones included
    position: Position
    bytes: int = 0  # bytes of input consumed (JSONL; 0 for Datasette), to estimate the total


class Source(Protocol):
    """What the loader needs of a source."""

    @property
    def key(self) -> str:
        """The source's name in the checkpoint and in reports."""
        ...

    def chunks(self, batch_size: int, start: Position | None) -> Iterator[Chunk]:
        """Chunks of at most ``batch_size`` records from ``start`` (None: the beginning) to the end."""
        ...

    def remaining(self, bytes_per_record: float | None) -> float | None:
        """About how many records are still to be read, when the source can tell."""
        ...


# --- JSONL --------------------------------------------------------------------------------------------------


class JsonlSource:
    """One JSONL file of page rows; ``defaults`` supply a subdomain or type the lines leave out."""

    def __init__(self, path: Path, defaults: RowDefaults) -> None:
        self.path = path.resolve()
        self.defaults = defaults
        self._offset = 0
        self._size = 0

    @property
    def key(self) -> str:
        return str(self.path)

    def remaining(self, bytes_per_record: float | None) -> float | None:
        left = max(0, (self._size or self._stat_size()) - self._offset)
        return left / bytes_per_record if bytes_per_record else None

    def _stat_size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def chunks(self, batch_size: int, start: Position | None) -> Iterator[Chunk]:
        line_no = int(start.get("line", 0)) if start else 0
        offset = int(start.get("offset", 0)) if start else 0
        if start and start.get("done"):
            self._offset = self._size = self._stat_size()
            return
        try:
            handle = self.path.open("rb")
        except OSError as exc:
            raise SourceError(f"cannot open {self.path}: {exc.strerror}") from None
        with handle:
            self._size = self._stat_size()
            if offset > self._size:
                raise SourceError(
                    f"{self.path} is shorter ({self._size:,} bytes) than its checkpoint ({offset:,}): "
                    "it was replaced; run without --resume to start over"
                )
            handle.seek(offset)
            self._offset = offset
            while True:
                rows: list[PageRow] = []
                where: list[str] = []
                bad: list[BadRow] = []
                read = 0
                began = offset
                eof = False
                while read < batch_size:
                    line, size = _read_line(handle)
                    if not size:
                        eof = True
                        break
                    line_no += 1
                    offset += size
                    if line is None:
                        read += 1
                        bad.append(
                            BadRow(f"{self.path}:{line_no}", f"line longer than {MAX_LINE_BYTES:,} bytes")
                        )
                        continue
                    if not line.strip():
                        continue
                    read += 1
                    try:
                        rows.append(parse_row(json.loads(line), self.defaults))
                        where.append(f"{self.path}:{line_no}")
                    except RowError as exc:
                        bad.append(BadRow(f"{self.path}:{line_no}", str(exc)))
                    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
                        bad.append(BadRow(f"{self.path}:{line_no}", f"invalid JSON: {exc}"))
                    except RecursionError:
                        bad.append(BadRow(f"{self.path}:{line_no}", "invalid JSON: nested too deeply"))
                self._offset = offset
                position = {"line": line_no, "offset": offset, "done": eof}
                yield Chunk(self.key, rows, where, bad, read, position, bytes=offset - began)
                if eof:
                    return


def _read_line(handle: IO[bytes]) -> tuple[bytes | None, int]:
    """The next line and its size in bytes; (None, size) for a line too long to keep; (b"", 0) at the end."""
    line = handle.readline(MAX_LINE_BYTES + 1)
    if len(line) <= MAX_LINE_BYTES or line.endswith(b"\n"):
        return line, len(line)
    size = len(line)
    while line and not line.endswith(b"\n"):  # skip the rest of the overlong line without keeping it
        line = handle.readline(1024 * 1024)
        size += len(line)
    return None, size


class Retry:
    """How often and how patiently a Datasette request is retried (class constants: tests patch them)."""

    ATTEMPTS = 4
    BACKOFF_S = 0.5  # doubled after each failed attempt
    RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclasses.dataclass(frozen=True)
class Reply:
    """One decoded Datasette table page."""

    rows: list[Mapping[str, Any] | None]  # None: a row that is neither an object nor an array of columns
    next: str | None
    count: int | None


def parse_reply(data: object) -> Reply:
    """Decode a Datasette table reply, whether rows are objects or arrays beside ``columns``."""
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise SourceError("the reply is not a Datasette table page (no 'rows' list)")
    columns = data.get("columns")
    rows: list[Mapping[str, Any] | None] = []
    for row in data["rows"]:
        if isinstance(row, dict):
            rows.append(row)
        elif isinstance(row, list) and isinstance(columns, list) and len(columns) == len(row):
            rows.append(dict(zip((str(c) for c in columns), row, strict=True)))
        else:
            rows.append(None)
    token = data.get("next")
    count = data.get("filtered_table_rows_count", data.get("count"))
    return Reply(
        rows,
        None if token is None or token == "" else str(token),
        count if isinstance(count, int) and not isinstance(count, bool) else None,
    )


class DatasetteSource:
    """One table (``agendas`` or ``minutes``) of one municipality's Datasette ``meetings`` database."""

    def __init__(
        self,
        client: httpx.Client,
        base_url: str,
        document_type: DocumentType,
        subdomain: str,
        *,
        since: dt.date | None = None,
        page_size: int = 1000,
    ) -> None:
        table = "agendas" if document_type == "agenda" else "minutes"
        self.client = client
        self.url = f"{base_url.rstrip('/')}/meetings/{table}.json"
        self.defaults = RowDefaults(subdomain=subdomain, document_type=document_type)
        self.since = since
        self.page_size = page_size
        self._count: int | None = None
        self._read = 0

    @property
    def key(self) -> str:
        return self.url

    def remaining(self, bytes_per_record: float | None) -> float | None:
        return None if self._count is None else max(0, self._count - self._read)

    def _get(self, params: dict[str, str]) -> object:
        delay = Retry.BACKOFF_S
        for attempt in range(1, Retry.ATTEMPTS + 1):
            problem: str
            try:
                resp = self.client.get(self.url, params=params)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code == 200:
                    try:
                        return resp.json()
                    except ValueError:
                        raise SourceError(f"{resp.url} did not answer JSON") from None
                if resp.status_code not in Retry.RETRY_STATUS:
                    raise SourceError(f"{resp.url} answered HTTP {resp.status_code}")
                problem = f"HTTP {resp.status_code}"
            if attempt == Retry.ATTEMPTS:
                raise SourceError(
                    f"{self.url} failed {attempt} times, last with {problem}; resume with --resume"
                )
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def chunks(self, batch_size: int, start: Position | None) -> Iterator[Chunk]:
        # batch_size does not apply: a chunk is one reply of page_size rows, the unit _next can resume at.
        if start and start.get("done"):
            return
        token = start.get("next") if start else None
        if start is not None and "since" in start:
            # The token only means something under the filter it was issued for, so the checkpoint's wins.
            self.since = dt.date.fromisoformat(str(start["since"])) if start["since"] else None
        self._read = int(start.get("rows", 0)) if start else 0
        first = True
        while True:
            # No facets or facet suggestions: Datasette would run extra queries for every page.
            params = {"_size": str(self.page_size), "_nofacet": "1", "_nosuggest": "1"}
            if token is not None:
                params["_next"] = str(token)
            if self.since is not None:
                params["date__gte"] = self.since.isoformat()
            # Count once (for the progress bar's ETA), then spare the server its COUNT(*) on every page.
            params.update({"_extra": "count"} if first else {"_nocount": "1"})
            reply = parse_reply(self._get(params))
            if first and reply.count is not None:
                self._count = reply.count
            first = False
            page_at = f"{self.url} _next={token or '(start)'}"
            rows: list[PageRow] = []
            where: list[str] = []
            bad: list[BadRow] = []
            for index, obj in enumerate(reply.rows):
                try:
                    if obj is None:
                        raise RowError("row is neither an object nor an array matching 'columns'")
                    rows.append(parse_row(obj, self.defaults))
                    where.append(f"{page_at} row {index}")
                except RowError as exc:
                    bad.append(BadRow(f"{page_at} row {index}", str(exc)))
            self._read += len(reply.rows)
            position = {
                "next": reply.next,
                "since": self.since.isoformat() if self.since else None,
                "rows": self._read,
                "done": reply.next is None,
            }
            yield Chunk(self.key, rows, where, bad, len(reply.rows), position)
            if reply.next is None:
                return
            if reply.next == token:
                raise SourceError(f"{self.url} returned the same _next token {token!r} twice")
            token = reply.next
