"""The SQL behind ``search``: keyset pages that stay fast whatever the selectivity of the words.

Why the statement looks the way it does (figures in docs/performance.md):

* **Newest/oldest first.** Walking the (meeting_date, id) index and checking each row against the tsquery is
  the cheapest plan when matches are common, and a disaster when they are rare (the planner walked the whole
  table for a word that matched nothing, for seconds). So the walk is taken only when every required word is
  common (``public.civic_is_selective``: the column's statistics list it among the most frequent lexemes, and
  the query is no phrase), and it is *bounded*: it looks at most ``DATE_WINDOW`` rows past the cursor. If that
  finds a full page, the page is exact (the walk is in order). If not, or when the query is selective, the same
  statement asks the full-text index, where the matches are few and sort cheaply. The fallback sits behind a
  one-time filter, so it costs nothing when the walk sufficed. It runs one year at a time, newest (or oldest)
  first, and stops as soon as the page is full. The RUM index stores positions, so a phrase is checked inside
  the index instead of on every page holding its words.
* **Relevance.** Every match is ranked, by the documented score ``search_vector <=> rank_query`` (RUM's
  distance, lower is better; ``rank_query`` is the query with phrases loosened to AND, see ``RANK_TSQ``; for one
  word or an ``or`` of words it is exactly ``1 / ts_rank``): the RUM index returns matches in that order, so the
  first page holds the best matches of the whole corpus (docs/search.md). Paging is keyset on (distance, date,
  id), with the row's position in the cursor for backward pages.
* **Stemming.** ``public.civic`` stems English words after unaccenting them, for pages and queries alike; a
  word quoted on its own (``"budgets"``) is additionally required in that exact form, checked on the text.
* **Counts.** Exact up to ``COUNT_CAP``; past it, an estimate from a fixed block sample, with its error.
* Every filter reads columns copied onto ``meeting_page``. Town and state filters become an array of
  municipality ids computed once (an InitPlan); date filters are plain range predicates, so partitions are
  pruned at plan time.
* The existence of a row on the other side of the cursor (for exact ``pageInfo``) is computed in the same
  statement: usually by checking that the cursor's own row still matches, an index lookup.

Nothing from the client is ever formatted into SQL text: fragments are constants, values are parameters.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from typing import Any, Literal

from psycopg import sql

from migrations.partitions import PAGE_COLUMNS as COLUMN_ORDER

Order = Literal["NEWEST", "OLDEST", "RELEVANCE"]

DATE_WINDOW = 2000
#: NEWEST/OLDEST: below this many matches the index's matches are fetched at once and sorted.
FEW_MATCHES = 500
#: RELEVANCE: rows fetched by distance past the page, so that the tie group at its end is usually all in hand
#: (a one-word query scores by its number of occurrences: thousands of pages tie). Fetching 5,000 more costs
#: little beside the ranking of every match that RUM does first.
TIE_MARGIN = 5000
COUNT_CAP = 10_000
#: Pages sampled to estimate a count past COUNT_CAP (docs/search.md, "Counts").
ESTIMATE_SAMPLE = 5000

TSQ = sql.SQL("websearch_to_tsquery('public.civic'::regconfig, %(q)s)")
#: The query RELEVANCE scores with: the query with every phrase operator (``<->``, ``<N>``) made an AND. RUM
#: cannot score a phrase inside its index: its cover search (``Cover()`` in rum_ts_utils.c) sets the positions of
#: the words only on its way up, not on its way down, so the phrase test of the lower bound never passes, no
#: cover is found, and every phrase match gets the in-index distance Infinity; the index then returns phrase
#: matches in storage order, while the operator on the row scores them properly. With the adjacency dropped the
#: index and the row compute the same distance, so the index order is the score's order (docs/search.md). The
#: rewrite is on the query's text form: lexemes of the civic parser never hold ``<`` or ``>``.
RANK_TSQ = sql.SQL("regexp_replace({tsq}::text, '<(-|[0-9]+)>', '&', 'g')::tsquery").format(tsq=TSQ)
HEADLINE_OPTIONS = (
    'StartSel="\ue000", StopSel="\ue001", MaxWords=50, MinWords=15, ShortWord=3, '
    'MaxFragments=3, FragmentDelimiter=" ... "'
)
# The page columns in the one order every part of the project uses (migrations.partitions), as a result row
# reads them; the enum comes back as text.
PAGE_COLUMNS = sql.SQL(", ").join(
    sql.SQL("p.{}::text").format(sql.Identifier(c))
    if c == "document_type"
    else sql.SQL("p.{}").format(sql.Identifier(c))
    for c in COLUMN_ORDER
)


#: What a result page shows besides the pages, fetched in the search statement itself when the client selected
#: it: "headline" (ts_headline, as in headline_query), "document" (the page's meeting_document row) and "town"
#: (the document's municipality row). Their columns follow the page's, in that order, before ``has_other``.
Extras = frozenset[str]
#: Columns of a page row (PAGE_COLUMNS and the rank) at the start of every search row.
PAGE_WIDTH = 9
EXTRA_ORDER = ("headline", "document", "town")


def _extras(extras: Extras) -> dict[str, sql.Composable]:
    cols: list[sql.Composable] = []
    joins: list[sql.Composable] = []
    if "headline" in extras:
        cols.append(
            sql.SQL(
                "ts_headline('public.civic'::regconfig, translate(p.text, E'<>\\uE000\\uE001', E'\\uE002\\uE003'), "
                "{tsq}, {opts})"
            ).format(tsq=TSQ, opts=sql.Literal(HEADLINE_OPTIONS))
        )
    if "document" in extras or "town" in extras:
        cols.append(sql.SQL("d.id, d.municipality_id, d.meeting_name, d.meeting_date, d.document_type::text"))
        joins.append(sql.SQL("LEFT JOIN public.meeting_document d ON d.id = p.document_id"))
    if "town" in extras:
        cols.append(sql.SQL("m.id, m.subdomain, m.name, m.state, m.country, m.kind"))
        joins.append(sql.SQL("LEFT JOIN public.municipality m ON m.id = d.municipality_id"))
    return {
        "extra_cols": sql.SQL("").join([sql.SQL(", ") + c for c in cols]),
        "extra_joins": sql.SQL(" ").join(joins),
    }


@dataclasses.dataclass(frozen=True)
class SearchSpec:
    """A normalised search: what a cursor is bound to, and what the cache key is made of."""

    query: str
    order: Order = "NEWEST"
    municipalities: tuple[str, ...] | None = None
    states: tuple[str, ...] | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    document_type: str | None = None
    meeting_name: str | None = None
    #: Words quoted on their own ("budgets"): pages must hold that very form, not only its stem. Derived from
    #: ``query`` (see schema.search.exact_forms), so not part of the binding.
    exact: tuple[str, ...] = ()

    def binding(self) -> list[Any]:
        return [
            "search",
            self.query,
            self.order,
            self.municipalities,
            self.states,
            self.date_from,
            self.date_to,
            self.document_type,
            self.meeting_name,
        ]


@dataclasses.dataclass(frozen=True)
class PageRow:
    """One page as a search (or node lookup) returns it."""

    id: str
    meeting_date: dt.date
    document_id: int
    municipality_id: int
    document_type: str
    page_number: int
    text: str
    page_image: str | None
    rank: float | None = None

    def date_key(self) -> list[Any]:
        return [self.meeting_date.isoformat(), self.id]

    def relevance_key(self) -> list[Any]:
        return [self.rank, self.meeting_date.isoformat(), self.id]


def _filters(spec: SearchSpec, alias: str, *, walk: bool | None) -> list[sql.Composable]:
    """Filter predicates on ``alias``. ``walk=True``: only those that keep the date walk index-ordered and
    bounded; ``walk=False``: the rest; ``None``: all of them."""
    a = sql.Identifier(alias)
    out: list[sql.Composable] = []
    single_town = spec.municipalities is not None and len(spec.municipalities) == 1
    if walk in (True, None):
        if spec.date_from is not None:
            out.append(sql.SQL("{a}.meeting_date >= %(date_from)s").format(a=a))
        if spec.date_to is not None:
            out.append(sql.SQL("{a}.meeting_date <= %(date_to)s").format(a=a))
        if single_town:
            # A scalar subquery keeps `municipality_id = $x` an index condition of the (town, date, id) index.
            out.append(
                sql.SQL(
                    "{a}.municipality_id = (SELECT m.id FROM public.municipality m WHERE m.subdomain = %(town)s)"
                ).format(a=a)
            )
    if walk in (False, None):
        if spec.municipalities is not None and not single_town:
            out.append(
                sql.SQL(
                    "{a}.municipality_id = ANY (ARRAY(SELECT m.id FROM public.municipality m "
                    "WHERE m.subdomain = ANY (%(towns)s)))"
                ).format(a=a)
            )
        if spec.states is not None:
            out.append(
                sql.SQL(
                    "{a}.municipality_id = ANY (ARRAY(SELECT m.id FROM public.municipality m "
                    "WHERE m.state = ANY (%(states)s)))"
                ).format(a=a)
            )
        if spec.document_type is not None:
            out.append(sql.SQL("{a}.document_type = %(doctype)s::public.document_type").format(a=a))
        if spec.meeting_name is not None:
            out.append(
                sql.SQL(
                    "{a}.document_id IN (SELECT d.id FROM public.meeting_document d WHERE d.name_vector @@ "
                    "websearch_to_tsquery('public.civic'::regconfig, %(mname)s))"
                ).format(a=a)
            )
    return out


def _and(parts: list[sql.Composable]) -> sql.Composable:
    return sql.SQL(" AND ").join(parts) if parts else sql.SQL("true")


def params(spec: SearchSpec) -> dict[str, Any]:
    p: dict[str, Any] = {"q": spec.query}
    if spec.date_from is not None:
        p["date_from"] = spec.date_from
    if spec.date_to is not None:
        p["date_to"] = spec.date_to
    if spec.municipalities is not None:
        if len(spec.municipalities) == 1:
            p["town"] = spec.municipalities[0]
        else:
            p["towns"] = list(spec.municipalities)
    if spec.states is not None:
        p["states"] = list(spec.states)
    if spec.document_type is not None:
        p["doctype"] = spec.document_type
    if spec.meeting_name is not None:
        p["mname"] = spec.meeting_name
    if spec.exact:
        p["exact"] = list(spec.exact)
    return p


def _match(spec: SearchSpec, alias: str) -> sql.Composable:
    """The full-text predicate on ``alias``: the stemmed tsquery, and each exact word form asked for.

    An exact form is checked on the page's text, unaccented and lower-cased like the vectors, with regex word
    boundaries: the index finds the pages holding the stem, and only those are read. The words are letters and
    digits only (schema.search), so they are no regex syntax.
    """
    a = sql.Identifier(alias)
    match = sql.SQL("{a}.search_vector @@ {tsq}").format(a=a, tsq=TSQ)
    if not spec.exact:
        return match
    return sql.SQL(
        "{m} AND lower(public.unaccent({a}.text)) ~ ALL "
        "(ARRAY(SELECT '\\m' || lower(public.unaccent(w)) || '\\M' FROM unnest(%(exact)s::text[]) w))"
    ).format(m=match, a=a)


def _date_keyset(alias: str, op: str) -> sql.Composable:
    a = sql.Identifier(alias)
    # The extra meeting_date bound is implied by the row comparison, but only it lets the planner prune
    # partitions on the far side of the cursor.
    date_op = "<=" if op == "<" else ">="
    return sql.SQL(
        "({a}.meeting_date, {a}.id) {op} (%(k_date)s::date, %(k_id)s::text) "
        "AND {a}.meeting_date {dop} %(k_date)s::date"
    ).format(a=a, op=sql.SQL(op), dop=sql.SQL(date_op))


def _picked_ctes(
    spec: SearchSpec, *, desc: bool, keyset: bool, window: int, target: int, accept: int
) -> sql.Composable:
    """CTEs ``hits``, ``state`` and ``picked``: the first ``target`` matches in date order.

    ``picked`` holds (id, meeting_date). It comes from the bounded walk when the walk found at least ``accept``
    matches or walked off the end of the data, and from the GIN index otherwise.
    """
    direction = sql.SQL("DESC" if desc else "ASC")
    op = "<" if desc else ">"
    walk_where = _filters(spec, "p", walk=True)
    if keyset:
        walk_where.append(_date_keyset("p", op))
    outer = _filters(spec, "w", walk=False)
    fallback = [_match(spec, "p"), *_filters(spec, "p", walk=None)]
    # The same predicates for the "few matches" probe, with the keyset on an expression: an index range on
    # meeting_date would be ANDed with the full-text bitmap, and reading a year of the date index costs more
    # than the handful of matches.
    few_where = [_match(spec, "p"), *_filters(spec, "p", walk=None)]
    if keyset:
        fallback.append(_date_keyset("p", op))
        few_where.append(
            sql.SQL("(p.meeting_date + 0, p.id) {op} (%(k_date)s::date, %(k_id)s::text)").format(op=sql.SQL(op))
        )
    return sql.SQL(
        """
        probe AS MATERIALIZED (
            -- A rare word or a phrase: the walk would check its whole window for a handful of matches, so
            -- the index is asked first (see civic_is_selective in migrations/sql/0005_stemming.sql).
            SELECT public.civic_is_selective({tsq}) AS selective, {tsq}::text ~ '<(-|[0-9]+)>' AS phrase
        ),
        hits AS MATERIALIZED (
            -- The filter stays above the LIMITed walk, so the window bound holds; the walk stops at the
            -- target-th match instead of checking the whole window first.
            SELECT w.id, w.meeting_date
              FROM (SELECT p.id, p.meeting_date, p.municipality_id, p.document_type, p.document_id,
                           p.search_vector, p.text
                      FROM public.meeting_page p
                     WHERE NOT (SELECT selective FROM probe) AND {walk_where}
                     ORDER BY p.meeting_date {dir}, p.id {dir}
                     LIMIT {window}) w
             WHERE {wmatch} AND {outer}
             ORDER BY w.meeting_date {dir}, w.id {dir}
             LIMIT {target}
        ),
        state AS MATERIALIZED (
            -- Whether the walk ran off the end of the data is only asked when the page is short (InitPlans
            -- are evaluated lazily), and answered from the index alone.
            SELECT NOT (SELECT selective FROM probe) AND (
                   (SELECT count(*) FROM hits) >= {accept}
                OR (SELECT count(*) FROM (SELECT 1 FROM public.meeting_page p WHERE {walk_where}
                                           ORDER BY p.meeting_date {dir}, p.id {dir} LIMIT {window}) x) < {window})
                   AS walked
        ),
        few AS MATERIALIZED (
            -- When the index holds fewer than FEW_MATCHES matches (a rare word, or one that matches nothing),
            -- they are all fetched at once and sorted: cheaper than a probe of every year. Not for phrases: a
            -- bitmap of the pages holding both words would be rechecked page by page; the yearly index scans
            -- below stop at the first full page instead.
            SELECT p.id, p.meeting_date FROM public.meeting_page p
             WHERE NOT (SELECT walked FROM state) AND NOT (SELECT phrase FROM probe) AND {few_where}
             LIMIT {few_cap}
        ),
        picked AS (
            SELECT h.id, h.meeting_date FROM hits h WHERE (SELECT walked FROM state)
            UNION ALL
            (SELECT c.id, c.meeting_date FROM few c WHERE (SELECT count(*) FROM few) < {few_cap}
                AND NOT (SELECT phrase FROM probe)
              ORDER BY c.meeting_date {dir}, c.id {dir} LIMIT {target})
            UNION ALL
            (SELECT f.id, f.meeting_date
               FROM generate_series(
                        extract(year FROM (SELECT {first_end}(m.meeting_date) FROM public.meeting_page m
                                            WHERE {bounds}))::int,
                        extract(year FROM (SELECT {last_end}(m.meeting_date) FROM public.meeting_page m
                                            WHERE {bounds}))::int,
                        {step}) AS y(year)
              CROSS JOIN LATERAL (
                    SELECT p.id, p.meeting_date
                      FROM public.meeting_page p
                     WHERE NOT (SELECT walked FROM state)
                       AND ((SELECT phrase FROM probe) OR (SELECT count(*) FROM few) >= {few_cap})
                       AND {fallback}
                       AND p.meeting_date >= make_date(y.year, 1, 1)
                       AND p.meeting_date < make_date(y.year + 1, 1, 1)
                     ORDER BY p.meeting_date + 0 {dir}, p.id {dir}
                     LIMIT {target}) f
              LIMIT {target})
        )
        """
    ).format(
        bounds=_and(_filters(spec, "m", walk=True)),
        first_end=sql.SQL("max" if desc else "min"),
        last_end=sql.SQL("min" if desc else "max"),
        step=sql.Literal(-1 if desc else 1),
        wmatch=_match(spec, "w"),
        tsq=TSQ,
        walk_where=_and(walk_where),
        dir=direction,
        window=sql.Literal(window),
        outer=_and(outer),
        target=sql.Literal(target),
        accept=sql.Literal(accept),
        fallback=_and(fallback),
        few_where=_and(few_where),
        few_cap=sql.Literal(FEW_MATCHES),
    )


def _shape(spec: SearchSpec) -> SearchSpec:
    """The spec with every value replaced by a placeholder: what the SQL *text* depends on.

    Statement texts are composed once per shape and reused: composing them is a large share of the CPU a
    search costs in Python, and values never enter the text anyway (they are parameters).
    """
    towns = spec.municipalities
    return SearchSpec(
        query="",
        order=spec.order,
        municipalities=None if towns is None else ("",) * min(len(towns), 2),
        states=None if spec.states is None else ("",),
        date_from=None if spec.date_from is None else dt.date.min,
        date_to=None if spec.date_to is None else dt.date.min,
        document_type=None if spec.document_type is None else "",
        meeting_name=None if spec.meeting_name is None else "",
        exact=("",) if spec.exact else (),  # one array parameter, whatever the number of words
    )


def _frozen(composed: sql.Composed) -> sql.Composed:
    """A statement composed once into one literal piece: later ``as_string``/``as_bytes`` calls are trivial."""
    return sql.Composed([sql.SQL(composed.as_string(None))])


@functools.lru_cache(maxsize=1024)
def _text(
    builder: str, shape: SearchSpec, forward: bool, size: int, keyset: bool, extras: Extras = frozenset()
) -> sql.Composed:
    cursor: list[Any] | None = [0.0, "2000-01-01", ""] if keyset else None
    if builder == "date":
        cursor = cursor[1:] if cursor else None
        composed, _ = _date_page(shape, forward=forward, size=size, cursor=cursor, extras=extras)
    elif builder == "relevance":
        composed, _ = _relevance_page(shape, forward=forward, size=size, cursor=cursor, extras=extras)
    elif builder == "count":
        composed, _ = _count_query(shape)
    else:
        composed, _ = _estimate_query(shape)
    return _frozen(composed)


def date_page(
    spec: SearchSpec, *, forward: bool, size: int, cursor: list[Any] | None, extras: Extras = frozenset()
) -> tuple[sql.Composed, dict[str, Any]]:
    """One NEWEST/OLDEST page (see :func:`_date_page`), its text composed once per shape."""
    p = params(spec)
    if cursor is not None:
        p["k_date"], p["k_id"] = dt.date.fromisoformat(str(cursor[0])), str(cursor[1])
    return _text("date", _shape(spec), forward, size, cursor is not None, extras), p


def relevance_page(
    spec: SearchSpec, *, forward: bool, size: int, cursor: list[Any] | None, extras: Extras = frozenset()
) -> tuple[sql.Composed, dict[str, Any]]:
    """One RELEVANCE page (see :func:`_relevance_page`), its text composed once per shape."""
    p = params(spec)
    if cursor is not None:
        p["k_rank"], p["k_date"], p["k_id"] = (
            float(cursor[0]),
            dt.date.fromisoformat(str(cursor[1])),
            str(cursor[2]),
        )
        p["k_pos"] = int(cursor[3]) if len(cursor) > 3 else 0
    return _text("relevance", _shape(spec), forward, size, cursor is not None, extras), p


def count_query(spec: SearchSpec) -> tuple[sql.Composed, dict[str, Any]]:
    """Exact count up to COUNT_CAP + 1 (see :func:`_count_query`)."""
    # The cap is a parameter, not part of the text: the text is composed once and reused.
    return _text("count", _shape(spec), True, 0, False), {**params(spec), "cap": COUNT_CAP + 1}


def estimate_query(spec: SearchSpec) -> tuple[sql.Composed, dict[str, Any]]:
    """The planner's estimate of the number of matches (see :func:`_estimate_query`)."""
    return _text("estimate", _shape(spec), True, 0, False), {**params(spec), "sample": ESTIMATE_SAMPLE}


def _date_page(
    spec: SearchSpec, *, forward: bool, size: int, cursor: list[Any] | None, extras: Extras = frozenset()
) -> tuple[sql.Composed, dict[str, Any]]:
    """One NEWEST/OLDEST page: ``size + 1`` rows in scan order, plus ``has_other`` on every row.

    ``has_other`` says whether a matching row exists on the far side of the cursor (always false without one).
    """
    desc = (spec.order == "NEWEST") == forward
    p = params(spec)
    if cursor is not None:
        p["k_date"], p["k_id"] = dt.date.fromisoformat(str(cursor[0])), str(cursor[1])
    direction = sql.SQL("DESC" if desc else "ASC")
    if cursor is None:
        has_other: sql.Composable = sql.SQL("false")
    else:
        other_op = ">=" if desc else "<="
        all_filters = _and([_match(spec, "p"), *_filters(spec, "p", walk=None)])
        has_other = sql.SQL(
            """CASE WHEN EXISTS (SELECT 1 FROM public.meeting_page p
                                  WHERE p.id = %(k_id)s AND p.meeting_date = %(k_date)s::date AND {f})
                    THEN true
                    ELSE EXISTS (SELECT 1 FROM public.meeting_page p
                                  WHERE {f} AND (p.meeting_date, p.id) {op} (%(k_date)s::date, %(k_id)s::text))
               END"""
        ).format(f=all_filters, op=sql.SQL(other_op))
    query = sql.SQL(
        """
        WITH {ctes}
        SELECT r.*, o.has_other
          FROM (SELECT {has_other} AS has_other) o
          LEFT JOIN LATERAL (
                SELECT {cols}, NULL::real AS rank{extra_cols}
                  FROM picked k
                  JOIN public.meeting_page p ON p.id = k.id AND p.meeting_date = k.meeting_date AND {bounds}
                  {extra_joins}
                 ORDER BY p.meeting_date {dir}, p.id {dir}
          ) r ON true
        """
    ).format(
        ctes=_picked_ctes(
            spec, desc=desc, keyset=cursor is not None, window=DATE_WINDOW, target=size + 1, accept=size + 1
        ),
        has_other=has_other,
        cols=PAGE_COLUMNS,
        **_extras(extras),
        dir=direction,
        # The rows picked already satisfy the filters; repeating the date bounds lets the planner prune the
        # partitions of this join at plan time, whatever join it chooses.
        bounds=_and(_filters(spec, "p", walk=True)),
    )
    return query, p


def _relevance_page(
    spec: SearchSpec, *, forward: bool, size: int, cursor: list[Any] | None, extras: Extras = frozenset()
) -> tuple[sql.Composed, dict[str, Any]]:
    """One RELEVANCE page over every match: the RUM index returns the matches by ``search_vector <=> rank_query``.

    That distance is the documented score (lower is better), computed inside the index from the positions it
    stores, so the order is the score's order over the whole corpus, not over a candidate set. ``rank_query``
    (``RANK_TSQ``) is the query itself unless it holds a phrase: the pages must hold the phrase (the WHERE
    clause), and are ranked by the distance of the same words without the adjacency, the one distance of a
    phrase query that RUM computes inside the index as the row's operator does. Result order: distance ascending (best first), then newest,
    then id, all descending on ties. The row's ``rank`` column carries the distance, which is what cursors hold.

    The index can only walk distances upwards, so a forward page skips the rows before its cursor (``key`` is
    ``[distance, date, id, position]``) and a backward page takes the first ``position`` rows and keeps the last
    ``size + 1`` of them: both cost what the rows before them cost, like OFFSET, but stay exact when rows come
    and go because the keyset predicate decides, not the count.
    """
    p = params(spec)
    dist = sql.SQL("(p.search_vector <=> {tsq})").format(tsq=RANK_TSQ)
    where = [_match(spec, "p"), *_filters(spec, "p", walk=None)]
    has_other: sql.Composable = sql.SQL("false")
    window: sql.Composable = sql.SQL("")
    if cursor is not None:
        p["k_rank"], p["k_date"], p["k_id"] = (
            float(cursor[0]),
            dt.date.fromisoformat(str(cursor[1])),
            str(cursor[2]),
        )
        p["k_pos"] = int(cursor[3]) if len(cursor) > 3 else 0
        after = sql.SQL(
            "({d} > %(k_rank)s::real OR ({d} = %(k_rank)s::real "
            "AND (p.meeting_date, p.id) < (%(k_date)s::date, %(k_id)s::text)))"
        ).format(d=dist)
        before = sql.SQL(
            "({d} < %(k_rank)s::real OR ({d} = %(k_rank)s::real "
            "AND (p.meeting_date, p.id) > (%(k_date)s::date, %(k_id)s::text)))"
        ).format(d=dist)
        match_all = _and([_match(spec, "p"), *_filters(spec, "p", walk=None)])
        # Usually the cursor's own row still matches: one index lookup says a row lies on the other side.
        cursor_row = sql.SQL(
            "EXISTS (SELECT 1 FROM public.meeting_page p WHERE p.id = %(k_id)s AND p.meeting_date = %(k_date)s::date "
            "AND {f})"
        ).format(f=match_all)
        if forward:
            where.append(after)
            has_other = sql.SQL(
                "CASE WHEN %(k_pos)s = 0 THEN false WHEN {row} THEN true ELSE EXISTS "
                "(SELECT 1 FROM (SELECT {d} AS d FROM public.meeting_page p WHERE {f} "
                "ORDER BY p.search_vector <=> {rtsq} LIMIT 1) t WHERE t.d <= %(k_rank)s::real) END"
            ).format(row=cursor_row, d=dist, f=match_all, rtsq=RANK_TSQ)
        else:
            where.append(before)
            window = sql.SQL("LIMIT %(k_pos)s")
            has_other = sql.SQL(
                "CASE WHEN {row} THEN true ELSE EXISTS (SELECT 1 FROM public.meeting_page p WHERE {f} AND {after}) END"
            ).format(row=cursor_row, f=match_all, after=after)
    if forward:
        # The index orders by distance only; ties are broken by date and id here. The first n + 100 rows by
        # distance hold every row of the page unless the tie group at the page's last distance runs past them
        # ("straddles"); then n + TIE_MARGIN rows are fetched, and if the group runs past those too, its best
        # rows are fetched exactly, by date. Each later step runs only when needed (one-time filters), so a page
        # whose ties fit costs one ranking and n + 100 row fetches.
        n = size + 1

        def edge(src: str, limit: int) -> sql.Composable:
            return sql.SQL(
                "SELECT e.d, (SELECT count(*) FROM {src}) = {limit} AND (SELECT max(t.d) FROM {src} t) = e.d "
                "AS straddles FROM (SELECT (SELECT t.d FROM {src} t ORDER BY t.d, t.meeting_date DESC, t.id DESC "
                "OFFSET {last} LIMIT 1) AS d) e"
            ).format(src=sql.Identifier(src), limit=sql.Literal(limit), last=sql.Literal(n - 1))

        picked = sql.SQL(
            """
            WITH near AS MATERIALIZED (
                SELECT p.id, p.meeting_date, {d} AS d FROM public.meeting_page p WHERE {w}
                 ORDER BY p.search_vector <=> {rtsq} LIMIT {near}),
            near_edge AS MATERIALIZED ({near_edge}),
            far AS MATERIALIZED (
                SELECT p.id, p.meeting_date, {d} AS d FROM public.meeting_page p
                 WHERE coalesce((SELECT straddles FROM near_edge), false) AND {w}
                 ORDER BY p.search_vector <=> {rtsq} LIMIT {far}),
            far_edge AS MATERIALIZED ({far_edge}),
            ties AS MATERIALIZED (
                SELECT p.id, p.meeting_date, {d} AS d FROM public.meeting_page p
                 WHERE coalesce((SELECT straddles FROM far_edge), false) AND {w} AND {d} = (SELECT d FROM far_edge)
                 ORDER BY p.meeting_date DESC, p.id DESC LIMIT {n})
            SELECT u.* FROM (
                SELECT t.* FROM near t WHERE NOT coalesce((SELECT straddles FROM near_edge), false)
                UNION ALL
                SELECT t.* FROM far t WHERE NOT coalesce((SELECT straddles FROM far_edge), false)
                UNION ALL
                SELECT t.* FROM far t WHERE (SELECT straddles FROM far_edge) AND t.d < (SELECT d FROM far_edge)
                UNION ALL
                SELECT x.* FROM ties x) u
             ORDER BY u.d, u.meeting_date DESC, u.id DESC LIMIT {n}
            """
        ).format(
            d=dist, w=_and(where), rtsq=RANK_TSQ, near=sql.Literal(n + 100), far=sql.Literal(n + TIE_MARGIN),
            near_edge=edge("near", n + 100), far_edge=edge("far", n + TIE_MARGIN), n=sql.Literal(n),
        )
    else:
        # Exactly the rows before the cursor satisfy the keyset predicate, and there are k_pos of them: the
        # first k_pos by distance are all of them, whatever the ties.
        picked = sql.SQL(
            "SELECT * FROM (SELECT p.id, p.meeting_date, {d} AS d FROM public.meeting_page p WHERE {w} "
            "ORDER BY p.search_vector <=> {rtsq} {window}) b ORDER BY b.d DESC, b.meeting_date, b.id LIMIT {n}"
        ).format(d=dist, w=_and(where), rtsq=RANK_TSQ, window=window, n=sql.Literal(size + 1))
    query = sql.SQL(
        """
        WITH chosen AS MATERIALIZED ({picked})
        SELECT r.*, o.has_other
          FROM (SELECT {has_other} AS has_other) o
          LEFT JOIN LATERAL (
                SELECT {cols}, c.d{extra_cols}
                  FROM chosen c
                  JOIN public.meeting_page p ON p.id = c.id AND p.meeting_date = c.meeting_date AND {bounds}
                  {extra_joins}
          ) r ON true
        """
    ).format(
        picked=picked,
        has_other=has_other,
        cols=PAGE_COLUMNS,
        **_extras(extras),
        bounds=_and(_filters(spec, "p", walk=True)),
    )
    return query, p


def _count_query(spec: SearchSpec) -> tuple[sql.Composed, dict[str, Any]]:
    """Exact count up to COUNT_CAP + 1; never a COUNT(*) over every match."""
    where = _and([_match(spec, "p"), *_filters(spec, "p", walk=None)])
    query = sql.SQL(
        "SELECT count(*) FROM (SELECT 1 FROM public.meeting_page p WHERE {} LIMIT %(cap)s) s"
    ).format(where)
    return query, {**params(spec), "cap": COUNT_CAP + 1}


def _estimate_query(spec: SearchSpec) -> tuple[sql.Composed, dict[str, Any]]:
    """Matches among a block sample of about ``ESTIMATE_SAMPLE`` pages, and the sample's size.

    ``TABLESAMPLE SYSTEM`` reads whole heap blocks picked at random, so it costs a few hundred block reads and
    the match test of the rows in them, whatever the query; ``REPEATABLE`` makes the sample the same for every
    request, so the same search always shows the same estimate. The percentage is computed from the planner's
    row count of the table (``reltuples``), an InitPlan evaluated once.
    """
    where = _and([_match(spec, "p"), *_filters(spec, "p", walk=None)])
    query = sql.SQL(
        "SELECT count(*) FILTER (WHERE {}), count(*), public.civic_page_rows() "
        "FROM public.meeting_page p TABLESAMPLE SYSTEM (public.civic_sample_percent(%(sample)s)) REPEATABLE (7)"
    ).format(where)
    return query, {**params(spec), "sample": ESTIMATE_SAMPLE}


@functools.lru_cache(maxsize=1)
def headline_query() -> sql.Composed:
    """ts_headline for a batch of pages, with sentinel delimiters that are HTML-escaped afterwards.

    Sentinels are private-use characters; any occurrence in the source text is removed first, so only the
    delimiters ts_headline inserts can become <mark> tags. ``<`` and ``>`` are swapped for two more
    private-use characters, because ts_headline's parser would otherwise drop anything that looks like a tag
    instead of letting it come back escaped (see loaders.render_headline).
    """
    return _frozen(
        sql.SQL(
            """
        SELECT p.id, p.meeting_date,
               ts_headline('public.civic'::regconfig,
                           translate(p.text, E'<>\\uE000\\uE001', E'\\uE002\\uE003'),
                           {tsq}, {opts})
          FROM public.meeting_page p
          JOIN unnest(%(ids)s::text[], %(dates)s::date[]) AS k(id, meeting_date)
            ON p.id = k.id AND p.meeting_date = k.meeting_date
        """
        ).format(tsq=TSQ, opts=sql.Literal(HEADLINE_OPTIONS))
    )


@functools.lru_cache(maxsize=1)
def pages_by_key() -> sql.Composed:
    """Pages by (id, meeting_date): each lookup touches one partition."""
    return _frozen(
        sql.SQL(
            """
        SELECT {cols}, NULL::real AS rank
          FROM public.meeting_page p
          JOIN unnest(%(ids)s::text[], %(dates)s::date[]) AS k(id, meeting_date)
            ON p.id = k.id AND p.meeting_date = k.meeting_date
        """
        ).format(cols=PAGE_COLUMNS)
    )
