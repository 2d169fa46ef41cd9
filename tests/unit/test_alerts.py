"""Alert rules on their own: what a rule needs, what of a call's results fires it, and
when a daily digest goes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from devtools.samples import analysis_results
from shared.alerts import AlertRule, alert_id, next_digest_at
from shared.words import counted


def rule(**fields: Any) -> AlertRule:
    return AlertRule.model_validate({"name": "r", "channels": ["in_app"], **fields})


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"condition": "score_below"}, "score_below"),
        ({"condition": "stage_failed", "stage": "Этап 1"}, "template_id"),
        ({"condition": "tracker_hit"}, "tracker_id"),
        ({"condition": "call_failed", "channels": ["webhook"]}, "webhook.url"),
        ({"condition": "call_failed", "team_supervisors": False}, "получателей"),
        ({"condition": "call_failed", "channels": ["email", "email"]}, "повторяться"),
        ({"condition": "call_failed", "emails": ["not-an-address"]}, "pattern"),
    ],
)
def test_an_incomplete_rule_says_what_it_lacks(fields: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        rule(**fields)


def test_a_webhook_alone_needs_no_people() -> None:
    only_webhook = rule(
        condition="call_failed",
        channels=["webhook"],
        team_supervisors=False,
        webhook={"url": "https://chat.example/hook"},
    )
    assert only_webhook.occasion == "failed"


def test_results_fire_only_what_they_show() -> None:
    results: Any = analysis_results(passed=1, applicable=2)  # «Этап 2» failed, 50 %
    assert rule(condition="score_below", score_below=50).fired_by_results(results) is None
    assert rule(condition="score_below", score_below=50.1).fired_by_results(results)
    failed = {"condition": "stage_failed", "template_id": "tpl_1"}
    assert rule(**failed, stage="Этап 1").fired_by_results(results) is None
    assert rule(**failed, stage="Этап 2").fired_by_results(results)
    other_script = {"condition": "score_below", "score_below": 90, "template_id": "tpl_2"}
    assert rule(**other_script).fired_by_results(results) is None
    assert rule(condition="forbidden_broken").fired_by_results(results) is None
    results["checklists"][0]["stages"][0]["notes"] = ["Нарушено: Не спорить"]
    assert rule(condition="forbidden_broken").fired_by_results(results) == (
        "Нарушено: Не спорить (этап «Этап 1», скрипт «Первичный звонок»)"
    )
    results["checklists"][0]["stages"][1]["applicable"] = False  # skipped: not a failure
    assert rule(**failed, stage="Этап 2").fired_by_results(results) is None
    assert rule(condition="tracker_hit", tracker_id="trk_1").fired_by_results(results) is None


def test_scope_is_a_binding_s() -> None:
    task = {"stage_id": "funnel_1", "deal_stage_id": "qual", "manager_id": "mgr_1"}
    assert rule(condition="call_failed").covers(task)
    assert rule(condition="call_failed", stage_id="funnel_1", manager_ids=["mgr_1"]).covers(task)
    assert not rule(condition="call_failed", deal_stage_ids=["won"]).covers(task)
    assert not rule(condition="call_failed", manager_ids=["mgr_2"]).covers(task)


def test_an_alert_is_one_per_rule_and_subject() -> None:
    assert alert_id("alr_1", "task_1") == alert_id("alr_1", "task_1")
    assert (
        len({alert_id("alr_1", "task_1"), alert_id("alr_2", "task_1"), alert_id("alr_1", "t")}) == 3
    )


def test_the_digest_goes_at_the_next_hour_of_the_zone() -> None:
    # 17:30 in Moscow (14:30 UTC): today at 18:00 Moscow; at 18:30 Moscow: tomorrow.
    before = datetime(2026, 12, 2, 14, 30, tzinfo=UTC)
    assert next_digest_at(before, hour=18, zone="Europe/Moscow") == datetime(
        2026, 12, 2, 15, 0, tzinfo=UTC
    )
    after = datetime(2026, 12, 2, 15, 30, tzinfo=UTC)
    assert next_digest_at(after, hour=18, zone="Europe/Moscow") == datetime(
        2026, 12, 3, 15, 0, tzinfo=UTC
    )


def test_counts_agree_with_their_word() -> None:
    said = [counted(n, "раз") for n in (1, 2, 5, 11, 21, 22)]
    assert said == ["1 раз", "2 раза", "5 раз", "11 раз", "21 раз", "22 раза"]
