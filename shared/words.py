"""Words as the product compares them: lemmas for Russian word forms (pymorphy3, `ё`
folded to `е`), lower case for other scripts, both verbs of a Russian aspect pair
(«договоримся» and «договариваемся»), and a one-letter ASR slip in a long word forgiven
(rapidfuzz). Script phrases (the analyzer) and transcript search (the gateway) match
words by these same rules.

Script phrases also read numbers as their value, however they are written: «пять
минут», «5 минут»; «триста пятьдесят тысяч», «350 тысяч», «350 000»; «десять процентов»,
«10%» (`numbers_read`). Whisper writes digits for most numbers said.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import pymorphy3
from rapidfuzz import fuzz

# A word, a number with its separators ("350,000", "1,5"), or a per cent sign.
WORD = re.compile(r"\d+(?:[.,]\d+)*|\w+(?:[-']\w+)*|%")
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


def counted(count: int, word: str) -> str:
    """A count with its noun (given in the nominative singular) agreed, as Russian says
    it: «1 раз», «2 раза», «5 раз», «21 раз»."""
    noun = next((p for p in _morph().parse(word) if {"NOUN", "nomn", "sing"} in p.tag), None)
    agreed = noun and noun.make_agree_with_number(count)
    return f"{count} {agreed.word if agreed else word}"


def lemmas(text: str) -> tuple[str, ...]:
    """Lemmas of the words of a text, punctuation dropped."""
    return tuple(lemma(word) for word in WORD.findall(text))


def slip_tolerant(word: str) -> bool:
    """Whether a lemma is long enough for a small ASR slip in it to be forgiven (a number
    never is: 350000 is not 300000)."""
    return len(word) >= FUZZY_MIN_LENGTH and not is_number(word)


def is_number(word: str) -> bool:
    """Whether a lemma is a number's value (`numbers_read`)."""
    return word[:1].isdigit()


def similar(said: str, expected: str) -> bool:
    """Equal lemmas, verbs of one aspect pair, or a long word with a small ASR slip."""
    if said == expected or said in aspect_partners(expected):
        return True
    return (
        slip_tolerant(said)
        and slip_tolerant(expected)
        and fuzz.ratio(said, expected) >= FUZZY_MIN_SCORE
    )


# Number words by lemma (cardinals and ordinals), Russian and English.
_NUMBERS: dict[str, float] = {
    **dict.fromkeys(("ноль", "нуль", "zero"), 0),
    "полтора": 1.5,
    # Half a scale in one word (as pymorphy3 reads it): «полтысячи», «полмиллиона».
    "полтысяча": 500,
    "полмиллиона": 5 * 10**5,
    "полмиллиарда": 5 * 10**8,
    **{
        word: value
        for value, words in enumerate(
            (
                (),
                ("один", "первый", "one", "first"),
                ("два", "второй", "two", "second"),
                ("три", "третий", "three", "third"),
                ("четыре", "четвертый", "four", "fourth"),
                ("пять", "пятый", "five", "fifth"),
                ("шесть", "шестой", "six", "sixth"),
                ("семь", "седьмой", "seven", "seventh"),
                ("восемь", "восьмой", "eight", "eighth"),
                ("девять", "девятый", "nine", "ninth"),
                ("десять", "десятый", "ten", "tenth"),
                ("одиннадцать", "одиннадцатый", "eleven", "eleventh"),
                ("двенадцать", "двенадцатый", "twelve", "twelfth"),
                ("тринадцать", "тринадцатый", "thirteen", "thirteenth"),
                ("четырнадцать", "четырнадцатый", "fourteen", "fourteenth"),
                ("пятнадцать", "пятнадцатый", "fifteen", "fifteenth"),
                ("шестнадцать", "шестнадцатый", "sixteen", "sixteenth"),
                ("семнадцать", "семнадцатый", "seventeen", "seventeenth"),
                ("восемнадцать", "восемнадцатый", "eighteen", "eighteenth"),
                ("девятнадцать", "девятнадцатый", "nineteen", "nineteenth"),
            ),
        )
        for word in words
    },
    **{
        word: 10 * tens
        for tens, words in enumerate(
            (
                (),
                (),
                ("двадцать", "двадцатый", "twenty", "twentieth"),
                ("тридцать", "тридцатый", "thirty", "thirtieth"),
                ("сорок", "сороковой", "forty", "fortieth"),
                ("пятьдесят", "пятидесятый", "fifty", "fiftieth"),
                ("шестьдесят", "шестидесятый", "sixty", "sixtieth"),
                ("семьдесят", "семидесятый", "seventy", "seventieth"),
                ("восемьдесят", "восьмидесятый", "eighty", "eightieth"),
                ("девяносто", "девяностый", "ninety", "ninetieth"),
            ),
        )
        for word in words
    },
    **{
        word: 100 * hundreds
        for hundreds, words in enumerate(
            (
                (),
                ("сто", "сотый"),
                ("двести", "двухсотый"),
                ("триста", "трехсотый"),
                ("четыреста", "четырехсотый"),
                ("пятьсот", "пятисотый"),
                ("шестьсот", "шестисотый"),
                ("семьсот", "семисотый"),
                ("восемьсот", "восьмисотый"),
                ("девятьсот", "девятисотый"),
            ),
        )
        for word in words
    },
}
# Words that multiply what was said before them.
_SCALES = {
    "тысяча": 1000,
    "миллион": 10**6,
    "миллиард": 10**9,
    "тыс": 1000,  # «250 тыс», «1,5 млн»: as people write them
    "млн": 10**6,
    "млрд": 10**9,
    "thousand": 1000,
    "million": 10**6,
    "billion": 10**9,
}
_HUNDRED = "hundred"  # multiplies the last group only: "two thousand three hundred"
PERCENT = {"%": "%", "процент": "%", "percent": "%"}
_DIGITS = re.compile(r"\d+(?:[.,]\d+)*")
_THOUSANDS_GROUP = re.compile(r"\d{3}(?:[.,]\d+)?")  # "1 234,5", "350 000"


def _digits_value(text: str) -> float:
    """ "350,000", "1.250.000": groups of thousands; "1,5", "12.5": a fraction;
    "1,250,000.5": both (the last separator of another kind is the fraction's)."""
    separators = [char for char in text if char in ".,"]
    if not separators:
        return float(text)
    last = separators[-1]
    whole, _, fraction = text.rpartition(last)
    if len(set(separators)) > 1:
        return float(f"{re.sub(r'[.,]', '', whole)}.{fraction}")
    groups = text.split(last)
    if len(groups[0]) <= 3 and all(len(group) == 3 for group in groups[1:]):
        return float("".join(groups))
    return float(f"{whole.replace(last, '')}.{fraction}")


def _value_text(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def phrase_lemmas(text: str) -> tuple[str, ...]:
    """Lemmas of a script phrase's words, its numbers read as their values."""
    return tuple(read for read, _, _ in numbers_read(WORD.findall(text)))


def numbers_read(parts: Sequence[str]) -> list[tuple[str, int, int]]:
    """The lemmas of a run of words with every number as one token of its value: each
    (lemma, index of its first word, index of its last); "процент" and "%" are "%"."""
    read: list[tuple[str, int, int]] = []
    index = 0
    while index < len(parts):
        end, value = _number_at(parts, index)
        if end > index:
            read.append((_value_text(value), index, end - 1))
            index = end
            continue
        word = lemma(parts[index])
        read.append((PERCENT.get(word, word), index, index))
        index += 1
    return read


def _number_at(parts: Sequence[str], start: int) -> tuple[int, float]:
    """Where the number starting at `start` ends (`start`: none starts there), and its value."""
    total = group = 0.0
    index = start
    previous_digits: str | None = None
    while index < len(parts):
        part = parts[index]
        if _DIGITS.fullmatch(part):
            if previous_digits is not None and _THOUSANDS_GROUP.fullmatch(part):
                group = group * 1000 + _digits_value(part)  # "350 000": a group of thousands
            elif index > start and previous_digits is not None:
                break  # two numbers in a row
            else:
                group += _digits_value(part)
            previous_digits = part
            index += 1
            continue
        word = lemma(part)
        if word in _NUMBERS:
            group += _NUMBERS[word]
        elif word == _HUNDRED and index > start:
            group = (group or 1) * 100
        elif word in _SCALES and index > start:
            total += (group or 1) * _SCALES[word]
            group = 0
        else:
            break
        previous_digits = None
        index += 1
    return index, total + group


# Perfective verbs and their imperfectives, built by Russian's regular derivations:
# «назначить» → «назначать», «отправить» → «отправлять», «обсудить» → «обсуждать»,
# «договориться» → «договариваться», «рассказать» → «рассказывать», «открыть» →
# «открывать», «узнать» → «узнавать». A derived verb counts only if the dictionary knows
# it as an imperfective infinitive; pairs made otherwise («предложить» and
# «предлагать») are not known.
_ALTERNATIONS = (
    ("", ""),
    ("т", "ч"),
    ("т", "щ"),
    ("ст", "щ"),
    ("д", "ж"),
    ("д", "жд"),
    ("с", "ш"),
    ("з", "ж"),
    ("б", "бл"),
    ("п", "пл"),
    ("в", "вл"),
    ("м", "мл"),
    ("ф", "фл"),
)


HUSHING = ("ж", "ч", "ш", "щ", "жд")


def _alternated(stem: str) -> set[str]:
    return {
        stem[: len(stem) - len(plain)] + changed
        for plain, changed in _ALTERNATIONS
        if stem.endswith(plain)
    }


def _ablaut(stem: str) -> str:
    """The last «о» of a stem as «а» («договор» → «договар»)."""
    at = stem.rfind("о")
    return stem if at < 0 else stem[:at] + "а" + stem[at + 1 :]


def _derived_imperfectives(verb: str) -> set[str]:
    if verb.endswith("ить"):
        stem = verb[:-3]
        # «-ать» after a hushing consonant («назначать»), «-ять» after others («уточнять»).
        return {
            *(
                changed + ("ать" if changed.endswith(HUSHING) else "ять")
                for changed in _alternated(stem)
            ),
            *(
                changed + ending
                for changed in _alternated(stem) | _alternated(_ablaut(stem))
                for ending in ("ивать", "ывать")
            ),
        }
    if verb.endswith(("ать", "ять")):
        return {verb[:-3] + "ывать", verb[:-3] + "ивать", verb[:-2] + "вать"}
    if verb.endswith("ыть"):
        return {verb[:-2] + "вать"}
    return set()


def _base_perfectives(verb: str) -> set[str]:
    """Perfectives an imperfective may have been derived from (checked by deriving)."""
    found: set[str] = set()
    for suffix in ("ивать", "ывать"):
        if verb.endswith(suffix):
            stem = verb[: -len(suffix)]
            for plain, changed in _ALTERNATIONS:
                if stem.endswith(changed):
                    base = stem[: len(stem) - len(changed)] + plain
                    at = base.rfind("а")
                    unablauted = base if at < 0 else base[:at] + "о" + base[at + 1 :]
                    found |= {base + "ить", unablauted + "ить", base + "ать", base + "ять"}
    if verb.endswith("вать"):
        found.add(verb[:-4] + "ть")
    if verb.endswith(("ать", "ять")):
        stem = verb[:-3]
        for plain, changed in _ALTERNATIONS:
            if stem.endswith(changed):
                found.add(stem[: len(stem) - len(changed)] + plain + "ить")
    return found


def _is_infinitive(verb: str, aspect: str) -> bool:
    return any(
        parse.normal_form == verb and {"INFN", aspect} <= parse.tag.grammemes
        for parse in _morph().parse(verb)
        if _morph().word_is_known(verb)
    )


@functools.lru_cache(maxsize=20_000)
def aspect_partners(word: str) -> frozenset[str]:
    """The other verbs of a Russian verb lemma's aspect pair(s) (none for other words)."""
    if not CYRILLIC.search(word) or not word.endswith(("ть", "ться", "тись", "ти")):
        return frozenset()
    verb, reflexive = (word[:-2], word[-2:]) if word.endswith(("ся", "сь")) else (word, "")
    partners: set[str] = set()
    if _is_infinitive(word, "perf"):
        partners |= {
            derived + reflexive
            for derived in _derived_imperfectives(verb)
            if _is_infinitive(derived + reflexive, "impf")
        }
    if _is_infinitive(word, "impf"):
        partners |= {
            base + reflexive
            for base in _base_perfectives(verb)
            if _is_infinitive(base + reflexive, "perf") and verb in _derived_imperfectives(base)
        }
    return frozenset(partners)
