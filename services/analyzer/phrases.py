"""Finding script phrases in a transcript: lemmas for Russian word forms, tolerance for ASR slips.

"Компания Ромашка" matches "компании ромашки" (lemmas via pymorphy3) and "кампании
ромашки" (one-letter slip, rapidfuzz). Words of other languages are compared
lower-cased. Every match keeps the quote with its word timestamps and speaker.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pymorphy3
from rapidfuzz import fuzz

from services.analyzer.transcript import SpeakerName, Utterance, Word

WORD = re.compile(r"\w+(?:[-']\w+)*")
CYRILLIC = re.compile(r"[а-яё]")
# Short words must match exactly: "не" and "на" are one letter apart and mean different things.
FUZZY_MIN_LENGTH = 5
FUZZY_MIN_SCORE = 80.0
# A phrase may have at most this many extra words inside it ("удобно вам сейчас говорить").
MAX_GAP_WORDS = 2
MAX_GAP_S = 2.0


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


def similar(said: str, expected: str) -> bool:
    """Equal lemmas, or a long word with a small ASR slip."""
    if said == expected:
        return True
    return (
        min(len(said), len(expected)) >= FUZZY_MIN_LENGTH
        and fuzz.ratio(said, expected) >= FUZZY_MIN_SCORE
    )


@dataclass(frozen=True)
class Token:
    """One word of the transcript with its lemma and speaker."""

    lemma: str
    word: Word
    speaker: SpeakerName


@dataclass(frozen=True)
class Quote:
    """Evidence: what was said, when, by whom."""

    text: str
    start_s: float
    end_s: float
    speaker: SpeakerName


def tokenize(utterances: Iterable[Utterance]) -> list[Token]:
    """Flatten utterances into lemma tokens in time order."""
    tokens = [
        Token(lemma(part), word, utterance.speaker)
        for utterance in utterances
        for word in utterance.words
        for part in WORD.findall(word.text)
    ]
    tokens.sort(key=lambda token: token.word.start_s)
    return tokens


def find_phrase(
    phrase: str,
    tokens: Sequence[Token],
    *,
    speaker: str = "any",
    within_s: float | None = None,
) -> Quote | None:
    """The first place the phrase was said (by `speaker`, starting within `within_s`)."""
    expected = lemmas(phrase)
    if not expected:
        return None
    said = [t for t in tokens if speaker == "any" or t.speaker == speaker]
    for first in range(len(said)):
        start = said[first]
        if within_s is not None and start.word.start_s > within_s:
            return None
        if not similar(start.lemma, expected[0]):
            continue
        last = _match_rest(said, first, expected[1:])
        if last is not None:
            words = said[first : last + 1]
            return Quote(
                text=" ".join(t.word.text.strip() for t in words),
                start_s=start.word.start_s,
                end_s=said[last].word.end_s,
                speaker=start.speaker,
            )
    return None


def _match_rest(said: Sequence[Token], first: int, rest: Sequence[str]) -> int | None:
    position = first
    for expected in rest:
        for candidate in range(position + 1, min(position + 2 + MAX_GAP_WORDS, len(said))):
            token = said[candidate]
            close = token.word.start_s - said[position].word.end_s <= MAX_GAP_S
            if close and token.speaker == said[first].speaker and similar(token.lemma, expected):
                position = candidate
                break
        else:
            return None
    return position
