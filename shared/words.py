"""Words as the product compares them: lemmas for Russian word forms (pymorphy3, `ё`
folded to `е`), lower case for other scripts, and a one-letter ASR slip in a long word
forgiven (rapidfuzz). Script phrases (the analyzer) and transcript search (the gateway)
match words by these same rules."""

from __future__ import annotations

import functools
import re

import pymorphy3
from rapidfuzz import fuzz

WORD = re.compile(r"\w+(?:[-']\w+)*")
CYRILLIC = re.compile(r"[а-яё]")
# Short words must match exactly: "не" and "на" are one letter apart and mean different things.
FUZZY_MIN_LENGTH = 5
FUZZY_MIN_SCORE = 80.0


@functools.cache
def _morph() -> pymorphy3.MorphAnalyzer:
    return pymorphy3.MorphAnalyzer()


@functools.lru_cache(maxsize=100_000)
def lemma(word: str) -> str:
    """The dictionary form of a word; `ё` is folded to `е`, other scripts are lower-cased."""
    folded = word.lower().replace("ё", "е")
    if CYRILLIC.search(folded):
        return str(_morph().parse(folded)[0].normal_form).replace("ё", "е")
    return folded


def lemmas(text: str) -> tuple[str, ...]:
    """Lemmas of the words of a text, punctuation dropped."""
    return tuple(lemma(word) for word in WORD.findall(text))


def slip_tolerant(word: str) -> bool:
    """Whether a lemma is long enough for a small ASR slip in it to be forgiven."""
    return len(word) >= FUZZY_MIN_LENGTH


def similar(said: str, expected: str) -> bool:
    """Equal lemmas, or a long word with a small ASR slip."""
    if said == expected:
        return True
    return (
        slip_tolerant(said)
        and slip_tolerant(expected)
        and fuzz.ratio(said, expected) >= FUZZY_MIN_SCORE
    )
