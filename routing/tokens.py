"""Read-your-writes tokens: the WAL position of a write, signed, handed to the client and sent back on reads.

A token is opaque to clients and versioned: ``v2.`` + unpadded base64url of the LSN (8 big-endian bytes)
followed by the first 16 bytes of an HMAC-SHA256 of those 8 bytes under the gateway's secret. A token the
gateway did not issue cannot name a position: a forged far-future LSN would otherwise make every read wait for
a replay that never comes and then fall back to the primary. Decoding accepts exactly the strings encoding
produces under the same key; anything else raises :class:`~routing.errors.InvalidTokenError`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re

from routing.errors import InvalidTokenError

__all__ = ["MAX_LSN", "TokenCodec", "decode_token", "encode_token"]

MAX_LSN = 2**64 - 1  # pg_lsn is an unsigned 64-bit position
_PREFIX = "v2."
_MAC_BYTES = 16
# 24 bytes are exactly 32 base64 characters: no padding, no spare bits, one spelling per token. Checking the
# alphabet here matters because the base64 module silently skips characters outside it.
_V2 = re.compile(r"v2\.[A-Za-z0-9_-]{32}", re.ASCII)


class TokenCodec:
    """Encodes and checks tokens under one key (every worker and instance of a deployment shares it)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a token key has at least 16 bytes")
        self._key = key

    def _mac(self, raw: bytes) -> bytes:
        return hmac.new(self._key, raw, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, lsn: int) -> str:
        """The token for a WAL position (as returned by ``Router.write``)."""
        if isinstance(lsn, bool) or not isinstance(lsn, int) or not 0 <= lsn <= MAX_LSN:
            raise ValueError(f"an LSN is an integer from 0 to {MAX_LSN}, got {lsn!r}")
        raw = lsn.to_bytes(8, "big")
        return _PREFIX + base64.urlsafe_b64encode(raw + self._mac(raw)).decode("ascii")

    def decode(self, token: str) -> int:
        """The WAL position a token carries; ``InvalidTokenError`` for anything this key did not sign."""
        if not isinstance(token, str) or _V2.fullmatch(token) is None:
            raise InvalidTokenError("malformed consistency token") from None
        try:
            blob = base64.urlsafe_b64decode(token[len(_PREFIX) :])
        except (binascii.Error, ValueError):  # unreachable after the pattern check; kept as the contract's guard
            raise InvalidTokenError("malformed consistency token") from None
        raw, mac = blob[:8], blob[8:]
        if not hmac.compare_digest(mac, self._mac(raw)):
            raise InvalidTokenError("consistency token not issued by this gateway") from None
        return int.from_bytes(raw, "big")


# Library users without a key of their own (and the routing package's own tests) share this one; the gateway
# always builds a codec from its configured secret.
_DEFAULT = TokenCodec(hashlib.sha256(b"civic routing default token key").digest())


def encode_token(lsn: int) -> str:
    """Encode under the package's default key (see :class:`TokenCodec` for a deployment's own key)."""
    return _DEFAULT.encode(lsn)


def decode_token(token: str) -> int:
    """Decode under the package's default key."""
    return _DEFAULT.decode(token)
