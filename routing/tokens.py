"""Read-your-writes tokens: the WAL position of a write, handed to the client and sent back on reads.

A token is opaque to clients and versioned (``v1.`` + unpadded base64url of the LSN as 8 big-endian bytes), so
the encoding can change later without misreading old tokens. Decoding accepts exactly the strings encoding
produces; anything else, whatever it is, raises :class:`~routing.errors.InvalidTokenError`.
"""

from __future__ import annotations

import base64
import binascii
import re

from routing.errors import InvalidTokenError

__all__ = ["MAX_LSN", "decode_token", "encode_token"]

MAX_LSN = 2**64 - 1  # pg_lsn is an unsigned 64-bit position
_PREFIX = "v1."
# 8 bytes are 11 base64 characters without padding; checking the alphabet here matters because the base64
# module silently skips characters outside it.
_V1 = re.compile(r"v1\.[A-Za-z0-9_-]{11}", re.ASCII)


def encode_token(lsn: int) -> str:
    """Return the token for a WAL position (as returned by ``Router.write``)."""
    if isinstance(lsn, bool) or not isinstance(lsn, int) or not 0 <= lsn <= MAX_LSN:
        raise ValueError(f"an LSN is an integer from 0 to {MAX_LSN}, got {lsn!r}")
    return _PREFIX + base64.urlsafe_b64encode(lsn.to_bytes(8, "big")).rstrip(b"=").decode("ascii")


def decode_token(token: str) -> int:
    """Return the WAL position a token carries; raise ``InvalidTokenError`` for anything else."""
    if not isinstance(token, str) or _V1.fullmatch(token) is None:
        raise InvalidTokenError("malformed consistency token") from None
    try:
        lsn = int.from_bytes(base64.urlsafe_b64decode(token[len(_PREFIX) :] + "="), "big")
    except (binascii.Error, ValueError):  # unreachable after the pattern check; kept as the contract's guard
        raise InvalidTokenError("malformed consistency token") from None
    # The last character carries 2 spare bits; refuse tokens we would not have produced, so each LSN has
    # exactly one token (caches and logs can compare them as strings).
    if encode_token(lsn) != token:
        raise InvalidTokenError("malformed consistency token") from None
    return lsn
