"""Table fields of every type and method, and invalid values becoming null with a reason."""

from __future__ import annotations

from typing import Any

import pytest

from services.analyzer.tables import NotExtracted, build_row, coerce
from services.analyzer.talk import TalkMetrics
from services.analyzer.transcript import Utterance, Word
from shared.scripts import TableField
from tests.transcripts import said

METRICS = TalkMetrics(
    duration_s=312.5,
    talk_time_manager_s=140.1,
    talk_time_client_s=120.7,
    talk_ratio=0.54,
    longest_monologue_s=35.2,
    silence_s=51.7,
    interruptions=3,
    words_per_minute_manager=128,
)
LINES = [
    ("manager", 1.0, "Компания Ромашка, меня зовут Анна."),
    ("client", 5.0, "Бюджет 500 000 рублей, смотрим ещё конкурентов."),
    ("manager", 9.0, "Созвонимся 05.12.2026, хорошо?"),
]


def utterances() -> list[Utterance]:
    return [
        Utterance(
            speaker,
            start,
            start + 2,
            text,
            tuple(Word(w, start, start + 0.3) for w in text.split()),
        )
        for speaker, start, text in LINES
    ]


def field(**spec: Any) -> TableField:
    return TableField.model_validate(spec)


def row(*fields: TableField) -> Any:
    return build_row(fields, utterances=utterances(), tokens=said(*LINES), metrics=METRICS)


def test_every_method() -> None:
    result = row(
        field(key="budget", type="number", method="regex", pattern=r"бюджет\s+([\d ]+)"),
        field(key="competitor", type="boolean", method="phrases", phrases=["конкурент"]),
        field(key="next_call", type="date", method="regex", pattern=r"(\d\d\.\d\d\.\d{4})"),
        field(key="talk_ratio", type="number", method="metric", metric="talk_ratio"),
        field(
            key="greeting", type="text", method="phrases", phrases=["меня зовут"], speaker="manager"
        ),
        field(key="city", type="text", method="llm", prompt="Город клиента?"),
    )
    assert result.values == {
        "budget": 500000,
        "competitor": True,
        "next_call": "2026-12-05",
        "talk_ratio": 0.54,
        "greeting": "меня зовут",
        "city": None,
    }
    assert result.reasons == {"city": "метод llm не настроен (ROP_LLM_BASE_URL)"}


def test_not_found_is_null_or_false_with_reason() -> None:
    result = row(
        field(key="discount", type="number", method="regex", pattern=r"скидка (\d+)"),
        field(key="asked_discount", type="boolean", method="regex", pattern="скидк"),
        field(key="rival", type="boolean", method="phrases", phrases=["скидка"]),
    )
    assert result.values == {"discount": None, "asked_discount": False, "rival": False}
    assert result.reasons == {"discount": "значение не найдено"}


@pytest.mark.parametrize(
    ("spec", "raw", "expected"),
    [
        ({"type": "number"}, "1 234,5", 1234.5),
        ({"type": "number"}, "500 ,000", 500000),
        ({"type": "number"}, "1,250,000.5", 1250000.5),
        # As Whisper writes what was said, and as people say it.
        ({"type": "number"}, "350 тысяч рублей", 350000),
        ({"type": "number"}, "триста пятьдесят тысяч", 350000),
        ({"type": "number"}, "«350 ,000, »", 350000),
        ({"type": "number"}, "полтора миллиона", 1500000),
        ({"type": "number"}, "1,5 млн", 1500000),
        ({"type": "number"}, "250 тыс. рублей", 250000),
        ({"type": "number"}, "полмиллиона", 500000),
        ({"type": "number"}, "полтысячи", 500),
        ({"type": "number"}, "350 000,", 350000),
        ({"type": "number"}, 7, 7),
        ({"type": "boolean"}, "да", True),
        ({"type": "boolean"}, "no", False),
        ({"type": "date"}, "05.12.26", "2026-12-05"),
        ({"type": "enum", "options": ["Горячий", "Холодный"]}, "горячий", "Горячий"),
        ({"type": "long_text"}, "  текст  ", "текст"),
    ],
)
def test_coercion(spec: dict[str, Any], raw: Any, expected: Any) -> None:
    assert coerce(field(key="f", method="llm", prompt="?", **spec), raw) == expected


@pytest.mark.parametrize(
    ("spec", "raw"),
    [
        ({"type": "number"}, "много"),
        ({"type": "number"}, "2 или 3"),  # which one?
        ({"type": "number"}, True),
        ({"type": "boolean"}, "может быть"),
        ({"type": "date"}, "в четверг"),
        ({"type": "enum", "options": ["Горячий"]}, "тёплый"),
        ({"type": "text"}, "   "),
    ],
)
def test_invalid_values_are_refused(spec: dict[str, Any], raw: Any) -> None:
    with pytest.raises(NotExtracted):
        coerce(field(key="f", method="llm", prompt="?", **spec), raw)
