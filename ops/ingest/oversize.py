"""The rule for a page whose text makes a search vector larger than PostgreSQL allows.

A ``tsvector`` holds at most 1 MB (1,048,575 bytes) of distinct lexemes; past it, computing the vector fails
with "string is too long for tsvector", and the page cannot be written at all, because ``search_vector`` is a
column the server generates from ``text``. A page of ordinary text never comes near (a page is 2-5 kB, and a
vector holds each distinct word once), but a page of OCR noise, a base-64 dump or tables of unique hyphenated
codes can: the parser adds each part of a hyphenated word or URL as a lexeme of its own, so the lexemes can
outweigh the text.

**The rule**: such a text is cut at the last whitespace before the longest prefix whose vector fits, and the
page is stored and indexed with that prefix. The cut is reported as a warning with the row's position and the
number of characters dropped; the page is not a bad row (it is there, and searchable by everything it kept).
Storing the whole text while indexing only a prefix would need the generated column itself to index a prefix
(``to_tsvector(cfg, left(text, n))``), a schema change for the migrations to make.

Only texts above :data:`CHECK_FROM_BYTES` are checked (each check sends the text once more and computes its
vector with the column's own expression, read from the catalogue, so it follows whatever text search
configuration the migrations give the column); below it, no text can overflow. The worst case found, a text of
nothing but unique hyphenated codes ("q00001-r00001-s00001 ..."), needs 2.7 bytes of vector per byte of text
(1 MB of it: 2,666,688 bytes); the threshold leaves a margin of 8. The loader's row isolation
(:mod:`ops.ingest.staging`) still catches any row the database refuses, as a bad row.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from migrations.partitions import Conn

CHECK_FROM_BYTES = 128 * 1024
_PRECISION_CHARS = 1024  # stop the search once the fitting and failing prefixes are this close
_EXPRESSION = """
    SELECT pg_get_expr(d.adbin, d.adrelid)
      FROM pg_attrdef d
      JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
     WHERE d.adrelid = 'public.meeting_page'::regclass AND a.attname = 'search_vector'
"""


class VectorCheck:
    """Checks and cuts texts over one connection, with ``search_vector``'s own expression."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        row = conn.execute(_EXPRESSION).fetchone()
        # The expression is the server's own definition of the column (pg_get_expr), not input.
        expression = str(row[0]) if row else "to_tsvector('public.civic'::regconfig, text)"
        self._probe = sql.SQL("SELECT length({}) FROM (SELECT %s::text AS text) AS s").format(
            sql.SQL(expression)  # server-generated SQL (pg_get_expr), not input
        )

    def fits(self, text: str) -> bool:
        """Whether the vector of ``text`` can be stored."""
        try:
            with self.conn.transaction():
                self.conn.execute(self._probe, [text]).fetchone()
        except psycopg.errors.ProgramLimitExceeded:
            return False
        return True

    def cut(self, text: str) -> str | None:
        """``text`` itself when it is small or fits; else its longest whitespace-bounded prefix that fits."""
        # A character is at most 4 bytes: most texts are ruled out without encoding them.
        if len(text) * 4 <= CHECK_FROM_BYTES or len(text.encode("utf-8")) <= CHECK_FROM_BYTES:
            return None
        if self.fits(text):
            return None
        good, bad = 0, len(text)
        while bad - good > _PRECISION_CHARS:
            middle = (good + bad) // 2
            if self.fits(text[:middle]):
                good = middle
            else:
                bad = middle
        prefix = text[:good]
        space = max(prefix.rfind(" "), prefix.rfind("\n"), prefix.rfind("\t"))
        return prefix[:space] if space > 0 else prefix
