"""Which municipalities exist and which documents they publish when: the plan of a corpus, before any text."""

from __future__ import annotations

import datetime as dt
import random
import unicodedata
from collections.abc import Sequence

from ops.corpus.model import (
    FIRST_DATE,
    LAST_DATE,
    MAX_PAGES_PER_DOCUMENT,
    MIN_PAGES_PER_DOCUMENT,
    MODE_PAGES_PER_DOCUMENT,
    MUNICIPALITIES,
    SUBDOMAIN_RE,
    Document,
    DocumentType,
    Municipality,
    Plan,
)
from ops.corpus.vocabulary import cumulative
from ops.corpus.words import (
    BODIES,
    BOROUGH_STATES,
    CODAS,
    KINDS,
    NAME_PREFIXES,
    NAME_ROOTS,
    NAME_SUFFIXES,
    NUCLEI,
    ONSETS,
    SPANISH_NAMED_STATES,
    SPANISH_NAMES,
    STATES,
    TOWNSHIP_STATES,
    seeded_random,
)


def _slug(name: str) -> str:
    """``"Cañon City"`` -> ``"canoncity"``: accents stripped, only [a-z0-9] kept."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    return "".join(c for c in ascii_name.lower() if c.isascii() and c.isalnum())


def _town_root(rng: random.Random) -> str:
    if rng.random() < 0.55:
        root = rng.choice(NAME_ROOTS)
    else:
        # A made-up root ("Kellor", "Brandis") so the name space is not limited to the list above.
        root = (rng.choice(ONSETS) + rng.choice(NUCLEI) + rng.choice(CODAS[3:])).title()
    return root + rng.choice(NAME_SUFFIXES)


def _municipalities(rng: random.Random, count: int) -> list[Municipality]:
    states = [s for s, _ in STATES]
    state_cum = cumulative(pop**0.5 for _, pop in STATES)
    kinds = [k for k, _ in KINDS]
    kind_cum = cumulative(w for _, w in KINDS)
    result: list[Municipality] = []
    taken: set[str] = set()
    while len(result) < count:
        state = rng.choices(states, cum_weights=state_cum)[0]
        kind = rng.choices(kinds, cum_weights=kind_cum)[0]
        if (kind == "township" and state not in TOWNSHIP_STATES) or (
            kind == "borough" and state not in BOROUGH_STATES
        ):
            kind = "city"
        if state in SPANISH_NAMED_STATES and rng.random() < 0.25:
            name = rng.choice(SPANISH_NAMES)
        else:
            name = _town_root(rng)
            if rng.random() < 0.15:
                name = rng.choice(NAME_PREFIXES) + name
        if kind == "county":
            name += " County"
        elif kind == "township":
            name += " Township"
        subdomain = f"{_slug(name)}.{state.lower()}"
        if subdomain in taken:
            continue  # a second Springfield in the same state: draw again
        taken.add(subdomain)
        assert SUBDOMAIN_RE.match(subdomain), subdomain
        result.append(Municipality(len(result) + 1, subdomain, name, state, kind))
    return result


def _meeting_date(rng: random.Random, year_cum: Sequence[float]) -> dt.date:
    year = rng.choices(range(FIRST_DATE.year, LAST_DATE.year + 1), cum_weights=year_cum)[0]
    day = dt.date(year, 1, 1) + dt.timedelta(days=rng.randrange(366 if year % 4 == 0 else 365))
    # Boards meet on weekdays: move weekends forward to Monday (never past LAST_DATE, a Tuesday).
    if day.weekday() >= 5:
        day += dt.timedelta(days=7 - day.weekday())
    return day


def plan(pages: int, seed: int = 1) -> Plan:
    """The municipalities and documents of the corpus of ``pages`` pages for ``seed`` (no page text).

    Documents are drawn until their pages add up to ``pages`` exactly (the last one is cut short), then sorted
    by date and numbered from 1, so document ids grow with meeting dates as they would with ingest.
    """
    if pages < 0:
        raise ValueError("pages must be >= 0")
    rng = seeded_random(seed)
    towns = _municipalities(rng, MUNICIPALITIES)
    # Big places publish much more than small ones: a Zipf law over a random order of the towns.
    order = list(range(len(towns)))
    rng.shuffle(order)
    town_weight = [0.0] * len(towns)
    for rank, index in enumerate(order, start=1):
        town_weight[index] = 1.0 / rank**0.7
    town_cum = cumulative(town_weight)
    # Each town has its governing body plus a few others; the governing body meets most often.
    bodies: list[tuple[list[str], tuple[float, ...]]] = []
    for town in towns:
        pool = BODIES[town.kind]
        others = rng.sample(pool[1:], k=min(len(pool) - 1, rng.randint(2, 6)))
        bodies.append(([pool[0], *others], cumulative([4.0] + [1.0] * len(others))))
    # More recent years have more documents online.
    year_cum = cumulative(1.0 + 2.0 * i / 19 for i in range(LAST_DATE.year - FIRST_DATE.year + 1))

    drafts: list[tuple[dt.date, int, str, DocumentType, int]] = []
    seen: set[tuple[int, str, dt.date, DocumentType]] = set()
    total = 0
    while total < pages:
        index = rng.choices(range(len(towns)), cum_weights=town_cum)[0]
        names, name_cum = bodies[index]
        meeting_name = rng.choices(names, cum_weights=name_cum)[0]
        day = _meeting_date(rng, year_cum)
        draw = rng.random()
        types: tuple[DocumentType, ...] = (
            ("agenda", "minutes") if draw < 0.5 else ("agenda",) if draw < 0.75 else ("minutes",)
        )
        for document_type in types:
            key = (towns[index].id, meeting_name, day, document_type)
            if key in seen or total >= pages:
                continue
            seen.add(key)
            count = round(
                rng.triangular(MIN_PAGES_PER_DOCUMENT, MAX_PAGES_PER_DOCUMENT, MODE_PAGES_PER_DOCUMENT)
            )
            count = min(count, pages - total)
            drafts.append((day, towns[index].id, meeting_name, document_type, count))
            total += count
    drafts.sort()
    documents = tuple(
        Document(i, town_id, name, day, document_type, count)
        for i, (day, town_id, name, document_type, count) in enumerate(drafts, start=1)
    )
    return Plan(seed, pages, tuple(towns), documents)
