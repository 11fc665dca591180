"""Opaque, versioned, signed keyset cursors.

A cursor holds the sort key of one row (never an offset) and a fingerprint of the search that produced it
(query, filter, order and the connection it belongs to), signed with HMAC-SHA256 under the server's secret.
A cursor from another search, or a forged, truncated or stale-version one, is BAD_USER_INPUT.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
from typing import Any

from schema import b64
from schema.errors import BadUserInput

VERSION = 1
_SIG_BYTES = 16
MAX_CURSOR_LENGTH = 1024


_b64 = b64.encode
_unb64 = b64.decode


def fingerprint(*parts: Any) -> str:
    """A short stable hash of what a cursor is bound to."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class CursorCodec:
    """Signs and verifies cursors with one secret key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_SIG_BYTES]

    def encode(self, bound_to: str, key: list[Any], *, page: int = 0) -> str:
        """A cursor for the row with sort ``key``, on result page number ``page`` (0 = first page)."""
        payload = json.dumps([VERSION, bound_to, key, page], separators=(",", ":")).encode()
        return f"{_b64(payload)}.{_b64(self._sign(payload))}"

    def decode(self, cursor: str, bound_to: str) -> list[Any]:
        """The sort key stored in ``cursor``, after checking its signature, version and binding."""
        return self.decode_with_page(cursor, bound_to)[0]

    def decode_with_page(self, cursor: str, bound_to: str) -> tuple[list[Any], int]:
        """The sort key and the result page number stored in ``cursor``."""
        if len(cursor) > MAX_CURSOR_LENGTH or cursor.count(".") != 1:
            raise BadUserInput("invalid cursor")
        body, _, sig = cursor.partition(".")
        try:
            payload, signature = _unb64(body), _unb64(sig)
        except (binascii.Error, ValueError):
            raise BadUserInput("invalid cursor") from None
        if not hmac.compare_digest(signature, self._sign(payload)):
            raise BadUserInput("invalid cursor")
        try:
            version, bound, key, page = json.loads(payload)
        except (ValueError, TypeError):
            raise BadUserInput("invalid cursor") from None
        if version != VERSION:
            raise BadUserInput("cursor is from an older version of the API; start the search again")
        if bound != bound_to or not isinstance(key, list) or not isinstance(page, int):
            raise BadUserInput("cursor belongs to a different search, filter or order")
        return key, page
