"""Client-facing errors. Each carries the ``extensions.code`` of the public contract."""

from __future__ import annotations

from typing import Any

from graphql import GraphQLError

BAD_USER_INPUT = "BAD_USER_INPUT"
UNAUTHENTICATED = "UNAUTHENTICATED"
FORBIDDEN = "FORBIDDEN"
RATE_LIMITED = "RATE_LIMITED"
TIMEOUT = "TIMEOUT"
UNAVAILABLE = "UNAVAILABLE"
OVERLOADED = "OVERLOADED"
INTERNAL = "INTERNAL_SERVER_ERROR"


class ClientError(GraphQLError):
    """An error whose message is safe to show to the client, with its contract code."""

    code = INTERNAL

    def __init__(self, message: str, **extensions: Any) -> None:
        super().__init__(message, extensions={"code": self.code, **extensions})


class BadUserInput(ClientError):
    code = BAD_USER_INPUT


class Unauthenticated(ClientError):
    code = UNAUTHENTICATED


class Forbidden(ClientError):
    code = FORBIDDEN


class Timeout(ClientError):
    code = TIMEOUT


class Unavailable(ClientError):
    code = UNAVAILABLE


class Overloaded(ClientError):
    """The gateway or its databases are at capacity: answered at once (HTTP 503 with Retry-After)."""

    code = OVERLOADED


def client_code(error: GraphQLError) -> str | None:
    """The contract code of an error a client may see as it is, or None for an unexpected failure.

    GraphQL syntax and validation errors (no original exception) are the client's: BAD_USER_INPUT.
    """
    original = error.original_error
    if isinstance(original, ClientError):
        return str(original.extensions.get("code", INTERNAL)) if original.extensions else INTERNAL
    if isinstance(error, ClientError):
        return str((error.extensions or {}).get("code", INTERNAL))
    if original is None or not error.path:
        # No original exception, or none raised while resolving a field: parse, validation and variable
        # coercion errors (a bad Date, a wrong type), all caused by the request itself.
        return str((error.extensions or {}).get("code", BAD_USER_INPUT))
    return None
