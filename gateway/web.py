"""The browser side of the gateway: the search page at ``/``, static files, and the GraphiQL playground page.

Everything a browser loads comes from this server. GraphiQL and its React runtime are npm packages installed at
set-up time into ``gateway/static/vendor/node_modules`` (git-ignored); they are served under fixed names from an
allow-list, so the rest of ``node_modules`` is never exposed, and a missing install is a clear 404 instead of a
blank page. No page loads anything from a CDN: each carries a Content-Security-Policy that only allows this
origin.
"""

from __future__ import annotations

import html
import json
import logging
import os
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope

log = logging.getLogger("gateway.web")

STATIC_DIR = Path(__file__).resolve().parent / "static"
VENDOR_DIR = STATIC_DIR / "vendor" / "node_modules"

#: Public name under /static/vendor/ -> file inside node_modules. Only these are served.
VENDOR_ASSETS: dict[str, str] = {
    "react.production.min.js": "react/umd/react.production.min.js",
    "react-dom.production.min.js": "react-dom/umd/react-dom.production.min.js",
    "graphiql.min.js": "graphiql/graphiql.min.js",
    "graphiql.min.css": "graphiql/graphiql.min.css",
}

MISSING_VENDOR_HINT = (
    "The GraphiQL assets are not installed. Run `make setup` "
    "(or `npm ci --prefix gateway/static/vendor`) and reload."
)

#: Only this origin: no CDN, no inline script. GraphiQL sets inline styles, so styles allow 'unsafe-inline'.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'"
)

#: Headers for the HTML pages (the search page; pass them with the GraphiQL page too).
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY + "; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
}

DEFAULT_GRAPHIQL_QUERY = """\
# Civic search gateway: GraphQL playground.
# Run with the play button (or Ctrl-Enter). Query syntax:
# words, "quoted phrases", or, -excluded. Reads are public.
#
# Mutations need a token. In the Headers pane below:
#   {"Authorization": "Bearer <token>"}
# Send a mutation's consistencyToken back to read your
# own write:
#   {"X-Consistency-Token": "<consistencyToken>"}

query Search($after: String) {
  search(
    query: "budget -parking"
    filter: { documentType: MINUTES }
    orderBy: NEWEST
    first: 5
    after: $after
  ) {
    totalCount { value exact }
    pageInfo { hasNextPage endCursor }
    edges {
      cursor
      headline
      node {
        id
        pageNumber
        document {
          meetingName
          meetingDate
          municipality { name state }
        }
      }
    }
  }
}
"""


def missing_vendor_assets() -> list[str]:
    """Vendor files that are not installed (empty when GraphiQL can be served)."""
    return [name for name, rel in VENDOR_ASSETS.items() if not (VENDOR_DIR / rel).is_file()]


class _RevalidatedStaticFiles(StaticFiles):
    """StaticFiles whose responses are revalidated (ETag, 304) so a deploy never leaves stale modules.

    A missing directory (an install without package data) answers 404s instead of failing every request.
    """

    async def check_config(self) -> None:
        try:
            await super().check_config()
        except RuntimeError as exc:  # the directory is missing or not a directory: every file is a 404
            log.warning("static files unavailable: %s", exc)

    def file_response(
        self, full_path: PathLike, stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


async def vendor_asset(request: Request) -> Response:
    """One allow-listed file from node_modules, or a 404 that says how to install it."""
    name = request.path_params["name"]
    rel = VENDOR_ASSETS.get(name)
    if rel is None:
        return PlainTextResponse(f"not a vendor asset: {name}", status_code=404)
    path = VENDOR_DIR / rel
    if not path.is_file():
        return PlainTextResponse(MISSING_VENDOR_HINT, status_code=404)
    return FileResponse(path, headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})


async def search_page(request: Request) -> Response:
    """The search page (a static document; its ES modules talk to /graphql)."""
    if not (STATIC_DIR / "index.html").is_file():
        return PlainTextResponse("the search page is not installed with this package", status_code=404)
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=PAGE_HEADERS)


def web_routes() -> list[BaseRoute]:
    """Routes for the app: ``/``, ``/documents/<id>``, ``/static/vendor/<asset>`` and ``/static/...``.

    Order matters. The document view reads through the app's /graphql endpoint (``app.state.graphql_endpoint``).
    """
    from gateway.document_view import document_page  # it renders with this module's page headers

    return [
        Route("/", search_page, methods=["GET", "HEAD"], name="search_page"),
        Route("/documents/{document_id}", document_page, methods=["GET", "HEAD"], name="document_page"),
        Route("/static/vendor/{name:path}", vendor_asset, methods=["GET", "HEAD"], name="vendor_asset"),
        # check_dir=False: an install without the static files (a wheel built without package data) still starts.
        Mount("/static", app=_RevalidatedStaticFiles(directory=STATIC_DIR, check_dir=False), name="static"),
    ]


def graphiql_html(*, endpoint: str = "/graphql") -> str:
    """The GraphiQL page for a browser GET of /graphql, loading only this server's /static assets.

    When the vendor assets are missing it is a plain page that says how to install them.
    """
    missing = missing_vendor_assets()
    head = (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{html.escape(CONTENT_SECURITY_POLICY)}">\n'
        '<meta name="referrer" content="same-origin">\n'
        '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">\n'
        "<title>GraphiQL · Civic search gateway</title>\n"
    )
    if missing:
        return (
            head
            + '<link rel="stylesheet" href="/static/graphiql.css">\n</head>\n<body class="graphiql-missing">\n'
            + "<main>\n<h1>GraphiQL is not installed</h1>\n"
            + f"<p>{html.escape(MISSING_VENDOR_HINT)}</p>\n"
            + f"<p>Missing: {html.escape(', '.join(missing))}.</p>\n"
            + f"<p>The API itself works: POST GraphQL requests to <code>{html.escape(endpoint)}</code>. "
            + 'The <a href="/">search page</a> does not need these assets.</p>\n'
            + "</main>\n</body>\n</html>\n"
        )
    config = {"endpoint": endpoint, "defaultQuery": DEFAULT_GRAPHIQL_QUERY}
    # JSON in a non-executed script element; "<" is escaped so no text can close the element early.
    config_json = json.dumps(config).replace("<", "\\u003c")
    return (
        head
        + '<link rel="stylesheet" href="/static/vendor/graphiql.min.css">\n'
        + '<link rel="stylesheet" href="/static/graphiql.css">\n'
        + "</head>\n<body>\n"
        + '<div id="graphiql"><p class="graphiql-loading">Loading GraphiQL…</p></div>\n'
        + f'<script type="application/json" id="graphiql-config">{config_json}</script>\n'
        + '<script src="/static/vendor/react.production.min.js"></script>\n'
        + '<script src="/static/vendor/react-dom.production.min.js"></script>\n'
        + '<script src="/static/vendor/graphiql.min.js"></script>\n'
        + '<script src="/static/graphiql-init.js"></script>\n'
        + "</body>\n</html>\n"
    )
