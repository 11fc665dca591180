"""The corpus's records (municipalities, documents, pages, the plan that holds them) and its fixed sizes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

from migrations.model import DocumentType as DocumentType
from ops import stack

FIRST_DATE = dt.date(2005, 1, 1)
LAST_DATE = dt.date(2024, 12, 31)
MUNICIPALITIES = 600
MIN_PAGES_PER_DOCUMENT = 8
MAX_PAGES_PER_DOCUMENT = 32
MODE_PAGES_PER_DOCUMENT = 20  # triangular(8, 32, 20) has mean 20
PAGE_CHARS_MEAN = 2500
PAGE_CHARS_SD = 450
# The vocabulary and its ranking do not depend on the corpus seed, so that benchmark queries written against
# one corpus ("variance", "información") find comparable numbers of hits in every corpus.
VOCABULARY_SEED = 20_050_101
SUBDOMAIN_RE = re.compile(r"^[a-z0-9][a-z0-9.-]*$")


class CorpusError(stack.StackError):
    """The corpus cannot be loaded as asked; the message says what to do."""


@dataclasses.dataclass(frozen=True, slots=True)
class Municipality:
    """One row of ``municipality``."""

    id: int
    subdomain: str
    name: str
    state: str
    kind: str

    @property
    def display_name(self) -> str:
        """How the town titles its own documents ("City of Maplewood", "Kellorton County")."""
        if self.kind in ("county", "township"):
            return self.name
        return f"{self.kind.title()} of {self.name}"


@dataclasses.dataclass(frozen=True, slots=True)
class Document:
    """One row of ``meeting_document``; ``pages`` is how many pages the corpus gives it."""

    id: int
    municipality_id: int
    meeting_name: str
    meeting_date: dt.date
    document_type: DocumentType
    pages: int


@dataclasses.dataclass(frozen=True, slots=True)
class Page:
    """One row of ``meeting_page`` (without ``search_vector``, which the server's trigger computes)."""

    id: str
    meeting_date: dt.date
    document_id: int
    municipality_id: int
    document_type: DocumentType
    page_number: int
    text: str
    page_image: str


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything about a corpus except page text: its municipalities and documents, ids assigned."""

    seed: int
    pages: int
    municipalities: tuple[Municipality, ...]
    documents: tuple[Document, ...]

    @property
    def first_date(self) -> dt.date:
        """The earliest meeting date (``FIRST_DATE`` when there are no documents)."""
        return self.documents[0].meeting_date if self.documents else FIRST_DATE

    @property
    def last_date(self) -> dt.date:
        """The latest meeting date (``LAST_DATE`` when there are no documents)."""
        return self.documents[-1].meeting_date if self.documents else LAST_DATE


@dataclasses.dataclass(frozen=True)
class LoadStats:
    """What :func:`load` loaded and how long each phase took (seconds of wall clock)."""

    municipalities: int
    documents: int
    pages: int
    text_bytes: int
    workers: int
    seconds: float
    pages_seconds: float
    analyze_seconds: float  # the full-text index's upkeep (GIN merges its pending lists; RUM has none), then ANALYZE
    index_seconds: float = 0.0  # building the indexes of tables loaded without them, and attaching them

    @property
    def pages_per_second(self) -> float:
        """Pages loaded per second of the whole load (partitions, COPY and ANALYZE included)."""
        return self.pages / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """One line for humans."""
        return (
            f"loaded {self.pages:,} pages ({self.documents:,} documents, {self.municipalities:,} "
            f"municipalities, {self.text_bytes / 1e6:,.1f} MB of text) in {self.seconds:.1f} s = "
            f"{self.pages_per_second:,.0f} pages/s (pages COPY {self.pages_seconds:.1f} s over "
            f"{self.workers} connection(s), indexes built after the load {self.index_seconds:.1f} s, "
            f"index upkeep + ANALYZE {self.analyze_seconds:.1f} s)"
        )
