"""The Zipf-ranked vocabulary pages are drawn from, fixed whatever the corpus seed."""

from __future__ import annotations

import array
import dataclasses
import itertools
import random
import sys
from collections.abc import Iterable
from functools import cache

from ops.corpus.model import VOCABULARY_SEED
from ops.corpus.words import (
    CIVIC_WORDS,
    CODAS,
    FUNCTION_WORDS,
    NUCLEI,
    ONSETS,
    PHRASES,
    RARE_WORDS,
    SPANISH_WORDS,
    seeded_random,
)


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
            rng.choice(ONSETS) + rng.choice(NUCLEI) + rng.choice(CODAS) for _ in range(syllables)
        )
        if len(word) >= 3 and word not in taken:
            taken.add(word)  # the set only answers "seen?"; order comes from the list
            words.append(word)
    return words


@cache
def vocabulary() -> Vocabulary:
    """The corpus vocabulary: about 5,000 words ranked for a Zipf-Mandelbrot law (1 / (rank + 2.7))."""
    rng = seeded_random(VOCABULARY_SEED)
    function = list(dict.fromkeys(FUNCTION_WORDS))
    civic = [w for w in dict.fromkeys(CIVIC_WORDS) if w not in function]
    spanish = list(dict.fromkeys(SPANISH_WORDS))
    rare = list(dict.fromkeys(RARE_WORDS))
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
    cum_weights = cumulative(weights)
    # Each word gets its share of the slots, at least one; the most common word absorbs the rounding.
    slots = 1 << 16
    counts = [max(1, round(w * slots / cum_weights[-1])) for w in weights]
    counts[0] += slots - sum(counts)
    table = tuple(word for word, n in zip(words, counts, strict=True) for _ in range(n))
    mean_chars = sum(len(w) + 1 for w in table) / slots
    return Vocabulary(words, cum_weights, table, mean_chars)


def cumulative(weights: Iterable[float]) -> tuple[float, ...]:
    return tuple(itertools.accumulate(weights))


PHRASE_TEXTS = tuple(p for p, _ in PHRASES)
PHRASE_CUM = cumulative(w for _, w in PHRASES)
