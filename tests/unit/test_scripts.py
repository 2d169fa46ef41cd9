"""Validation of templates, bindings and tables: bad input names the problem in Russian."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from shared.scripts import Binding, Table, Template, Tracker

POINT = {"text": "Назвал компанию", "weight": 100, "phrases": ["компания ромашка"]}


def template(**stage: Any) -> dict[str, Any]:
    return {
        "name": "Первичный звонок",
        "stages": [{"name": "Приветствие", "threshold": 60, "points": [POINT], **stage}],
    }


def test_the_spec_example_is_valid() -> None:
    parsed = Template.model_validate(
        {
            "name": "Первичный звонок",
            "stages": [
                {
                    "name": "Приветствие",
                    "method": "phrases",
                    "threshold": 60,
                    "criteria": (
                        "Представился и назвал компанию (50%), уточнил, удобно ли говорить (50%)"
                    ),
                    "ignore_when": "",
                    "points": [
                        {
                            "text": "Назвал компанию",
                            "weight": 50,
                            "speaker": "manager",
                            "within_s": 30,
                            "phrases": ["компания ромашка", "меня зовут"],
                            "forbidden": False,
                        },
                        {
                            "text": "Удобно ли говорить",
                            "weight": 50,
                            "speaker": "manager",
                            "phrases": ["удобно говорить"],
                            "forbidden": False,
                        },
                    ],
                },
                {
                    "name": "Следующий шаг",
                    "method": "llm",
                    "threshold": 50,
                    "criteria": "Договорился о конкретной дате следующего контакта",
                    "ignore_when": "Клиент отказался от покупки",
                },
            ],
        }
    )
    assert [stage.method for stage in parsed.stages] == ["phrases", "llm"]


def test_a_point_listens_with_its_tracker_s_phrases() -> None:
    listening = {**POINT, "phrases": [], "tracker_id": "trk_1", "speaker": "client"}
    parsed = Template.model_validate(template(points=[listening]))
    assert parsed.tracker_ids() == {"trk_1"}
    tracker = Tracker(name="Конкуренты", phrases=["компания Лютик"], speaker="manager")
    (point,) = parsed.listening_for({"trk_1": tracker}).stages[0].points
    assert point.phrases == ["компания Лютик"]
    assert point.speaker == "client"  # the point's own: whose words prove it
    (unchanged,) = parsed.listening_for({}).stages[0].points  # the tracker is gone
    assert unchanged.phrases == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"threshold": 101}, "less than or equal"),
        ({"points": [{**POINT, "weight": 60}]}, "сумма весов"),
        ({"points": []}, "пункты"),
        ({"method": "llm", "points": [], "criteria": " "}, "критерии"),
        ({"points": [{**POINT, "phrases": []}]}, "нужны фразы"),
        ({"points": [{**POINT, "speaker": "robot"}]}, "manager"),
    ],
)
def test_bad_templates_are_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Template.model_validate(template(**change))


def test_stage_names_are_unique() -> None:
    data = template()
    data["stages"] = data["stages"] * 2
    with pytest.raises(ValidationError, match="уникальными"):
        Template.model_validate(data)


def test_binding_needs_an_http_webhook() -> None:
    Binding.model_validate({"template_id": "t1", "webhook": {"url": "https://crm.example/h"}})
    with pytest.raises(ValidationError, match="http"):
        Binding.model_validate({"template_id": "t1", "webhook": {"url": "javascript:alert(1)"}})


FIELD = {"key": "budget", "type": "number", "method": "regex", "pattern": r"(\d+) тысяч"}


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ({**FIELD, "pattern": "(unclosed"}, "не компилируется"),
        ({**FIELD, "method": "metric", "pattern": None}, "metric"),
        ({"key": "mood", "type": "enum", "method": "llm", "prompt": "Настроение?"}, "options"),
        ({**FIELD, "key": "Budget"}, "pattern"),
        ({**FIELD, "type": "money"}, "text"),
    ],
)
def test_bad_table_fields_are_refused(field: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Table.model_validate(
            {"name": "Сделки", "webhook": {"url": "https://crm.example/t"}, "fields": [field]}
        )
