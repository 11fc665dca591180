"""The document view: ``/documents/<documentId>``, one page of a meeting document, rendered on the server.

The page is a shareable URL: ``?q=`` marks the searched words (``<mark>``) and, without ``?page=``, opens at
the first matching page; ``?page=N`` shows page N; ``?r=`` carries the query string of the results the reader
came from, so "Back to results" restores exactly that search. An unknown or malformed id is a 404 page.

The data comes from the gateway's own ``/graphql`` endpoint, called in-process as an ASGI sub-request on behalf
of the reader: the view is a client of the public API like the search page, so it is admitted, rate-limited,
cached and counted exactly as any other read, and it adds no second path to the database. The marked text is
``MeetingPage.highlightedText``: the server HTML-escapes the whole text and adds only ``<mark>`` tags; every
other value is escaped by the templates (Jinja2 autoescape).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import ASGIApp, Message, Scope

from gateway.web import PAGE_HEADERS
from schema import ids
from schema.errors import BadUserInput

TEMPLATES = Path(__file__).resolve().parent / "templates"

#: The one operation the view sends (twice when it must first find the first matching page).
VIEW_QUERY = """
query DocumentView($id: ID!, $q: String!, $withQuery: Boolean!, $number: Int!, $withPage: Boolean!) {
  node(id: $id) {
    __typename
    ... on MeetingDocument {
      id
      meetingName
      meetingDate
      documentType
      municipality { subdomain name state }
      pageNumbers
      matchingPageNumbers(query: $q) @include(if: $withQuery)
      page(number: $number) @include(if: $withPage) {
        id
        pageNumber
        pageImage
        text @skip(if: $withQuery)
        highlightedText(query: $q) @include(if: $withQuery)
      }
    }
  }
}
"""

MAX_QUERY_LENGTH = 500
MAX_RESULTS_STATE = 4000
_SUBDOMAIN_RE = re.compile(r"^[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?$")

_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


class ViewError(Exception):
    """The view cannot be shown: an HTTP status and what to tell the reader."""

    def __init__(self, status: int, title: str, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.headers = headers or {}


def meeting_title(name: str) -> str:
    """"ZoningBoardOfAppeals" -> "Zoning Board Of Appeals", "ZBAHearing" -> "ZBA Hearing" (as format.js)."""
    spaced = re.sub(r"([a-z\d])([A-Z])", r"\1 \2", name)
    return re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", spaced).strip()


def page_image_url(page_image: str | None, subdomain: str) -> str | None:
    """A safe http(s) link to the source's scan of the page, or None (as format.js's pageImageUrl)."""
    if not page_image:
        return None
    if re.match(r"^https?://", page_image, flags=re.I):
        candidate = page_image
    elif page_image.startswith("/") and not page_image.startswith("//") and _SUBDOMAIN_RE.match(subdomain):
        candidate = f"https://{subdomain}.civic.band{page_image}"
    else:
        return None
    parts = urlsplit(candidate)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c in candidate for c in "\r\n\t "):
        return None
    return candidate


def marked_html(value: str) -> Markup | str:
    """``highlightedText`` as markup when it is what the contract says (escaped text, bare ``<mark>`` tags
    only); anything else stays text, so a broken server could never inject markup into the page."""
    bare = value.replace("<mark>", "").replace("</mark>", "")
    if "<" in bare or ">" in bare or re.search(r"&(?!(?:amp|lt|gt|quot|#x27|#39);)", bare):
        return value  # autoescaped: shown as text
    return Markup(value)  # noqa: S704 - checked above: escaped text and <mark> tags, nothing else


def _format_date(iso: str) -> str:
    day = dt.date.fromisoformat(iso)
    return f"{day:%B} {day.day}, {day.year}"


@dataclasses.dataclass(frozen=True)
class ViewRequest:
    """What the URL asks for, validated."""

    document_id: str
    query: str
    number: int | None
    results: str  # the results' query string ("?q=..."), or ""

    @classmethod
    def from_request(cls, request: Request) -> ViewRequest:
        document_id = request.path_params["document_id"]
        try:
            kind, key = ids.decode(document_id)
            if kind != "MeetingDocument":
                raise BadUserInput("not a document id")
            ids.int_key(key)
        except BadUserInput:
            raise ViewError(404, "Document not found", "This address does not name a meeting document.") from None
        params = request.query_params
        query = " ".join(params.get("q", "").split())
        if len(query) > MAX_QUERY_LENGTH:
            raise ViewError(400, "Search too long", f"The search is longer than {MAX_QUERY_LENGTH} characters.")
        number = None
        raw_page = params.get("page", "").strip()
        if raw_page:
            if not raw_page.isdigit() or len(raw_page) > 6:
                raise ViewError(404, "Page not found", "Page numbers are whole numbers, such as 1 or 12.")
            number = int(raw_page)
        results = params.get("r", "")
        # Only a query string of the search page: the link it becomes is "/" + it, always this site's own.
        if not results.startswith("?") or len(results) > MAX_RESULTS_STATE or re.search(r"[\s\\]", results):
            results = ""
        return cls(document_id=document_id, query=query, number=number, results=results)

    def link(self, number: int | None = None) -> str:
        """This view's URL for another page of the same document (same search, same way back)."""
        params: dict[str, str] = {}
        if self.query:
            params["q"] = self.query
        if number is not None:
            params["page"] = str(number)
        if self.results:
            params["r"] = self.results
        encoded = urlencode(params)
        return f"/documents/{self.document_id}" + (f"?{encoded}" if encoded else "")

    def back(self) -> tuple[str, str]:
        """Where "back" goes, and its label."""
        if self.results:
            return "/" + self.results, "Back to results"
        if self.query:
            return "/?" + urlencode({"q": self.query}), "Search all meetings for these words"
        return "/", "Search meeting records"


async def graphql(endpoint: ASGIApp, scope: Scope, variables: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """POST the view's operation to the /graphql endpoint in-process, on behalf of the request in ``scope``."""
    body = orjson.dumps({"query": VIEW_QUERY, "variables": variables, "operationName": "DocumentView"})
    keep = {b"x-forwarded-for", b"user-agent", b"traceparent", b"tracestate", b"x-consistency-token",
            b"x-max-staleness-ms"}
    headers = [(k, v) for k, v in scope.get("headers", []) if k in keep]
    headers += [
        (b"content-type", b"application/json"),
        (b"accept", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    inner: Scope = {
        "type": "http",
        "asgi": scope.get("asgi", {"version": "3.0"}),
        "http_version": scope.get("http_version", "1.1"),
        "method": "POST",
        "scheme": scope.get("scheme", "http"),
        "path": "/graphql",
        "raw_path": b"/graphql",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": scope.get("client"),
        "server": scope.get("server"),
        "gateway.trace_id": scope.get("gateway.trace_id"),
    }
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    status = 500
    chunks: list[bytes] = []

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await endpoint(inner, receive, send)
    try:
        reply: dict[str, Any] = orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError:
        reply = {}
    return status, reply


def _failure(status: int, reply: dict[str, Any]) -> ViewError:
    codes = {str((e.get("extensions") or {}).get("code")) for e in reply.get("errors") or []}
    if "RATE_LIMITED" in codes or status == 429:
        return ViewError(
            429, "Too many requests", "Too many pages in a short time. Wait a moment and try again.",
            headers={"Retry-After": "10"},
        )
    if "BAD_USER_INPUT" in codes:
        return ViewError(400, "Check the address", "This address asks for something the records cannot show.")
    return ViewError(
        503, "Temporarily unavailable", "The meeting records cannot be read right now. Try again in a moment.",
        headers={"Retry-After": "5"},
    )


async def _fetch(request: Request, view: ViewRequest, number: int | None) -> dict[str, Any]:
    endpoint: ASGIApp | None = getattr(request.app.state, "graphql_endpoint", None)
    if endpoint is None:
        raise ViewError(503, "Temporarily unavailable", "The document view is not connected to the records.")
    variables = {
        "id": view.document_id,
        "q": view.query or "-",
        "withQuery": bool(view.query),
        "number": number or 0,
        "withPage": number is not None,
    }
    status, reply = await graphql(endpoint, request.scope, variables)
    if reply.get("errors") or not isinstance(reply.get("data"), dict):
        raise _failure(status, reply)
    node = reply["data"].get("node")
    if not node or node.get("__typename") != "MeetingDocument":
        raise ViewError(404, "Document not found", "There is no meeting document with this address.")
    result: dict[str, Any] = node
    return result


def _context(view: ViewRequest, doc: dict[str, Any]) -> dict[str, Any]:
    numbers: list[int] = doc["pageNumbers"]
    matching: list[int] = doc.get("matchingPageNumbers") or []
    page = doc["page"]
    number = page["pageNumber"]
    at = numbers.index(number) if number in numbers else 0
    previous = numbers[at - 1] if at > 0 else None
    following = numbers[at + 1] if at + 1 < len(numbers) else None
    next_match = next((n for n in matching if n > number), None)
    previous_match = next((n for n in reversed(matching) if n < number), None)
    town = doc["municipality"]
    text = marked_html(page.get("highlightedText") or "") if view.query else str(page.get("text") or "")
    back_href, back_label = view.back()
    title = meeting_title(doc["meetingName"])
    return {
        "title": title,
        "town": f"{town['name']}, {town['state']}",
        "date_iso": doc["meetingDate"],
        "date_text": _format_date(doc["meetingDate"]),
        "kind": "Minutes" if doc["documentType"] == "MINUTES" else "Agenda",
        "query": view.query,
        "number": number,
        "position": at + 1,
        "page_count": len(numbers),
        "previous": view.link(previous) if previous is not None else None,
        "previous_number": previous,
        "next": view.link(following) if following is not None else None,
        "next_number": following,
        "next_match": view.link(next_match) if next_match is not None else None,
        "previous_match": view.link(previous_match) if previous_match is not None else None,
        "matches": [{"number": n, "href": view.link(n), "current": n == number} for n in matching],
        "page_has_match": number in matching,
        "image": page_image_url(page.get("pageImage"), town["subdomain"]),
        "text": text,
        "back_href": back_href,
        "back_label": back_label,
        "page_title": f"{title}, {town['name']}, page {number} · Civic search",
    }


def render(template: str, status: int = 200, headers: dict[str, str] | None = None, **values: Any) -> Response:
    html = _env.get_template(template).render(**values)
    return HTMLResponse(html, status_code=status, headers={**PAGE_HEADERS, **(headers or {})})


async def document_page(request: Request) -> Response:
    """GET /documents/<documentId>: the view, or a not-found (404) or failure page that says what to do."""
    try:
        view = ViewRequest.from_request(request)
        number = view.number
        doc = await _fetch(request, view, number)
        if number is None:
            # Open at the first matching page (or the first page): a second, equally cached, request.
            numbers = doc.get("matchingPageNumbers") or doc["pageNumbers"]
            if not numbers:
                raise ViewError(404, "Document has no pages", "This meeting document has no pages of text yet.")
            number = numbers[0]
            doc = await _fetch(request, view, number)
        if doc.get("page") is None:
            raise ViewError(
                404, "Page not found", f"This document has no page {number}.",
            )
        return render("document.html", **_context(view, doc))
    except ViewError as exc:
        return render(
            "problem.html",
            status=exc.status,
            headers=exc.headers,
            title=exc.title,
            detail=exc.detail,
            page_title=f"{exc.title} · Civic search",
            home=(f"/documents/{request.path_params['document_id']}" if exc.title == "Page not found" else None),
        )
