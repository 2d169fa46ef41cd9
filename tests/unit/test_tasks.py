"""A call's life: every status can be reached, and a move writes status, time and timeline."""

from __future__ import annotations

from datetime import UTC, datetime

from services.ingest.backoffice.filters import STATUS_LABELS
from shared.tasks import ENTERED_FROM, TaskEvent, TaskStatus, first_entry, may_enter, moved

AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_every_status_is_entered_from_somewhere_and_has_a_label() -> None:
    assert set(ENTERED_FROM) == set(TaskStatus)
    reachable = {TaskStatus.QUEUED, TaskStatus.SKIPPED}  # how a call is accepted
    for _ in TaskStatus:
        reachable |= {to for to, sources in ENTERED_FROM.items() if set(sources) & reachable}
    assert reachable == set(TaskStatus)
    assert set(STATUS_LABELS) == set(TaskStatus)


def test_nothing_leaves_skipped_or_goes_back_to_downloading_once_analysed() -> None:
    assert all(TaskStatus.SKIPPED not in sources for sources in ENTERED_FROM.values())
    assert may_enter(TaskStatus.DOWNLOADING) == {"status": {"$in": ["queued", "downloading"]}}


def test_a_move_sets_the_status_and_records_why_and_who() -> None:
    update = moved(
        TaskStatus.QUEUED,
        AT,
        because=TaskEvent.REANALYSIS_REQUESTED,
        by="head@example.ru",
        set_fields={"analysis.state": "queued"},
    )
    assert update == {
        "$set": {"status": "queued", "updated_at": AT, "analysis.state": "queued"},
        "$push": {
            "timeline": {"status": "reanalysis_requested", "at": AT, "by": "head@example.ru"}
        },
    }
    assert first_entry(TaskStatus.SKIPPED, AT) == {
        "status": "skipped",
        "updated_at": AT,
        "timeline": [{"status": "skipped", "at": AT}],
    }
