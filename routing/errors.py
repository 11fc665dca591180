"""What the routing layer raises, and how it describes a failure without leaking secrets.

Callers catch :class:`RoutingError` for "the database tier cannot serve this right now" and let everything
else (a syntax error, a statement timeout, a constraint violation) reach them unchanged as psycopg errors:
those are the query's fault, not the topology's, and retrying them elsewhere would not help.
"""

from __future__ import annotations

import re

__all__ = [
    "InvalidTokenError",
    "NoPrimaryError",
    "NoReplicaError",
    "OverloadedError",
    "RoutingError",
    "UnavailableError",
    "describe",
    "redact",
]


class RoutingError(RuntimeError):
    """The database tier cannot serve the call; the message says which nodes were tried and why."""


class NoPrimaryError(RoutingError):
    """No writable primary is known, so the write was not sent anywhere."""


class UnavailableError(RoutingError):
    """No node can serve the call now (a read with every eligible node down, or a write that failed midway)."""


class OverloadedError(UnavailableError):
    """Every eligible node's pool already had as many calls waiting as it allows: nothing was sent, retry soon."""


# The name the issue uses for "no node can serve a read"; one class, so callers may catch either.
NoReplicaError = UnavailableError


class InvalidTokenError(ValueError):
    """A consistency token that this gateway did not issue (malformed, truncated or of an unknown version).

    A ``ValueError`` rather than a :class:`RoutingError`: it is the client's mistake (HTTP 400), not an outage.
    """


# password=secret, password='se cret' (libpq key/value form) and user:secret@host (URI form).
_PASSWORD_KV = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_PASSWORD_URI = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


def redact(text: str) -> str:
    """Remove passwords from a DSN or from a message that may quote one, so it can be logged."""
    return _PASSWORD_URI.sub(r"\1***@", _PASSWORD_KV.sub(r"\1***", text))


def describe(exc: BaseException) -> str:
    """One redacted line for logs and error messages: the first line of the message, else the type."""
    lines = str(exc).strip().splitlines()
    return redact(lines[0].strip()) if lines else type(exc).__name__
