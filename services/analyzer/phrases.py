"""Finding script phrases in a transcript: lemmas for Russian word forms, tolerance for ASR slips.

"Компания Ромашка" matches "компании ромашки" (lemmas) and "кампании ромашки"
(a one-letter slip), «договоримся» matches «договариваемся» (an aspect pair), «пять
минут» matches «5 минут» (numbers read as values): the word rules of `shared/words.py`.
Words of other languages are compared lower-cased. Every match keeps the quote with its
word timestamps and speaker.

Telephone-band ASR slips go further than a letter in a long word ("call you back" heard
as "call you Mac", "makes the decision" as "makes none decision"). A phrase of two words
or more that is not found word by word is also looked for as a whole: a run of about as
many words whose lemmas, as one string, are at least `PHRASE_FUZZY_MIN_SCORE` similar.
Measured on generated 8 kHz calls (`make bench-analyze`), that finds most such slips and
no near misses; a negation must be in both or in neither, so «не ваше дело» is never
«наше дело», and the numbers must be the same.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rapidfuzz import fuzz

from services.analyzer.transcript import SpeakerName, Utterance, Word
from shared.words import WORD, is_number, numbers_read, phrase_lemmas, similar

# A phrase may have at most this many extra words inside it ("удобно вам сейчас говорить"),
# not counting Russian particles and pronouns, which slide into any phrase («остались ли у
# вас ещё вопросы» for «остались вопросы»), up to MAX_SKIPPED words in all.
MAX_GAP_WORDS = 2
MAX_SKIPPED = 5
LIGHT_WORDS = frozenset(
    {
        *("ли", "же", "бы", "ведь", "еще", "уже", "вот", "ну", "тоже", "также", "у"),
        *("я", "ты", "он", "она", "мы", "вы", "они", "это", "так", "там", "тут", "сейчас"),
        "пожалуйста",
    }
)
MAX_GAP_S = 2.0
PHRASE_FUZZY_MIN_SCORE = 85.0
PHRASE_FUZZY_MIN_CHARS = 10
NEGATIONS = frozenset(
    {
        "не",
        "ни",
        "нет",
        "not",
        "no",
        "never",
        "nothing",
        "don't",
        "doesn't",
        "didn't",
        "won't",
        "can't",
    }
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
    """Flatten utterances into lemma tokens in time order; a number said in several words
    («триста пятьдесят тысяч») is one token of its value, quoted as said."""
    tokens = []
    for utterance in utterances:
        parts = [(part, word) for word in utterance.words for part in WORD.findall(word.text)]
        for read, first, last in numbers_read([part for part, _ in parts]):
            words = list(dict.fromkeys(word for _, word in parts[first : last + 1]))
            said = words[0] if len(words) == 1 else _joined(words)
            tokens.append(Token(read, said, utterance.speaker))
    tokens.sort(key=lambda token: token.word.start_s)
    return tokens


def _joined(words: Sequence[Word]) -> Word:
    return Word(" ".join(word.text for word in words), words[0].start_s, words[-1].end_s)


def find_phrase(
    phrase: str,
    tokens: Sequence[Token],
    *,
    speaker: str = "any",
    within_s: float | None = None,
    whole: bool = True,
) -> Quote | None:
    """The first place the phrase was said (by `speaker`, starting within `within_s`):
    word by word, else (for a longer phrase, unless `whole` is off) as a whole with ASR
    slips."""
    expected = phrase_lemmas(phrase)
    if not expected:
        return None
    said = [t for t in tokens if speaker == "any" or t.speaker == speaker]
    found = _word_by_word(expected, said, within_s)
    if found is None and whole:
        found = _as_a_whole(expected, said, within_s)
    return found


def every_place(
    phrase: str, tokens: Sequence[Token], *, speaker: str = "any", within_s: float | None = None
) -> list[Quote]:
    """Every place the phrase was said, one after another, each found as `find_phrase`
    finds the first."""
    found: list[Quote] = []
    rest = list(tokens)
    while (quote := find_phrase(phrase, rest, speaker=speaker, within_s=within_s)) is not None:
        found.append(quote)
        rest = [token for token in rest if token.word.start_s > quote.end_s]
    return found


def _quote(tokens: Sequence[Token]) -> Quote:
    words = list(dict.fromkeys(t.word for t in tokens))  # "10%" is two tokens of one word
    return Quote(
        text=" ".join(word.text.strip() for word in words),
        start_s=words[0].start_s,
        end_s=words[-1].end_s,
        speaker=tokens[0].speaker,
    )


def _word_by_word(
    expected: Sequence[str], said: Sequence[Token], within_s: float | None
) -> Quote | None:
    for first in range(len(said)):
        start = said[first]
        if within_s is not None and start.word.start_s > within_s:
            return None
        if not similar(start.lemma, expected[0]):
            continue
        last = _match_rest(said, first, expected[1:])
        if last is not None:
            return _quote(said[first : last + 1])
    return None


def _as_a_whole(
    expected: Sequence[str], said: Sequence[Token], within_s: float | None
) -> Quote | None:
    """The first run of one speaker's words (as many as the phrase's, one fewer or one
    more, without a long pause) that reads like the phrase."""
    wanted = " ".join(expected)
    if len(expected) < 2 or len(wanted) < PHRASE_FUZZY_MIN_CHARS:
        return None
    negated = bool(NEGATIONS & set(expected))
    numbers = sorted(word for word in expected if is_number(word))
    for first in range(len(said)):
        if within_s is not None and said[first].word.start_s > within_s:
            return None
        for count in (len(expected) - 1, len(expected), len(expected) + 1):
            words = said[first : first + count]
            if len(words) < count or not _one_breath(words):
                break
            heard = [t.lemma for t in words]
            if bool(NEGATIONS & set(heard)) != negated:
                continue
            if sorted(word for word in heard if is_number(word)) != numbers:
                continue
            if fuzz.ratio(wanted, " ".join(heard)) >= PHRASE_FUZZY_MIN_SCORE:
                return _quote(words)
    return None


def _one_breath(words: Sequence[Token]) -> bool:
    return all(
        later.speaker == words[0].speaker and later.word.start_s - earlier.word.end_s <= MAX_GAP_S
        for earlier, later in itertools.pairwise(words)
    )


def _match_rest(said: Sequence[Token], first: int, rest: Sequence[str]) -> int | None:
    position = first
    for expected in rest:
        skipped = 0
        for candidate in range(position + 1, min(position + 2 + MAX_SKIPPED, len(said))):
            token = said[candidate]
            close = token.word.start_s - said[position].word.end_s <= MAX_GAP_S
            if close and token.speaker == said[first].speaker and similar(token.lemma, expected):
                position = candidate
                break
            skipped += token.lemma not in LIGHT_WORDS
            if skipped > MAX_GAP_WORDS:
                return None
        else:
            return None
    return position
