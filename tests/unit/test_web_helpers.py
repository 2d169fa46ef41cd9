"""Pure helpers of the gateway's web side: byte ranges, form decoding, chart axes."""

from __future__ import annotations

import pytest

from services.ingest.edge import byte_range
from services.ingest.webapp.charts import nice_ceiling
from services.ingest.webapp.forms import nested


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", (0, 99)),
        ("bytes=100-", (100, 999)),
        ("bytes=-100", (900, 999)),  # the last 100 bytes
        ("bytes=900-5000", (900, 999)),  # clipped to the file
        ("bytes=-5000", (0, 999)),
        ("bytes=1000-", None),  # past the end
        ("bytes=5-1", None),
        ("bytes=0-1,5-6", None),  # one range only
        ("items=0-1", None),
        ("bytes=x-", None),
        ("bytes=-0", None),
    ],
)
def test_one_byte_range_of_a_1000_byte_file(header: str, expected: tuple[int, int] | None) -> None:
    assert byte_range(header, 1000) == expected


def test_dotted_form_names_become_the_nested_body_without_blank_rows() -> None:
    form = {
        "csrf_token": "t",
        "name": " Скрипт ",
        "stages.0.name": "Приветствие",
        "stages.0.points.0.text": "Назвал компанию",
        "stages.0.points.0.phrases": "компания ромашка\n\n меня зовут ",
        "stages.0.points.0.forbidden": "on",
        "stages.0.points.1.text": "",  # an untouched new row
        "stages.0.points.1.forbidden": "",
        "stages.1.name": "",
        "deal_stage_ids": "a, b,,c",
    }
    assert nested(form) == {
        "name": "Скрипт",
        "stages": [
            {
                "name": "Приветствие",
                "points": [
                    {
                        "text": "Назвал компанию",
                        "phrases": ["компания ромашка", "меня зовут"],
                        "forbidden": True,
                    }
                ],
            }
        ],
        "deal_stage_ids": ["a", "b", "c"],
    }


@pytest.mark.parametrize(
    ("value", "ceiling"), [(0, 4.0), (3, 4.0), (5, 8.0), (9, 20.0), (37, 40.0), (101, 200.0)]
)
def test_axis_maxima_have_whole_quarters(value: float, ceiling: float) -> None:
    assert nice_ceiling(value) == ceiling
    assert (ceiling / 4) == int(ceiling / 4)
