"""The SQL behind a meeting document's own pages: which of them match a search, and their text marked up.

Every statement here takes a batch of keys (one DataLoader batch: the documents of one page of results, or the
pages of one view) and reads only the partitions of the documents' dates: a document's pages share its
``meeting_date``, the partition key, and ``(document_id, page_number)`` is indexed.

The text search itself is the search's own: the query is ``search_sql.TSQ`` (the same configuration and
syntax), matched against the same ``search_vector``, and excerpts use ``search_sql.HEADLINE_OPTIONS``, so a
page that a search finds is a page these statements call a match. Nothing from the client is formatted into
SQL text: fragments are constants, values are parameters.
"""

from __future__ import annotations

import functools

from psycopg import sql

from migrations.partitions import PAGE_COLUMNS as COLUMN_ORDER
from schema.search_sql import HEADLINE_OPTIONS, PAGE_COLUMNS, TSQ

#: The whole text, every match marked (the document view). Same sentinels as the excerpts.
HIGHLIGHT_ALL_OPTIONS = 'StartSel="\ue000", StopSel="\ue001", HighlightAll=true'

#: The most matching pages one document lists with their excerpts (``matchingPages(first:)``).
MAX_MATCHING_PAGES = 100


def _marked(options: str) -> sql.Composable:
    """ts_headline over a page's text with sentinel delimiters (see search_sql.headline_query for why the
    text's own ``<``, ``>`` and sentinel characters are translated first); loaders.render_headline turns the
    result into escaped HTML with ``<mark>`` tags."""
    return sql.SQL(
        "ts_headline('public.civic'::regconfig, translate(p.text, E'<>\\uE000\\uE001', E'\\uE002\\uE003'), "
        "{tsq}, {opts})"
    ).format(tsq=TSQ, opts=sql.Literal(options))


#: The page columns as the lateral subqueries below select them, so their alias reads like the table's.
_INNER_COLUMNS = sql.SQL(", ").join(sql.Identifier("p", c) for c in COLUMN_ORDER)
#: The documents of a batch. Each lookup below is correlated to one key (LATERAL or a sub-select), so it runs as
#: an index scan of (document_id, page_number) in the one partition of that key's date: the date is a parameter
#: known at execution, and PostgreSQL prunes the other partitions then. A plain join of the keys to the table
#: lets the planner pick a hash join over every partition instead (seen on the test corpus).
_KEYS = sql.SQL("unnest(%(docs)s::bigint[], %(days)s::date[]) AS k(doc, day)")
_OWN_PAGES = sql.SQL("p.document_id = k.doc AND p.meeting_date = k.day")
#: What "a page matches the query" means: the search's own predicate (keep the two the same).
_MATCHES = sql.SQL("p.search_vector @@ {}").format(TSQ)


@functools.lru_cache(maxsize=1)
def matching_pages() -> sql.Composed:
    """Per document: how many of its pages match ``%(q)s``, and the first ``%(first)s`` of them in page order
    with their excerpts. Row: document id, count, the page columns (as search rows: rank NULL), excerpt."""
    return sql.SQL(
        """
        SELECT k.doc, p.n, {cols}, NULL::real, {headline}
          FROM {keys}
         CROSS JOIN LATERAL (
               SELECT {inner}, count(*) OVER () AS n, row_number() OVER (ORDER BY p.page_number, p.id) AS r
                 FROM public.meeting_page p
                WHERE {own} AND {matches}) p
         WHERE p.r <= %(first)s
         ORDER BY k.doc, p.page_number, p.id
        """
    ).format(
        cols=PAGE_COLUMNS,
        headline=_marked(HEADLINE_OPTIONS),
        keys=_KEYS,
        inner=_INNER_COLUMNS,
        own=_OWN_PAGES,
        matches=_MATCHES,
    )


@functools.lru_cache(maxsize=2)
def page_numbers(*, matching: bool) -> sql.Composed:
    """Per document: the numbers of its pages in order (only those matching ``%(q)s`` when ``matching``)."""
    match = sql.SQL("AND {}").format(_MATCHES) if matching else sql.SQL("")
    return sql.SQL(
        """
        SELECT k.doc, ARRAY(SELECT p.page_number FROM public.meeting_page p
                             WHERE {own} {match} ORDER BY p.page_number, p.id)
          FROM {keys}
        """
    ).format(keys=_KEYS, own=_OWN_PAGES, match=match)


@functools.lru_cache(maxsize=1)
def pages_by_number() -> sql.Composed:
    """Pages by (document, date, page number). Row: the page columns, as search rows (rank NULL)."""
    return sql.SQL(
        """
        SELECT {cols}, NULL::real
          FROM unnest(%(docs)s::bigint[], %(days)s::date[], %(numbers)s::int[]) AS k(doc, day, number)
         CROSS JOIN LATERAL (
               SELECT {inner} FROM public.meeting_page p
                WHERE {own} AND p.page_number = k.number
                ORDER BY p.id LIMIT 1) p
        """
    ).format(cols=PAGE_COLUMNS, inner=_INNER_COLUMNS, own=_OWN_PAGES)


@functools.lru_cache(maxsize=1)
def highlighted_text() -> sql.Composed:
    """The whole text of pages by (id, date), every match of ``%(q)s`` between sentinels."""
    return sql.SQL(
        """
        SELECT p.id, p.meeting_date, {marked}
          FROM public.meeting_page p
          JOIN unnest(%(ids)s::text[], %(dates)s::date[]) AS k(id, meeting_date)
            ON p.id = k.id AND p.meeting_date = k.meeting_date
        """
    ).format(marked=_marked(HIGHLIGHT_ALL_OPTIONS))
