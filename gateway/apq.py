"""Automatic persisted queries (the Apollo APQ protocol), stored in the same cache as search results.

A client first sends only ``extensions.persistedQuery.sha256Hash``. When the hash is known the stored query is
put back into the request; otherwise the answer is the protocol's ``PersistedQueryNotFound`` error and the
client retries with the full query, which is checked against its hash and stored.

This runs as ASGI middleware in front of Strawberry, on POST JSON bodies and on GET query strings, so the
GraphQL view always receives an ordinary request.
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.cache import ResultCache

NOT_FOUND = {"message": "PersistedQueryNotFound", "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"}}


def _persisted_hash(extensions: Any) -> str | None:
    if not isinstance(extensions, dict):
        return None
    pq = extensions.get("persistedQuery")
    if not isinstance(pq, dict) or pq.get("version") != 1:
        return None
    digest = pq.get("sha256Hash")
    if isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest.lower()):
        return digest.lower()
    return None


class PersistedQueries:
    """Resolves and records persisted queries before the GraphQL view sees the request."""

    def __init__(self, app: ASGIApp, *, cache: ResultCache) -> None:
        self.app = app
        self.cache = cache

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") != "/graphql":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "GET":
            await self._get(scope, receive, send)
        elif scope["method"] == "POST":
            await self._post(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _resolve(self, payload: dict[str, Any]) -> JSONResponse | None:
        """Fill in or record the query of one request; a response when the request cannot go on."""
        digest = _persisted_hash(payload.get("extensions"))
        if digest is None:
            return None
        query = payload.get("query")
        if isinstance(query, str) and query:
            if hashlib.sha256(query.encode()).hexdigest() != digest:
                return JSONResponse(
                    {"errors": [{"message": "provided sha does not match query",
                                 "extensions": {"code": "BAD_USER_INPUT"}}]},
                    status_code=400,
                )
            await self.cache.persist_query(digest, query)
            return None
        stored = await self.cache.persisted_query(digest)
        if stored is None:
            return JSONResponse({"errors": [NOT_FOUND]}, status_code=200)
        payload["query"] = stored
        return None

    async def _post(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = None  # let the GraphQL view answer malformed JSON as it always does
        if isinstance(payload, dict) and _persisted_hash(payload.get("extensions")):
            answer = await self._resolve(payload)
            if answer is not None:
                await answer(scope, receive, send)
                return
            body = json.dumps(payload).encode()
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _get(self, scope: Scope, receive: Receive, send: Send) -> None:
        params = dict(urllib.parse.parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        raw_ext = params.get("extensions")
        extensions: Any = None
        if raw_ext:
            try:
                extensions = json.loads(raw_ext)
            except ValueError:
                extensions = None
        if _persisted_hash(extensions) is None:
            await self.app(scope, receive, send)
            return
        payload: dict[str, Any] = {"query": params.get("query"), "extensions": extensions}
        answer = await self._resolve(payload)
        if answer is not None:
            await answer(scope, receive, send)
            return
        params["query"] = str(payload["query"])
        scope = dict(scope)
        scope["query_string"] = urllib.parse.urlencode(params).encode()
        await self.app(scope, receive, send)
