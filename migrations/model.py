"""Values the SQL schema defines that Python code must agree with, written down once."""

from __future__ import annotations

from typing import Literal

#: The ``public.document_type`` enum (migration 0002).
DocumentType = Literal["agenda", "minutes"]
DOCUMENT_TYPES: tuple[DocumentType, ...] = ("agenda", "minutes")
