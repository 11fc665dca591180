"""The text of each page: headers, agenda items, motions, phrases and filler, deterministic for a seed."""

from __future__ import annotations

import datetime as dt
import random
import re
from collections.abc import Iterator

from ops.corpus.model import PAGE_CHARS_MEAN, PAGE_CHARS_SD, Document, Municipality, Page, Plan
from ops.corpus.planning import plan
from ops.corpus.vocabulary import PHRASE_CUM, PHRASE_TEXTS, vocabulary
from ops.corpus.words import (
    AMPERSAND_SNIPPETS,
    ANGLE_SNIPPETS,
    MONTHS,
    MOTION_VERBS,
    PLACES,
    SURNAMES,
    TITLES,
    WEEKDAYS,
    seeded_random,
)

# Page text comes out this much longer than its words alone (measured over 50,000 pages): punctuation,
# phrases and amounts that replace single words, agenda item titles, motions.
_LENGTH_FACTOR: dict[str, float] = {"agenda": 1.08, "minutes": 1.135}
_CAMEL_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def split_camel(name: str) -> str:
    """``"ZBAHearing"`` -> ``"ZBA Hearing"``, as ``public.civic_split_name`` splits meeting names."""
    return _CAMEL_RE.sub(" ", name)


def _long_date(day: dt.date) -> str:
    return f"{MONTHS[day.month - 1]} {day.day}, {day.year}"


def _amount(rng: random.Random) -> str:
    dollars = rng.choice((rng.randint(1, 999) * 100, rng.randint(1, 99) * 1000, rng.randint(1, 40) * 25_000))
    return f"${dollars:,}"


def _person(rng: random.Random) -> str:
    return f"{rng.choice(TITLES)} {rng.choice(SURNAMES)}"


class _PageWriter:
    """Generates the pages of one document from that document's own random stream.

    Each document has its own ``Random`` seeded from (corpus seed, document id), so a page's text does not
    depend on which process generates it or in what order: the loader's workers and :func:`generate` agree.
    """

    def __init__(self, seed: int, town: Municipality, doc: Document) -> None:
        self.rng = seeded_random(f"civic-corpus/{seed}/{doc.id}")
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
        when = f"{WEEKDAYS[doc.meeting_date.weekday()]}, {_long_date(doc.meeting_date)}"
        hour = rng.choice(("5:30 p.m.", "6:00 p.m.", "6:30 p.m.", "7:00 p.m.", "9:00 a.m.", "10:00 a.m."))
        lines = [
            self.town.display_name.upper(),
            f"{self.body} — {kind}",
            f"{when}, {hour}",
            rng.choice(PLACES),
        ]
        if doc.document_type == "minutes":
            present = ", ".join(rng.sample(SURNAMES, k=rng.randint(3, 7)))
            lines.append(f"Present: {present}. Absent: {rng.choice(SURNAMES)}.")
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
            words[rng.randrange(count)] = rng.choices(PHRASE_TEXTS, cum_weights=PHRASE_CUM)[0]
        for _ in range(rng.randrange(3)):
            words[rng.randrange(count)] = _amount(rng)
        if rng.random() < 0.03:
            words[rng.randrange(count)] = rng.choice(AMPERSAND_SNIPPETS)
        if rng.random() < 0.008:
            words[rng.randrange(count)] = rng.choice(ANGLE_SNIPPETS)

        paragraphs = self._paragraphs(words)
        for index, text in enumerate(paragraphs):
            if doc.document_type == "agenda":
                self.item += 1
                title = rng.choices(PHRASE_TEXTS, cum_weights=PHRASE_CUM)[0]
                paragraphs[index] = f"{self.item}. {title.upper()}\n{text}"
            elif rng.random() < 0.35:
                ayes, nays = rng.randint(3, 7), rng.randint(0, 2)
                resolution = f"{doc.meeting_date.year}-{rng.randint(1, 250):03d}"
                paragraphs[index] = (
                    f"{text} Motion by {_person(rng)}, seconded by {_person(rng)}, to "
                    f"{rng.choice(MOTION_VERBS)} Resolution No. {resolution}. Motion carried {ayes}-{nays}."
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
