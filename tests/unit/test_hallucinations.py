"""Known silence hallucinations are recognised, in English and Russian, whatever the case
and punctuation; ordinary call lines are not."""

from __future__ import annotations

import pytest

from services.analyzer.asr import in_language
from services.analyzer.hallucinations import is_hallucination


@pytest.mark.parametrize(
    "text",
    [
        " Thank you for watching!",
        "Thanks for watching, and see you in the next video.",
        "Продолжение следует...",
        "Субтитры сделал DimaTorzok",
        "субтитры создавал ",
        "Спасибо за просмотр!",
        "ПОДПИСЫВАЙТЕСЬ НА КАНАЛ",
    ],
)
def test_video_boilerplate_is_a_hallucination(text: str) -> None:
    assert is_hallucination(text)


@pytest.mark.parametrize(
    "text",
    [
        "Thank you.",
        "Thank you for your time, goodbye.",
        "Спасибо, до свидания.",
        "Я вам перезвоню в четверг, продолжим разговор.",
        "Please watch your email for the offer.",
    ],
)
def test_what_people_say_on_calls_is_kept(text: str) -> None:
    assert not is_hallucination(text)


def test_the_vocabulary_keeps_the_calls_language() -> None:
    vocabulary = ["меня зовут", "my name is", " calling from ", "my name is", "компания"]
    assert in_language(vocabulary, "en") == ["my name is", "calling from"]
    assert in_language(vocabulary, "ru") == ["меня зовут", "компания"]
    assert in_language(vocabulary, None) == ["меня зовут", "my name is", "calling from", "компания"]
