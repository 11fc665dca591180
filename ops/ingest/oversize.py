"""The rule for a page whose text makes a search vector larger than PostgreSQL allows.

A ``tsvector`` holds at most 1 MB (1,048,575 bytes) of distinct lexemes; past it, computing the vector fails
with "string is too long for tsvector". A page of ordinary text never comes near (a page is 2-5 kB, and a
vector holds each distinct word once), but a page of OCR noise, a base-64 dump or tables of unique hyphenated
codes can: the parser adds each part of a hyphenated word or URL as a lexeme of its own, so the lexemes can
outweigh the text.

**The rule**: bad input loses nothing. The page is stored with its whole text; its ``search_vector`` covers the
longest prefix whose vector fits, cut at the last whitespace before it. The server applies the rule itself:
the column is filled by a trigger (``migrations/sql/0011_index_prefix.sql``) for every writer, this ingest,
the corpus loader and the GraphQL mutations alike. The ingest only *reports* it: a warning with the row's
position (``file:line``) saying how many leading characters are searchable. The page is not a bad row.

Only texts above :data:`CHECK_FROM_BYTES` are checked, the trigger's own threshold (below it, no text can
overflow). The check sends the text once more and asks the server the number of characters the trigger indexes
(``public.civic_indexed_length``, the function the trigger calls), so the warning always says what the stored
vector holds, whatever text search configuration the migrations give it. The worst case found, a text of
nothing but unique hyphenated codes ("q00001-r00001-s00001 ..."), needs 2.7 bytes of vector per byte of text
(1 MB of it: 2,666,688 bytes); the threshold leaves a margin of 8.
"""

from __future__ import annotations

from migrations.partitions import Conn

CHECK_FROM_BYTES = 128 * 1024  # the same threshold as the trigger's (0011_index_prefix.sql: 131072)
_INDEXED_LENGTH = "SELECT public.civic_indexed_length(%s::text)"


class VectorCheck:
    """Asks the server, over one connection, how much of a long text its search vector covers."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    def indexed_chars(self, text: str) -> int | None:
        """None when the whole of ``text`` is searchable; else how many leading characters are."""
        # A character is at most 4 bytes: most texts are ruled out without encoding them.
        if len(text) * 4 <= CHECK_FROM_BYTES or len(text.encode("utf-8")) <= CHECK_FROM_BYTES:
            return None
        row = self.conn.execute(_INDEXED_LENGTH, [text]).fetchone()
        indexed = int(row[0]) if row and row[0] is not None else len(text)
        # PostgreSQL's length() counts characters, as len() does.
        return indexed if indexed < len(text) else None
