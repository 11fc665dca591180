"""Reading a GraphQL-over-HTTP request: POST with a JSON body, or GET with query parameters.

Everything here is client input. Every way a request can be malformed (bytes that are not UTF-8, JSON that is
not an object, a scalar where an object belongs, nesting past the decoder's depth limit, numbers no JSON
number type holds) ends in :class:`RequestError`, which the endpoint answers with a GraphQL-shaped JSON error
and a 4xx status, never a 500.
"""

from __future__ import annotations

import dataclasses
import hashlib
import urllib.parse
from typing import Any

import orjson

JSON_TYPES = ("application/json", "application/graphql-response+json")


class RequestError(Exception):
    """A request the gateway cannot read; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, *, status: int = 400, code: str = "BAD_USER_INPUT") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


@dataclasses.dataclass(slots=True)
class GraphQLRequest:
    """One GraphQL request as the client sent it (after APQ, ``query`` may be filled in from the store)."""

    query: str | None
    variables: dict[str, Any]
    operation_name: str | None
    extensions: dict[str, Any]
    method: str

    def document_key(self) -> str:
        """The SHA-256 of the document text: the key of the parsed-document cache and of APQ."""
        return hashlib.sha256((self.query or "").encode("utf-8", "surrogatepass")).hexdigest()


def _loads(raw: bytes | str, what: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # orjson's message names the position, never echoes the input back at length.
        raise RequestError(f"{what} is not valid JSON: {str(exc)[:200]}") from None


def _object(payload: dict[str, Any], name: str) -> dict[str, Any]:
    """An optional JSON-object member: absent or null is empty, anything but an object is refused."""
    value = payload.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RequestError(f"'{name}' must be a JSON object")
    return value


def _from_mapping(payload: Any, method: str) -> GraphQLRequest:
    if not isinstance(payload, dict):
        raise RequestError("the request body must be a JSON object with a 'query' string")
    query = payload.get("query")
    if query is not None and not isinstance(query, str):
        raise RequestError("'query' must be a string")
    variables = _object(payload, "variables")
    operation_name = payload.get("operationName")
    if operation_name is not None and not isinstance(operation_name, str):
        raise RequestError("'operationName' must be a string")
    return GraphQLRequest(
        query=query,
        variables=variables,
        operation_name=operation_name or None,
        extensions=_object(payload, "extensions"),
        method=method,
    )


def from_post(content_type: str, body: bytes) -> GraphQLRequest:
    """A POST request: a JSON body (``application/json``; charset utf-8 is the only one accepted)."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media not in JSON_TYPES:
        raise RequestError(
            f"unsupported content type {media[:80]!r}: send application/json", status=415
        )
    params = content_type.lower().partition(";")[2]
    if "charset=" in params and "charset=utf-8" not in params.replace(" ", ""):
        raise RequestError("only the utf-8 charset is accepted", status=415)
    if not body:
        raise RequestError("the request body is empty: send a JSON object with a 'query' string")
    return _from_mapping(_loads(body, "the request body"), "POST")


def from_get(query_string: bytes) -> GraphQLRequest:
    """A GET request: ``query``, ``variables`` and ``extensions`` (JSON) and ``operationName`` parameters."""
    try:
        pairs = urllib.parse.parse_qsl(query_string.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise RequestError("the query string is not valid UTF-8") from None
    params: dict[str, str] = {}
    for key, value in pairs:
        if key in params:
            raise RequestError(f"the parameter {key[:40]!r} is given twice")
        params[key] = value
    payload: dict[str, Any] = {"query": params.get("query"), "operationName": params.get("operationName")}
    for name in ("variables", "extensions"):
        raw = params.get(name)
        if raw:
            payload[name] = _loads(raw, f"the '{name}' parameter")
    return _from_mapping(payload, "GET")


def encode(value: Any) -> bytes:
    """JSON bytes for a response body (orjson: several times faster than the standard library here)."""
    return orjson.dumps(value)
