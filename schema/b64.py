"""Unpadded base64url, the one encoding of everything opaque the API hands out (global ids, cursors)."""

from __future__ import annotations

import base64


def encode(data: bytes) -> str:
    """Unpadded base64url text of ``data``."""
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def decode(text: str) -> bytes:
    """The bytes of unpadded base64url ``text``; raises ``binascii.Error``/``ValueError`` when malformed."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
