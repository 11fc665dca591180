"""A deterministic synthetic corpus of meeting agendas and minutes, and a fast COPY loader for it.

The corpus imitates what the gateway serves in production closely enough for searches, ranking, paging and
benchmarks to behave realistically, without shipping any real records:

* several hundred municipalities spread over (nearly) every US state, with names built from syllables and
  word roots (``Maplewood``, ``Santa Rosa``, ``Kellorton County``) and subdomains like ``maplewood.nj``;
* agendas and minutes of their boards over 20 years (2005-2024), named in CamelCase as the sources name
  them (``CityCouncil``, ``ZoningBoardOfAppeals``, ``ZBAHearing``), 8 to 32 pages a document (20 on average);
* about 2.5 kB of text a page, drawn from a Zipf-distributed vocabulary of several thousand words (function
  words, civic terms, Spanish words with accents, syllable-made filler), with multi-word civic phrases
  ("liquor license", "public hearing", "rezoning Main Street") inserted verbatim, headers, footers, numbered
  agenda items, motions, amounts, and now and then an ``&`` or ``<`` that a client must escape.

The same ``(pages, seed)`` always gives the same corpus, byte for byte and in any process: every random choice
comes from a ``random.Random`` seeded with an integer or a string (``str`` seeds are hashed with SHA-512, not
with ``hash()``, so ``PYTHONHASHSEED`` does not matter) and nothing iterates over a set. Municipality and
document ids are assigned here, in a fixed order, and loaded explicitly.

Loading (:func:`load`) COPYs municipalities and documents over one connection, then splits the documents in
date order between worker processes that each generate their share of pages and COPY it over their own
connection: the server computes ``search_vector`` (its trigger) of every page, and that, not Python, is the
expensive part, so parallel connections keep every core busy. ``python -m ops corpus`` calls :func:`main`.
Callers use this package as one namespace (``corpus.plan``, ``corpus.load``).
"""

from ops.corpus.loader import has_pages, load, main
from ops.corpus.model import (
    FIRST_DATE,
    LAST_DATE,
    MAX_PAGES_PER_DOCUMENT,
    MIN_PAGES_PER_DOCUMENT,
    MODE_PAGES_PER_DOCUMENT,
    MUNICIPALITIES,
    PAGE_CHARS_MEAN,
    PAGE_CHARS_SD,
    SUBDOMAIN_RE,
    VOCABULARY_SEED,
    CorpusError,
    Document,
    DocumentType,
    LoadStats,
    Municipality,
    Page,
    Plan,
)
from ops.corpus.planning import plan
from ops.corpus.text import document_pages, generate, split_camel
from ops.corpus.vocabulary import Vocabulary, vocabulary

__all__ = [
    "FIRST_DATE",
    "LAST_DATE",
    "MAX_PAGES_PER_DOCUMENT",
    "MIN_PAGES_PER_DOCUMENT",
    "MODE_PAGES_PER_DOCUMENT",
    "MUNICIPALITIES",
    "PAGE_CHARS_MEAN",
    "PAGE_CHARS_SD",
    "SUBDOMAIN_RE",
    "VOCABULARY_SEED",
    "CorpusError",
    "Document",
    "DocumentType",
    "LoadStats",
    "Municipality",
    "Page",
    "Plan",
    "Vocabulary",
    "document_pages",
    "generate",
    "has_pages",
    "load",
    "main",
    "plan",
    "split_camel",
    "vocabulary",
]
