"""The synthetic corpus generator (ops/corpus/), without a database: determinism and realism."""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ops import corpus
from ops.corpus.loader import _page_line, _shares

PROJECT = Path(__file__).resolve().parent.parent
WORD_RE = re.compile(r"[^\W\d_]+")
CAMEL_RE = re.compile(r"^(?:[A-Z][a-z]+|[A-Z]+(?=[A-Z][a-z]|$))+$")


@pytest.fixture(scope="module")
def pages() -> list[corpus.Page]:
    """The first 4,000 pages of a 5,000-page corpus (about 200 documents)."""
    return list(itertools.islice(corpus.generate(5000, seed=3), 4000))


@pytest.fixture(scope="module")
def sample(pages: list[corpus.Page]) -> list[corpus.Page]:
    """The first 1,000 of those."""
    return pages[:1000]


@pytest.fixture(scope="module")
def plan() -> corpus.Plan:
    return corpus.plan(5000, seed=3)


def _digest(pages: int, seed: int, first: int) -> str:
    h = hashlib.sha256()
    for page in itertools.islice(corpus.generate(pages, seed), first):
        h.update(repr(page).encode())
    return h.hexdigest()


# --- determinism --------------------------------------------------------------------------------------------


def test_same_seed_gives_the_same_pages() -> None:
    first = list(itertools.islice(corpus.generate(2000, seed=11), 200))
    second = list(itertools.islice(corpus.generate(2000, seed=11), 200))
    assert first == second


def test_same_seed_gives_the_same_plan() -> None:
    assert corpus.plan(2000, seed=11) == corpus.plan(2000, seed=11)


def test_different_seeds_give_different_corpora() -> None:
    a = list(itertools.islice(corpus.generate(2000, seed=1), 50))
    b = list(itertools.islice(corpus.generate(2000, seed=2), 50))
    assert [p.text for p in a] != [p.text for p in b]
    assert corpus.plan(2000, seed=1).municipalities != corpus.plan(2000, seed=2).municipalities


def test_output_does_not_depend_on_hash_randomization() -> None:
    # str hashes (and so set order) change with PYTHONHASHSEED; the corpus must not. This process runs
    # with a random hash seed (unless PYTHONHASHSEED is set to 4242, then the test proves nothing).
    code = "import tests.test_corpus as t\nprint(t._digest(800, 5, 60))"
    env = {**os.environ, "PYTHONHASHSEED": "4242"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == _digest(800, 5, 60)


def test_a_document_s_pages_do_not_depend_on_what_was_generated_before() -> None:
    # The loader's workers each generate a share of the documents; they must produce what generate() does.
    plan = corpus.plan(3000, seed=9)
    doc = plan.documents[len(plan.documents) // 2]
    expected = [p for p in corpus.generate(3000, seed=9) if p.document_id == doc.id]
    assert list(corpus.document_pages(plan, doc)) == expected


# --- shape --------------------------------------------------------------------------------------------------


def test_exactly_the_requested_number_of_pages_with_unique_ids(plan: corpus.Plan) -> None:
    assert sum(d.pages for d in plan.documents) == 5000
    assert [d.id for d in plan.documents] == list(range(1, len(plan.documents) + 1))
    pages = list(corpus.generate(1234, seed=3))
    assert len(pages) == 1234
    assert len({p.id for p in pages}) == len(pages)
    assert corpus.plan(0, seed=3).documents == ()


def test_documents_are_unique_dated_and_sized(plan: corpus.Plan) -> None:
    keys = [(d.municipality_id, d.meeting_name, d.meeting_date, d.document_type) for d in plan.documents]
    assert len(set(keys)) == len(keys)
    assert all(corpus.FIRST_DATE <= d.meeting_date <= corpus.LAST_DATE for d in plan.documents)
    assert all(d.meeting_date.weekday() < 5 for d in plan.documents)
    assert [d.meeting_date for d in plan.documents] == sorted(d.meeting_date for d in plan.documents)
    assert {d.document_type for d in plan.documents} == {"agenda", "minutes"}
    sizes = [d.pages for d in plan.documents[:-1]]  # the last one is cut to fit
    assert min(sizes) >= corpus.MIN_PAGES_PER_DOCUMENT and max(sizes) <= corpus.MAX_PAGES_PER_DOCUMENT
    assert 17 <= sum(sizes) / len(sizes) <= 23
    years = {d.meeting_date.year for d in plan.documents}
    assert len(years) == 20


def test_pages_of_a_document_are_numbered_and_imaged(sample: list[corpus.Page]) -> None:
    by_doc: dict[int, list[corpus.Page]] = collections.defaultdict(list)
    for page in sample:
        by_doc[page.document_id].append(page)
    for pages in by_doc.values():
        assert [p.page_number for p in pages] == list(range(1, len(pages) + 1))
    page = sample[2]
    kind = "agendas" if page.document_type == "agenda" else "minutes"
    assert re.fullmatch(rf"/_{kind}/[A-Za-z]+/\d{{4}}-\d{{2}}-\d{{2}}/3\.png", page.page_image)
    assert page.page_image.split("/")[3] == page.meeting_date.isoformat()
    assert re.fullmatch(r"[a-z0-9.-]+-\d+-p\d+", page.id)


def test_municipalities_span_many_states(plan: corpus.Plan) -> None:
    towns = plan.municipalities
    assert len(towns) >= 300
    assert len({t.state for t in towns}) >= 40
    assert len({t.subdomain for t in towns}) == len(towns)
    for town in towns:
        assert re.fullmatch(r"[a-z0-9][a-z0-9.-]*", town.subdomain), town
        assert town.subdomain.endswith("." + town.state.lower())
        assert re.fullmatch(r"[A-Z]{2}", town.state)
        assert 1 <= len(town.name) <= 200
    # Documents come from many of them, big places more than small ones.
    per_town = collections.Counter(d.municipality_id for d in plan.documents)
    assert len(per_town) >= 100
    assert per_town.most_common(1)[0][1] >= 5 * (len(plan.documents) / len(per_town))


def test_meeting_names_are_camel_case(plan: corpus.Plan) -> None:
    names = {d.meeting_name for d in plan.documents}
    assert len(names) >= 15
    assert all(CAMEL_RE.match(n) for n in names), names
    assert {"CityCouncil", "PlanningCommission"} <= names
    assert any(len(corpus.split_camel(n).split()) >= 4 for n in names)  # ZoningBoardOfAppeals and the like
    assert corpus.split_camel("ZBAHearing") == "ZBA Hearing"


# --- text ---------------------------------------------------------------------------------------------------


def test_pages_average_about_2_5_kb(sample: list[corpus.Page]) -> None:
    sizes = [len(p.text.encode()) for p in sample]
    mean = sum(sizes) / len(sizes)
    assert 2250 <= mean <= 2750, mean
    assert min(sizes) >= 500 and max(sizes) <= 6000


def test_word_frequencies_are_zipf_like(sample: list[corpus.Page]) -> None:
    counts = collections.Counter(w for p in sample for w in WORD_RE.findall(p.text.lower()))
    ranked = [n for _, n in counts.most_common()]
    assert len(ranked) >= 3000  # several thousand distinct words
    assert ranked[0] >= 15 * ranked[99]
    assert ranked[9] >= 3 * ranked[99]
    assert ranked[99] >= 3 * ranked[999]


def test_vocabulary_has_civic_spanish_and_filler_words() -> None:
    vocab = corpus.vocabulary()
    assert 4000 <= len(vocab.words) == len(set(vocab.words))
    civic = {"council", "zoning", "variance", "ordinance", "cannabis", "dispensary", "liquor", "license", "wombat"}
    assert civic <= set(vocab.words)
    assert len(vocab.table) == 1 << 16 and set(vocab.table) == set(vocab.words)


def test_accented_spanish_words_appear(sample: list[corpus.Page]) -> None:
    text = " ".join(p.text for p in sample)
    found = {w for w in ("café", "información", "año", "reunión", "público", "comisión") if w in text}
    assert len(found) >= 4, found
    assert sum(1 for p in sample if re.search(r"[áéíóúñ]", p.text)) >= len(sample) // 2


def test_civic_phrases_appear_verbatim(sample: list[corpus.Page], pages: list[corpus.Page]) -> None:
    text = "\n".join(p.text for p in sample).lower()
    for phrase in ("public hearing", "liquor license", "consent agenda", "conditional use permit"):
        assert phrase in text, phrase
    assert any("rezoning main street" in p.text.lower() for p in pages)


def test_html_special_characters_are_present_but_rare(
    sample: list[corpus.Page], pages: list[corpus.Page]
) -> None:
    with_amp = sum("&" in p.text for p in pages)
    with_lt = sum("<" in p.text for p in pages)
    assert 0 < with_amp <= 0.08 * len(pages)
    assert 0 < with_lt <= 0.03 * len(pages)
    assert not any("\\" in p.text or "\t" in p.text or "\x00" in p.text for p in sample)


def test_first_pages_carry_a_header_and_every_page_a_footer(
    sample: list[corpus.Page], plan: corpus.Plan
) -> None:
    page = sample[0]
    town = plan.municipalities[page.municipality_id - 1]
    assert page.page_number == 1
    assert page.text.startswith(town.display_name.upper())
    assert all(p.text.rstrip().endswith(f"Page {p.page_number} of {plan.documents[p.document_id - 1].pages}")
               for p in sample)


# --- loader helpers (no database) ---------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_shares_cover_documents_contiguously_and_evenly(plan: corpus.Plan, workers: int) -> None:
    shares = _shares(plan.documents, workers)
    assert len(shares) == workers
    assert shares[0][0] == 0 and shares[-1][1] == len(plan.documents)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(shares))
    sizes = [sum(d.pages for d in plan.documents[a:b]) for a, b in shares]
    assert max(sizes) - min(sizes) <= 2 * corpus.MAX_PAGES_PER_DOCUMENT


def test_copy_lines_escape_text() -> None:
    image = "/_agendas/X/2020-01-02/1.png"
    page = corpus.Page("x.ca-1-p1", dt.date(2020, 1, 2), 1, 1, "agenda", 1, "a\\b\tc\nd\re", image)
    line = _page_line(page)
    assert line == f"x.ca-1-p1\t2020-01-02\t1\t1\tagenda\t1\ta\\\\b\\tc\\nd\\re\t{image}\n"
