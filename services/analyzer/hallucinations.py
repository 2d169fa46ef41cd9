"""What Whisper writes where nobody spoke: the closing lines of the videos it learnt from.

They never occur in a sales call, so a segment holding one is dropped before the
transcript and the scoring see it. Lines that do occur in calls ("Thank you.") are not
here: those are left to the model's own no-speech and log-probability judgement.
"""

from __future__ import annotations

import re

PHRASES = (
    # English
    "thank you for watching",
    "thanks for watching",
    "please subscribe",
    "subscribe to my channel",
    "like and subscribe",
    "don't forget to subscribe",
    "see you in the next video",
    "subtitles by",
    "captions by",
    "transcribed by",
    "amara.org",
    # Russian
    "продолжение следует",
    "субтитры сделал",
    "субтитры создавал",
    "субтитры подготовил",
    "субтитры подогнал",
    "редактор субтитров",
    "корректор субтитров",
    "спасибо за просмотр",
    "подписывайтесь на канал",
    "подписывайтесь на наш канал",
    "ставьте лайки",
    "dimatorzok",
)
_NOT_LETTERS = re.compile(r"[^\w.' ]+")


def _normalised(text: str) -> str:
    return " ".join(_NOT_LETTERS.sub(" ", text.lower().replace("ё", "е")).split())


_KNOWN = tuple(_normalised(phrase) for phrase in PHRASES)


def is_hallucination(text: str) -> bool:
    """Whether a recognised segment holds one of the known silence hallucinations."""
    said = _normalised(text)
    return any(phrase in said for phrase in _KNOWN)
