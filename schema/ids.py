"""Global object ids for Relay's Node interface.

An id is ``base64url("<Type>:<key>")``. A page's key carries its partition key (``meeting_date``) next to its
source id, so ``node(id:)`` reads exactly one partition.
"""

from __future__ import annotations

import binascii
import datetime as dt
from typing import Literal

from schema import b64
from schema.errors import BadUserInput

TypeName = Literal["Municipality", "MeetingDocument", "MeetingPage"]
_TYPES: tuple[TypeName, ...] = ("Municipality", "MeetingDocument", "MeetingPage")


def encode(type_name: TypeName, key: str) -> str:
    return b64.encode(f"{type_name}:{key}".encode())


def decode(global_id: str) -> tuple[TypeName, str]:
    """Split a global id into its type and key; anything malformed is BAD_USER_INPUT."""
    try:
        raw = b64.decode(global_id).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadUserInput("invalid id") from None
    type_name, _, key = raw.partition(":")
    for known in _TYPES:
        if type_name == known and key:
            return known, key
    raise BadUserInput("invalid id")


def int_key(key: str) -> int:
    if not key.isdigit() or len(key) > 18:
        raise BadUserInput("invalid id")
    return int(key)


def page_key(meeting_date: dt.date, source_id: str) -> str:
    return f"{meeting_date.isoformat()}:{source_id}"


def split_page_key(key: str) -> tuple[dt.date, str]:
    day, _, source_id = key.partition(":")
    try:
        return dt.date.fromisoformat(day), source_id
    except ValueError:
        raise BadUserInput("invalid id") from None
