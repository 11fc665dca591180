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
connection: the server computes the generated ``search_vector`` of every page, and that, not Python, is the
expensive part, so parallel connections keep every core busy. ``python -m ops corpus`` calls :func:`main`.
"""

from __future__ import annotations

import array
import concurrent.futures
import dataclasses
import datetime as dt
import itertools
import multiprocessing
import random
import re
import sys
import time
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NoReturn

import psycopg
from psycopg import sql
from tqdm import tqdm

from migrations import partitions
from ops import stack

if TYPE_CHECKING:
    from multiprocessing.sharedctypes import Synchronized

DocumentType = Literal["agenda", "minutes"]

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


# --- records ------------------------------------------------------------------------------------------------


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
    """One row of ``meeting_page`` (without ``search_vector``, which the server generates)."""

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
    analyze_seconds: float  # merging GIN pending lists, then ANALYZE

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
            f"{self.workers} connection(s), "
            f"GIN merge + ANALYZE {self.analyze_seconds:.1f} s)"
        )


# --- word lists ---------------------------------------------------------------------------------------------

# The top of any English text: these take the first ranks of the Zipf distribution.
_FUNCTION_WORDS = (
    "the of and to a in for is on that by with be as at this was from or are an it will not which has have "
    "all been were would any their there its shall may other such into no these more if also per upon said "
    "each under than be should who one two three new following within after before during about between"
).split()

_CIVIC_WORDS = (
    "council zoning variance ordinance cannabis dispensary liquor license budget hearing motion seconded "
    "approved approve resolution commission board mayor clerk agenda minutes public comment comments item "
    "items amendment appeal permit parcel property district street avenue sidewalk water sewer stormwater "
    "utility infrastructure contract bid award grant fund fiscal revenue expenditure tax assessment levy "
    "bond capital improvement project plan planning development subdivision plat easement setback overlay "
    "residential commercial industrial agricultural parking traffic signal intersection police fire "
    "department chief manager attorney staff report recommendation consent adjourn adjourned quorum roll "
    "call present absent abstain vote unanimous carried denied tabled continued workshop session "
    "executive closed personnel litigation library park parks recreation trail playground housing "
    "affordable rental accessory dwelling unit units historic preservation landmark facade signage "
    "billboard annexation boundary census election ballot measure referendum proclamation presentation "
    "citizen resident residents applicant petitioner neighbor neighbors testimony notice published posted "
    "engineer inspector code enforcement nuisance abatement lien fee fees schedule rate rates increase "
    "audit auditor treasurer payroll pension insurance liability claim settlement lease franchise cable "
    "broadband solar wind energy emissions climate sustainability recycling waste landfill compost tree "
    "canopy forestry wetland floodplain drainage culvert bridge road paving pothole snow removal transit "
    "bus bicycle pedestrian crosswalk school superintendent enrollment cemetery airport harbor marina "
    "beach lifeguard animal shelter dog leash noise curfew fireworks alcohol tobacco vaping marijuana "
    "dispensaries cultivation retail sales excise councilmember alderman trustee supervisor commissioner "
    "selectman chairperson chair vice secretary minutes approved reading adopted ordinances resolutions "
    "rezoning rezone zoned variance variances conditional special use uses site review design "
    "architectural committee subcommittee task force advisory hearings testimony continued postponed "
    "agenda amended consent calendar warrants claims disbursements invoices purchase order procurement "
    "vendor consultant engineering survey appraisal acquisition right-of-way encroachment vacation alley "
    "lot lots acre acres square feet zone zones density height story stories building buildings "
    "demolition renovation construction occupancy certificate inspection compliance violation violations "
    "citation fine fines penalty appeal appeals staffing overtime union collective bargaining agreement "
    "memorandum understanding interlocal intergovernmental county state federal legislature statute "
    "statutes charter bylaws policy policies procedure procedures manual strategic goals priorities "
    "objectives performance metrics dashboard quarterly annual monthly report reports update updates "
    "presentation discussion possible action direction consensus"
).split()

# Spanish, with accents: bilingual notices and interpretation appear in many places' records, and accents are
# what the unaccent dictionary of the `civic` text search configuration exists for.
_SPANISH_WORDS = (
    "café información año años reunión reuniones público pública comunidad vecinos ciudad consejo servicios "
    "educación participación audiencia comisión presupuesto vivienda política económico traducción "
    "interpretación español niños señor señora también días según número área más está aquí acción "
    "administración licencia permiso zonificación parque seguridad salud familias"
).split()

# Real words that few pages use (animal-control and agriculture items): a rare term for searches and
# benchmarks to look for, unlike filler words, which nobody would type. ops/bench.py queries "wombat".
_RARE_WORDS = "wombat raccoon coyote opossum beaver heron alpaca llama peacock rooster beekeeping".split()

_PHRASES = (
    # (phrase, relative weight): the common ones appear in most documents, the rare ones in a few.
    ("public hearing", 30),
    ("consent agenda", 20),
    ("call to order", 14),
    ("roll call", 14),
    ("public comment", 22),
    ("second reading", 10),
    ("first reading", 10),
    ("liquor license", 8),
    ("executive session", 8),
    ("conditional use permit", 7),
    ("site plan review", 6),
    ("budget amendment", 6),
    ("zoning variance", 5),
    ("capital improvement plan", 5),
    ("Main Street", 6),
    ("affordable housing", 5),
    ("short-term rental", 4),
    ("cannabis dispensary", 3),
    ("special use permit", 4),
    ("comprehensive plan", 4),
    ("stormwater management", 3),
    ("tax increment financing", 2),
    ("motion carried", 10),
    ("rezoning Main Street", 1),
    ("reunión pública", 1),
    ("información en español", 1),
    ("board of adjustment", 2),
)

# Now and then a page mentions "Parks & Recreation" or a threshold with "<": text a client must HTML-escape.
_AMPERSAND_SNIPPETS = (
    "Parks & Recreation",
    "Q&A",
    "AT&T franchise agreement",
    "P&Z",
    "Smith & Associates",
    "R&D",
    "Planning & Zoning",
    "Water & Sewer Fund",
    "B&O tax",
    "Johnson & Sons Construction",
)
_ANGLE_SNIPPETS = (
    "purchases < $5,000 need no bid",
    "lots < 5,000 sq ft",
    "height > 35 ft",
    "vote count < quorum",
    "<see attached exhibit>",
    "speed > 25 mph",
)

_SURNAMES = (
    "Smith Johnson Williams Brown Jones Miller Davis García Rodríguez Martínez Hernández López González "
    "Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Pérez Thompson White Harris Sánchez Clark "
    "Ramírez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green Adams "
    "Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Kim Patel Okafor Kowalski O'Brien Schmidt "
    "Rossi Yamamoto Chen Novak"
).split()
_TITLES = ("Councilmember", "Commissioner", "Trustee", "Alderman", "Supervisor", "Member", "Mayor", "Chair")
_MOTION_VERBS = ("approve", "adopt", "deny", "continue", "table", "accept", "authorize", "refer")

# Meeting bodies by kind of municipality; the first is the governing body and meets most often.
_BODIES: dict[str, tuple[str, ...]] = {
    "city": (
        "CityCouncil",
        "PlanningCommission",
        "ZoningBoardOfAppeals",
        "ParksAndRecreationCommittee",
        "HistoricPreservationCommission",
        "LibraryBoardOfTrustees",
        "FinanceCommittee",
        "PublicSafetyCommittee",
        "CityCouncilWorkSession",
        "CityCouncilSpecialMeeting",
        "CannabisAdvisoryBoard",
        "LiquorLicenseCommission",
        "HousingAuthority",
        "RedevelopmentAgency",
        "TransportationCommission",
        "ArtsCommission",
        "SustainabilityCommission",
        "CivilServiceCommission",
        "ZBAHearing",
        "PlanningAndZoningCommission",
    ),
    "town": (
        "TownCouncil",
        "BoardOfSelectmen",
        "PlanningBoard",
        "ZoningBoardOfAppeals",
        "ConservationCommission",
        "FinanceCommittee",
        "TownMeeting",
        "BoardOfHealth",
        "HistoricDistrictCommission",
        "ZBAHearing",
        "ParksAndRecreationCommittee",
        "CapitalPlanningCommittee",
    ),
    "village": (
        "VillageBoard",
        "PlanAndZoningCommission",
        "ZoningBoardOfAppeals",
        "ParksAndRecreationCommittee",
        "VillageBoardWorkSession",
        "LiquorControlCommission",
        "EconomicDevelopmentCommission",
        "PoliceAndFireCommission",
    ),
    "county": (
        "BoardOfSupervisors",
        "CountyCommission",
        "PlanningCommission",
        "BoardOfHealth",
        "BoardOfEqualization",
        "BoardOfSupervisorsBudgetHearing",
        "ZoningBoardOfAdjustment",
        "CannabisAdvisoryBoard",
        "AirportAuthority",
        "SolidWasteAdvisoryCommittee",
    ),
    "township": (
        "TownshipBoard",
        "TownshipTrustees",
        "ZoningCommission",
        "ZoningBoardOfAppeals",
        "PlanningCommission",
        "ParksAndRecreationCommittee",
    ),
    "borough": (
        "BoroughCouncil",
        "PlanningCommission",
        "ZoningHearingBoard",
        "ShadeTreeCommission",
        "BoroughCouncilWorkSession",
        "EnvironmentalAdvisoryCouncil",
    ),
}
_KINDS = (("city", 45), ("town", 22), ("village", 10), ("county", 12), ("township", 7), ("borough", 4))

# Roughly each state's population in millions; town counts follow its square root, so that small states are
# present too (the issue asks for many states, not a census).
_STATES = (
    ("CA", 39),
    ("TX", 30),
    ("FL", 22),
    ("NY", 20),
    ("PA", 13),
    ("IL", 12.5),
    ("OH", 11.8),
    ("GA", 11),
    ("NC", 10.7),
    ("MI", 10),
    ("NJ", 9.3),
    ("VA", 8.7),
    ("WA", 7.8),
    ("AZ", 7.4),
    ("MA", 7),
    ("TN", 7),
    ("IN", 6.8),
    ("MD", 6.2),
    ("MO", 6.2),
    ("WI", 5.9),
    ("CO", 5.8),
    ("MN", 5.7),
    ("SC", 5.3),
    ("AL", 5.1),
    ("LA", 4.6),
    ("KY", 4.5),
    ("OR", 4.2),
    ("OK", 4),
    ("CT", 3.6),
    ("UT", 3.4),
    ("IA", 3.2),
    ("NV", 3.2),
    ("AR", 3),
    ("MS", 2.9),
    ("KS", 2.9),
    ("NM", 2.1),
    ("NE", 2),
    ("ID", 1.9),
    ("WV", 1.8),
    ("HI", 1.4),
    ("NH", 1.4),
    ("ME", 1.4),
    ("MT", 1.1),
    ("RI", 1.1),
    ("DE", 1),
    ("SD", 0.9),
    ("ND", 0.8),
    ("AK", 0.7),
    ("DC", 0.7),
    ("VT", 0.6),
    ("WY", 0.6),
)
_SPANISH_NAMED_STATES = frozenset({"CA", "TX", "NM", "AZ", "CO", "FL", "NV"})
_TOWNSHIP_STATES = frozenset({"MI", "NJ", "PA", "OH", "IN", "MN", "IL"})
_BOROUGH_STATES = frozenset({"PA", "NJ", "CT", "AK"})

_NAME_ROOTS = (
    "Spring Oak Maple Cedar River Fair Green Brook Clear Glen Pine Elm Ash Stone Mill Wood Red White "
    "Black Silver Golden Rock Sand Bay Lake Hill Summer Winter Mead Wil Har Lin Ken Bell Carl Dun Ches "
    "Wells Bridge Mans Frank Madi Clay Marion Jeffer Hamil Wash Lex Ply Salem Avon Ever Hollis Bright "
    "Chat Cran Dover"
).split()
_NAME_SUFFIXES = (
    "field ville ton burg dale wood port ford view haven ridge mont land brook side wick worth chester bury "
    "ston by ham ley water"
).split()
_NAME_PREFIXES = ("North ", "South ", "East ", "West ", "Lake ", "Mount ", "Fort ", "Port ", "New ", "Glen ")
_SPANISH_NAMES = (
    "San José",
    "San Mateo",
    "San Rafael",
    "San Benito",
    "San Andrés",
    "Santa Rosa",
    "Santa Clara",
    "Santa Fe",
    "Santa Mónica",
    "Santa Bárbara",
    "Los Álamos",
    "Las Cruces",
    "El Paso",
    "Los Robles",
    "Las Lomas",
    "Española",
    "Cañon City",
    "La Quinta",
    "Buena Vista",
    "Del Mar",
    "Alamogordo",
    "Los Gatos",
    "Mesa Verde",
    "Río Rancho",
    "Peñasco",
)

_ONSETS = (
    "b bl br c ch cl cr d dr f fl fr g gl gr h j k l m n p pl pr qu r s sc sh sl sp st t th tr v w y z"
).split()
_NUCLEI = "a e i o u a e i o ai ea ee oo ou".split()
_CODAS = ("", "", "", "n", "r", "s", "l", "t", "m", "nd", "st", "ck", "ng", "x", "rt")

_MONTHS = ("January February March April May June July August September October November December").split()
_WEEKDAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
_PLACES = (
    "Council Chambers, 100 Main Street",
    "City Hall, Room 201",
    "Municipal Building, 2nd Floor",
    "Community Center, 45 Park Avenue",
    "Public Library Meeting Room",
    "Town Hall Auditorium",
    "Government Center, Board Room",
    "Virtual meeting via Zoom",
)


def _rng(seed: int | str) -> random.Random:
    """A private generator: reproducible from its seed (a ``str`` is hashed with SHA-512, never ``hash()``).

    Never the module-level ``random`` functions, whose shared state any other code may advance.
    """
    return random.Random(seed)  # noqa: S311 - synthetic data, reproducibility is the point


# --- vocabulary ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """Words by rank with their Zipf cumulative weights, and a sampling table built from them.

    ``rng.choices(words, cum_weights=cum_weights, k=n)`` samples the law exactly but runs a Python-level
    loop with a bisect per word (about 0.4 us a word, most of a page's generation time). ``table`` repeats
    each word in proportion to its weight over 2**16 slots, so :meth:`sample` turns one ``randbytes`` call
    into words entirely in C, four to five times faster; every word keeps at least one slot, so the rarest
    words are rounded up to 1/65536.
    """

    words: tuple[str, ...]
    cum_weights: tuple[float, ...]
    table: tuple[str, ...]
    mean_chars: float  # expected len(word) + 1 (the space) under the table, to size pages without measuring

    def sample(self, rng: random.Random, count: int) -> list[str]:
        """``count`` words drawn independently from the Zipf law."""
        slots = array.array("H", rng.randbytes(2 * count))
        if sys.byteorder == "big":
            slots.byteswap()  # the bytes are read little-endian everywhere, so every machine agrees
        return list(map(self.table.__getitem__, slots))


def _filler_words(rng: random.Random, count: int, taken: set[str]) -> list[str]:
    """``count`` distinct pronounceable nonsense words ("brandon", "quealst"), none of them in ``taken``."""
    words: list[str] = []
    while len(words) < count:
        syllables = rng.choices((1, 2, 3), weights=(3, 6, 1))[0]
        word = "".join(
            rng.choice(_ONSETS) + rng.choice(_NUCLEI) + rng.choice(_CODAS) for _ in range(syllables)
        )
        if len(word) >= 3 and word not in taken:
            taken.add(word)  # the set only answers "seen?"; order comes from the list
            words.append(word)
    return words


@cache
def vocabulary() -> Vocabulary:
    """The corpus vocabulary: about 5,000 words ranked for a Zipf-Mandelbrot law (1 / (rank + 2.7))."""
    rng = _rng(VOCABULARY_SEED)
    function = list(dict.fromkeys(_FUNCTION_WORDS))
    civic = [w for w in dict.fromkeys(_CIVIC_WORDS) if w not in function]
    spanish = list(dict.fromkeys(_SPANISH_WORDS))
    rare = list(dict.fromkeys(_RARE_WORDS))
    filler = _filler_words(rng, 4400, set(function) | set(civic) | set(spanish) | set(rare))
    # Rank by a random key drawn from a band per class: function words first ("the" leads), civic terms
    # common, Spanish words moderately rare, filler everywhere and forming the long tail, rare words in it.
    keyed = [(i * 0.7 + rng.random() * 3, w) for i, w in enumerate(function)]
    keyed += [(rng.uniform(10, 900), w) for w in civic]
    keyed += [(rng.uniform(150, 3000), w) for w in spanish]
    keyed += [(rng.uniform(30, 6000), w) for w in filler]
    keyed += [(rng.uniform(3500, 6000), w) for w in rare]
    keyed.sort()
    words = tuple(w for _, w in keyed)
    weights = [1.0 / (rank + 2.7) for rank in range(1, len(words) + 1)]
    cum_weights = _cumulative(weights)
    # Each word gets its share of the slots, at least one; the most common word absorbs the rounding.
    slots = 1 << 16
    counts = [max(1, round(w * slots / cum_weights[-1])) for w in weights]
    counts[0] += slots - sum(counts)
    table = tuple(word for word, n in zip(words, counts, strict=True) for _ in range(n))
    mean_chars = sum(len(w) + 1 for w in table) / slots
    return Vocabulary(words, cum_weights, table, mean_chars)


def _cumulative(weights: Iterable[float]) -> tuple[float, ...]:
    return tuple(itertools.accumulate(weights))


_PHRASE_TEXTS = tuple(p for p, _ in _PHRASES)
_PHRASE_CUM = _cumulative(w for _, w in _PHRASES)


# --- municipalities and documents ---------------------------------------------------------------------------


def _slug(name: str) -> str:
    """``"Cañon City"`` -> ``"canoncity"``: accents stripped, only [a-z0-9] kept."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    return "".join(c for c in ascii_name.lower() if c.isascii() and c.isalnum())


def _town_root(rng: random.Random) -> str:
    if rng.random() < 0.55:
        root = rng.choice(_NAME_ROOTS)
    else:
        # A made-up root ("Kellor", "Brandis") so the name space is not limited to the list above.
        root = (rng.choice(_ONSETS) + rng.choice(_NUCLEI) + rng.choice(_CODAS[3:])).title()
    return root + rng.choice(_NAME_SUFFIXES)


def _municipalities(rng: random.Random, count: int) -> list[Municipality]:
    states = [s for s, _ in _STATES]
    state_cum = _cumulative(pop**0.5 for _, pop in _STATES)
    kinds = [k for k, _ in _KINDS]
    kind_cum = _cumulative(w for _, w in _KINDS)
    result: list[Municipality] = []
    taken: set[str] = set()
    while len(result) < count:
        state = rng.choices(states, cum_weights=state_cum)[0]
        kind = rng.choices(kinds, cum_weights=kind_cum)[0]
        if (kind == "township" and state not in _TOWNSHIP_STATES) or (
            kind == "borough" and state not in _BOROUGH_STATES
        ):
            kind = "city"
        if state in _SPANISH_NAMED_STATES and rng.random() < 0.25:
            name = rng.choice(_SPANISH_NAMES)
        else:
            name = _town_root(rng)
            if rng.random() < 0.15:
                name = rng.choice(_NAME_PREFIXES) + name
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
    rng = _rng(seed)
    towns = _municipalities(rng, MUNICIPALITIES)
    # Big places publish much more than small ones: a Zipf law over a random order of the towns.
    order = list(range(len(towns)))
    rng.shuffle(order)
    town_weight = [0.0] * len(towns)
    for rank, index in enumerate(order, start=1):
        town_weight[index] = 1.0 / rank**0.7
    town_cum = _cumulative(town_weight)
    # Each town has its governing body plus a few others; the governing body meets most often.
    bodies: list[tuple[list[str], tuple[float, ...]]] = []
    for town in towns:
        pool = _BODIES[town.kind]
        others = rng.sample(pool[1:], k=min(len(pool) - 1, rng.randint(2, 6)))
        bodies.append(([pool[0], *others], _cumulative([4.0] + [1.0] * len(others))))
    # More recent years have more documents online.
    year_cum = _cumulative(1.0 + 2.0 * i / 19 for i in range(LAST_DATE.year - FIRST_DATE.year + 1))

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


# --- page text ----------------------------------------------------------------------------------------------

# Page text comes out this much longer than its words alone (measured over 50,000 pages): punctuation,
# phrases and amounts that replace single words, agenda item titles, motions.
_LENGTH_FACTOR: dict[str, float] = {"agenda": 1.08, "minutes": 1.135}
_CAMEL_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def split_camel(name: str) -> str:
    """``"ZBAHearing"`` -> ``"ZBA Hearing"``, as ``public.civic_split_name`` splits meeting names."""
    return _CAMEL_RE.sub(" ", name)


def _long_date(day: dt.date) -> str:
    return f"{_MONTHS[day.month - 1]} {day.day}, {day.year}"


def _amount(rng: random.Random) -> str:
    dollars = rng.choice((rng.randint(1, 999) * 100, rng.randint(1, 99) * 1000, rng.randint(1, 40) * 25_000))
    return f"${dollars:,}"


def _person(rng: random.Random) -> str:
    return f"{rng.choice(_TITLES)} {rng.choice(_SURNAMES)}"


class _PageWriter:
    """Generates the pages of one document from that document's own random stream.

    Each document has its own ``Random`` seeded from (corpus seed, document id), so a page's text does not
    depend on which process generates it or in what order: the loader's workers and :func:`generate` agree.
    """

    def __init__(self, seed: int, town: Municipality, doc: Document) -> None:
        self.rng = _rng(f"civic-corpus/{seed}/{doc.id}")
        self.town = town
        self.doc = doc
        self.vocab = vocabulary()
        self.body = split_camel(doc.meeting_name)
        kind = "Agenda" if doc.document_type == "agenda" else "Minutes"
        self.footer = (
            f"{town.display_name}, {town.state} · {self.body} {kind} · {_long_date(doc.meeting_date)}"
        )
        self.item = 0

    def header(self) -> str:
        doc, rng = self.doc, self.rng
        kind = "AGENDA" if doc.document_type == "agenda" else "MINUTES"
        when = f"{_WEEKDAYS[doc.meeting_date.weekday()]}, {_long_date(doc.meeting_date)}"
        hour = rng.choice(("5:30 p.m.", "6:00 p.m.", "6:30 p.m.", "7:00 p.m.", "9:00 a.m.", "10:00 a.m."))
        lines = [
            self.town.display_name.upper(),
            f"{self.body} — {kind}",
            f"{when}, {hour}",
            rng.choice(_PLACES),
        ]
        if doc.document_type == "minutes":
            present = ", ".join(rng.sample(_SURNAMES, k=rng.randint(3, 7)))
            lines.append(f"Present: {present}. Absent: {rng.choice(_SURNAMES)}.")
        return "\n".join(lines) + "\n\n"

    def _paragraphs(self, words: list[str]) -> list[str]:
        """Punctuate ``words`` into sentences of 6 to 22 words, some with a comma, 2 to 6 to a paragraph.

        Works on the word list in place and joins once per paragraph; the random decisions come from one
        ``randbytes`` call, several times cheaper than a ``randint`` per decision.
        """
        rng, count = self.rng, len(words)
        marks = rng.randbytes(count + 8)  # at most count / 6 sentences, 3 bytes each, plus paragraph sizes
        paragraphs: list[str] = []
        start = i = k = 0
        left = 2 + marks[k] % 5
        while i < count:
            n = 6 + marks[k + 1] % 17
            j = min(count, i + n)
            first = words[i]
            words[i] = first[0].upper() + first[1:]
            if n > 12 and marks[k + 2] < 100 and j - i > 8:
                words[i + 3 + marks[k + 3] % (j - i - 7)] += ","
            words[j - 1] += "."
            k += 3
            i = j
            left -= 1
            if left == 0 or i == count:
                paragraphs.append(" ".join(words[start:i]))
                start = i
                left = 2 + marks[k] % 5
        return paragraphs

    def page(self, number: int) -> Page:
        """The text of page ``number`` (1-based); pages must be asked for in order, 1 first."""
        rng, doc, vocab = self.rng, self.doc, self.vocab
        head = self.header() if number == 1 else ""
        foot = f"\n\n{self.footer} · Page {number} of {doc.pages}"
        target = min(4200, max(900, round(rng.gauss(PAGE_CHARS_MEAN, PAGE_CHARS_SD))))
        # Size the page in words from the vocabulary's expected word length instead of measuring as we go;
        # the factor covers what is added below (phrases, punctuation, agenda titles, motions).
        budget = target - len(head) - len(foot)
        count = max(24, round(budget / (vocab.mean_chars * _LENGTH_FACTOR[doc.document_type])))
        words = vocab.sample(rng, count)
        # Verbatim civic phrases and numbers, replacing a word each so the page length stays on target.
        for _ in range(rng.randrange(5)):
            words[rng.randrange(count)] = rng.choices(_PHRASE_TEXTS, cum_weights=_PHRASE_CUM)[0]
        for _ in range(rng.randrange(3)):
            words[rng.randrange(count)] = _amount(rng)
        if rng.random() < 0.03:
            words[rng.randrange(count)] = rng.choice(_AMPERSAND_SNIPPETS)
        if rng.random() < 0.008:
            words[rng.randrange(count)] = rng.choice(_ANGLE_SNIPPETS)

        paragraphs = self._paragraphs(words)
        for index, text in enumerate(paragraphs):
            if doc.document_type == "agenda":
                self.item += 1
                title = rng.choices(_PHRASE_TEXTS, cum_weights=_PHRASE_CUM)[0]
                paragraphs[index] = f"{self.item}. {title.upper()}\n{text}"
            elif rng.random() < 0.35:
                ayes, nays = rng.randint(3, 7), rng.randint(0, 2)
                resolution = f"{doc.meeting_date.year}-{rng.randint(1, 250):03d}"
                paragraphs[index] = (
                    f"{text} Motion by {_person(rng)}, seconded by {_person(rng)}, to "
                    f"{rng.choice(_MOTION_VERBS)} Resolution No. {resolution}. Motion carried {ayes}-{nays}."
                )
        kind = "agendas" if doc.document_type == "agenda" else "minutes"
        return Page(
            id=f"{self.town.subdomain}-{doc.id}-p{number}",
            meeting_date=doc.meeting_date,
            document_id=doc.id,
            municipality_id=doc.municipality_id,
            document_type=doc.document_type,
            page_number=number,
            text=head + "\n\n".join(paragraphs) + foot,
            page_image=f"/_{kind}/{doc.meeting_name}/{doc.meeting_date.isoformat()}/{number}.png",
        )


def document_pages(corpus: Plan, doc: Document) -> Iterator[Page]:
    """The pages of one document of ``corpus``, page 1 first."""
    writer = _PageWriter(corpus.seed, corpus.municipalities[doc.municipality_id - 1], doc)
    for number in range(1, doc.pages + 1):
        yield writer.page(number)


def generate(pages: int, seed: int = 1) -> Iterator[Page]:
    """Every page of the corpus of ``pages`` pages for ``seed``, in document id order (no database needed).

    Exactly what :func:`load` loads, whatever its number of workers.
    """
    corpus = plan(pages, seed)
    for doc in corpus.documents:
        yield from document_pages(corpus, doc)


# --- COPY ---------------------------------------------------------------------------------------------------

_COPY_MUNICIPALITIES = "COPY public.municipality (id, subdomain, name, state, country, kind) FROM STDIN"
_COPY_DOCUMENTS = (
    "COPY public.meeting_document (id, municipality_id, meeting_name, meeting_date, document_type) FROM STDIN"
)
_COPY_PAGES = (
    "COPY public.meeting_page (id, meeting_date, document_id, municipality_id, document_type, page_number, "
    "text, page_image) FROM STDIN"
)
_CLEAN_GIN_PENDING = """
    SELECT gin_clean_pending_list(x.indexrelid)
      FROM pg_inherits p
      JOIN pg_index x ON x.indrelid = p.inhrelid
      JOIN pg_class c ON c.oid = x.indexrelid
      JOIN pg_am a ON a.oid = c.relam
     WHERE p.inhparent = 'public.meeting_page'::regclass AND a.amname = 'gin'
"""
_CHUNK_CHARS = 1 << 20  # hand psycopg about 1 MB at a time: few calls, bounded memory


def _copy_text(value: str) -> str:
    """Escape a value for COPY's text format. Chained ``str.replace`` scans at memchr speed when, as here,
    there is almost nothing to replace; the backslash goes first so later escapes are not doubled."""
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _page_line(page: Page) -> str:
    # Only text can hold tabs, newlines or backslashes: ids, dates, names and paths use [A-Za-z0-9./-] only.
    return (
        f"{page.id}\t{page.meeting_date.isoformat()}\t{page.document_id}\t{page.municipality_id}\t"
        f"{page.document_type}\t{page.page_number}\t{_copy_text(page.text)}\t{page.page_image}\n"
    )


def _copy_lines(cursor: psycopg.Cursor[tuple[object, ...]], statement: str, lines: Iterable[str]) -> None:
    with cursor.copy(statement) as copy:
        buffer: list[str] = []
        size = 0
        for line in lines:
            buffer.append(line)
            size += len(line)
            if size >= _CHUNK_CHARS:
                copy.write("".join(buffer).encode())
                buffer, size = [], 0
        if buffer:
            copy.write("".join(buffer).encode())


def _copy_pages(
    conn: psycopg.Connection[tuple[object, ...]],
    corpus: Plan,
    documents: Sequence[Document],
    on_pages: _Progress,
) -> int:
    """COPY the pages of ``documents`` in one transaction; returns the bytes of text sent."""
    # GIN insertion appends to the index's pending list, and whichever backend overflows it (4 MB) merges
    # it into the index using work_mem: 4 MB by default, which makes the merge run in many small passes.
    # SET LOCAL: nothing outlives the transaction, even on a PgBouncer server connection that is reused.
    conn.execute("SET LOCAL work_mem = '64MB'")
    text_bytes = 0
    with conn.cursor() as cursor, cursor.copy(_COPY_PAGES) as copy:
        buffer: list[str] = []
        size = 0
        done = 0
        for doc in documents:
            for page in document_pages(corpus, doc):
                line = _page_line(page)
                buffer.append(line)
                size += len(line)
                text_bytes += len(page.text.encode())
            done += doc.pages
            if size >= _CHUNK_CHARS:
                copy.write("".join(buffer).encode())
                buffer, size = [], 0
                on_pages(done)
                done = 0
        if buffer:
            copy.write("".join(buffer).encode())
        on_pages(done)
    return text_bytes


class _Progress:
    """Counts pages sent; in a worker process it adds to a counter shared with the parent's progress bar."""

    def __init__(self, counter: Synchronized[int] | None = None, bar: tqdm[NoReturn] | None = None) -> None:
        self.counter = counter
        self.bar = bar

    def __call__(self, pages: int) -> None:
        if self.counter is not None:
            with self.counter.get_lock():
                self.counter.value += pages
        if self.bar is not None:
            self.bar.update(pages)


_worker_counter: Synchronized[int] | None = None


def _init_worker(counter: Synchronized[int]) -> None:
    # Shared counters cannot be pickled with each task; they are handed over once, when the process starts.
    global _worker_counter
    _worker_counter = counter


def _connect(dsn: str, *, autocommit: bool = False) -> psycopg.Connection[tuple[object, ...]]:
    # prepare_threshold=None: the DSN may point at PgBouncer, where server-side prepared statements break.
    return psycopg.connect(dsn, prepare_threshold=None, autocommit=autocommit)


def _load_share(dsn: str, pages: int, seed: int, first: int, stop: int) -> int:
    """Worker process: generate and COPY the pages of documents [first, stop); returns the bytes of text."""
    corpus = plan(pages, seed)  # cheap next to the pages, and identical in every process
    with _connect(dsn) as conn:
        return _copy_pages(conn, corpus, corpus.documents[first:stop], _Progress(_worker_counter))


def _shares(documents: Sequence[Document], workers: int) -> list[tuple[int, int]]:
    """Split documents, in date order, into ``workers`` contiguous runs of about equal page counts.

    Contiguous runs of dates send each worker to different yearly partitions, so the two connections do not
    contend for the same GIN pending list and B-tree pages.
    """
    total = sum(d.pages for d in documents)
    shares: list[tuple[int, int]] = []
    first = 0
    running = 0
    for index, doc in enumerate(documents):
        running += doc.pages
        if len(shares) < workers - 1 and running >= total * (len(shares) + 1) / workers:
            shares.append((first, index + 1))
            first = index + 1
    shares.append((first, len(documents)))
    return [s for s in shares if s[0] < s[1]]


def _has_rows(conn: psycopg.Connection[tuple[object, ...]], table: str) -> bool:
    # EXISTS, not count(*): counting a loaded meeting_page would read every partition.
    row = conn.execute(
        sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier("public", table))
    ).fetchone()
    return bool(row and row[0])


def has_pages(dsn: str) -> bool:
    """Whether ``meeting_page`` holds any row (what ``--if-empty`` checks)."""
    with _connect(dsn, autocommit=True) as conn:
        return _has_rows(conn, "meeting_page")


def load(dsn: str, *, pages: int, seed: int = 1, workers: int = 2, progress: bool = True) -> LoadStats:
    """Generate the corpus of ``pages`` pages for ``seed`` and COPY it into the database at ``dsn``.

    ``dsn`` is an admin connection string to the primary (a superuser or the table owner; session-mode
    PgBouncer is fine). The three tables must be empty (``TRUNCATE meeting_page, meeting_document,
    municipality RESTART IDENTITY CASCADE`` empties them). Creates the yearly partitions the dates need,
    loads municipalities and documents in one transaction, pages over ``workers`` parallel connections (one
    transaction each, ``workers=1`` stays in this process), then merges the GIN pending lists and ANALYZEs.
    With ``progress`` a bar and a summary line are printed. Raises :class:`CorpusError` when the database
    is not empty, is a replica, or the page load fails (after which the tables must be truncated).
    """
    started = time.perf_counter()
    corpus = plan(pages, seed)
    with _connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        if row is None or row[0]:
            raise CorpusError("the corpus must be loaded on the primary, and this server is a replica")
        for table in ("meeting_page", "meeting_document", "municipality"):
            if _has_rows(conn, table):
                raise CorpusError(
                    f"{table} is not empty: run 'TRUNCATE meeting_page, meeting_document, municipality "
                    "RESTART IDENTITY CASCADE' first, or pass --if-empty to keep what is there"
                )
        # Partitions first: rows COPYed into DEFAULT would have to be moved out later, row by row.
        partitions.ensure_range(conn, corpus.first_date, corpus.last_date)
        with conn.transaction(), conn.cursor() as cursor:
            _copy_lines(
                cursor,
                _COPY_MUNICIPALITIES,
                (
                    f"{m.id}\t{_copy_text(m.subdomain)}\t{_copy_text(m.name)}\t{m.state}\tUS\t{m.kind}\n"
                    for m in corpus.municipalities
                ),
            )
            _copy_lines(
                cursor,
                _COPY_DOCUMENTS,
                (
                    f"{d.id}\t{d.municipality_id}\t{d.meeting_name}\t{d.meeting_date.isoformat()}\t{d.document_type}\n"
                    for d in corpus.documents
                ),
            )
            # Ids were given explicitly, so the identity sequences have not moved: move them past our ids, or
            # the next ordinary INSERT would collide with id 1.
            for table in ("municipality", "meeting_document"):
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('public.{table}', 'id'), "
                    f"coalesce(max(id), 0) + 1, false) FROM public.{table}"
                )

    pages_started = time.perf_counter()
    shares = _shares(corpus.documents, max(1, workers))
    bar: tqdm[NoReturn] | None = (
        tqdm(total=pages, unit="page", unit_scale=True, desc="pages", smoothing=0.1) if progress else None
    )
    try:
        if len(shares) <= 1:
            with _connect(dsn) as conn:
                text_bytes = _copy_pages(conn, corpus, corpus.documents, _Progress(bar=bar))
        else:
            text_bytes = _parallel(dsn, corpus, shares, bar)
    except (psycopg.Error, OSError, BrokenProcessPool) as exc:
        # Municipalities and documents are committed, and so may be another worker's pages.
        raise CorpusError(
            f"loading pages failed ({exc}); the database holds part of the corpus: run "
            "'TRUNCATE meeting_page, meeting_document, municipality RESTART IDENTITY CASCADE' and load again"
        ) from exc
    finally:
        if bar is not None:
            bar.close()
    pages_seconds = time.perf_counter() - pages_started

    analyze_started = time.perf_counter()
    with _connect(dsn, autocommit=True) as conn:
        # Each partition's GIN index is left with up to gin_pending_list_limit (4 MB) of entries not merged
        # yet, which every search then scans linearly until autovacuum merges them; merge them now (about
        # 1.5 s for 50,000 pages) so searches and benchmarks run against a finished index.
        conn.execute(_CLEAN_GIN_PENDING)
        # ANALYZE of the partitioned parent samples every partition and then analyzes each one: the planner
        # has statistics for the new rows at once instead of after autovacuum's next pass.
        conn.execute("ANALYZE public.municipality, public.meeting_document, public.meeting_page")
    now = time.perf_counter()
    stats = LoadStats(
        municipalities=len(corpus.municipalities),
        documents=len(corpus.documents),
        pages=pages,
        text_bytes=text_bytes,
        workers=max(1, len(shares)),
        seconds=now - started,
        pages_seconds=pages_seconds,
        analyze_seconds=now - analyze_started,
    )
    if progress:
        print(stats.summary())
    return stats


def _parallel(dsn: str, corpus: Plan, shares: list[tuple[int, int]], bar: tqdm[NoReturn] | None) -> int:
    # spawn, not fork: the parent holds open libpq connections and tqdm's monitor thread, neither of which
    # may be duplicated into a child.
    context = multiprocessing.get_context("spawn")
    counter: Synchronized[int] = context.Value("q", 0)
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=len(shares), mp_context=context, initializer=_init_worker, initargs=(counter,)
    ) as pool:
        futures = [pool.submit(_load_share, dsn, corpus.pages, corpus.seed, a, b) for a, b in shares]
        shown = 0
        pending: set[concurrent.futures.Future[int]] = set(futures)
        while pending:
            _, pending = concurrent.futures.wait(pending, timeout=0.25)
            if bar is not None:
                value = counter.value
                bar.update(value - shown)
                shown = value
        # .result() re-raises a worker's exception here; the other worker has finished (or failed) by now.
        return sum(f.result() for f in futures)


# --- python -m ops corpus -----------------------------------------------------------------------------------


def admin_nodes(directory: Path) -> dict[str, str]:
    """The stack's nodes and their admin (session-mode, superuser) DSNs, from its ``stack.json``."""
    layout = stack.StackLayout.load(directory.resolve())
    if layout is None:
        raise stack.StackError(f"no stack in {directory}: run 'python -m ops stack up' first")
    nodes: dict[str, str] = {}
    for item in layout.gateway_env()["GATEWAY_ADMIN_NODES"].split(","):
        name, _, dsn = item.partition("=")  # split on the first "=": the DSN has its own
        nodes[name.strip()] = dsn.strip()
    return nodes


def primary_dsn(directory: Path) -> str:
    """The admin DSN of the stack's current primary (the node not in recovery)."""
    for dsn in admin_nodes(directory).values():
        try:
            with _connect(dsn, autocommit=True) as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        except psycopg.OperationalError:
            continue  # a node that is down cannot be the primary
        if row is not None and not row[0]:
            return dsn
    raise stack.StackError(f"no primary is running in {directory}: see 'python -m ops stack status'")


def main(*, pages: int, seed: int, directory: Path, if_empty: bool) -> LoadStats | None:
    """``python -m ops corpus``: load the corpus into the stack in ``directory``; None when skipped.

    With ``if_empty``, a database that already has pages is left alone (so ``make`` targets can call this
    unconditionally).
    """
    dsn = primary_dsn(directory)
    if if_empty and has_pages(dsn):
        print("meeting_page already has pages: nothing to do (--if-empty)")
        return None
    return load(dsn, pages=pages, seed=seed)
