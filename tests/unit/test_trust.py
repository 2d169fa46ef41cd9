"""Agreement and Cohen's κ on known confusion matrices, and the trust report's rows."""

from __future__ import annotations

from typing import Any

import pytest

from services.ingest.backoffice.trust import agreement, kappa, report_of

P, F, N = "passed", "failed", "not_applicable"


@pytest.mark.parametrize(
    ("confusion", "expected_agreement", "expected_kappa"),
    [
        # The textbook case: p_o = 0.7, p_e = 0.5.
        ({(P, P): 20, (P, F): 5, (F, P): 10, (F, F): 15}, 70.0, 0.4),
        ({(P, P): 5, (F, F): 5}, 100.0, 1.0),  # all agree
        ({(P, P): 7}, 100.0, None),  # one class only: κ is undefined
        ({(P, F): 5, (F, P): 5}, 0.0, -1.0),  # always the other way
        ({(P, P): 4, (N, N): 3, (N, P): 1}, 87.5, 0.75),  # three classes
        ({}, None, None),
    ],
)
def test_agreement_and_kappa(
    confusion: dict[tuple[str, str], int],
    expected_agreement: float | None,
    expected_kappa: float | None,
) -> None:
    assert agreement(confusion) == expected_agreement
    assert kappa(confusion) == expected_kappa


def _record(stage: str, machine: str | None, human: str, **fields: Any) -> dict[str, Any]:
    return {
        "kind": "blind",
        "template": {"id": "tpl_1", "name": "Первичный звонок", "version": 2},
        "stage": stage,
        "method": "phrases",
        "machine": machine,
        "human": human,
        **fields,
    }


def test_the_report_counts_blind_reviews_and_corrections_in_force_apart() -> None:
    records = [
        _record("Приветствие", P, P),
        _record("Приветствие", P, P),
        _record("Бюджет", F, P),
        _record("Бюджет", F, F),
        _record("Бюджет", None, P),  # the machine could not judge
        _record("Бюджет", F, P, kind="correction", current=True),
        _record("Бюджет", F, F, kind="correction", current=False),  # changed later
        _record("Итог", P, F, method="llm"),
    ]
    report = report_of(records)
    rows = [(r["stage"], r["kind"], r["reviewed"], r["agreement"]) for r in report["stages"]]
    assert rows == [
        ("Бюджет", "correction", 1, 0.0),
        ("Итог", "blind", 1, 0.0),
        ("Бюджет", "blind", 2, 50.0),
        ("Приветствие", "blind", 2, 100.0),
    ]
    budget = next(r for r in report["stages"] if r["stage"] == "Бюджет" and r["kind"] == "blind")
    assert budget["not_judged"] == 1
    assert (budget["machine_failed_human_passed"], budget["machine_passed_human_failed"]) == (1, 0)
    assert budget["template"]["version"] == 2
    methods = {(m["method"], m["kind"]): m["reviewed"] for m in report["methods"]}
    assert methods == {("phrases", "blind"): 4, ("phrases", "correction"): 1, ("llm", "blind"): 1}
