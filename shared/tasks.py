"""A call's life, in one place: its statuses, the moves between them and what each move
writes (status, time, the timeline entry), used by every service.

    queued → downloading → analyzing → delivering → done
       ↘ skipped   ↘ failed    ↘ failed   ↘ failed
    delivering, done, failed → queued     analysed again (re-analysis, roles swapped)
    done → delivering                     a delivery replayed
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal, get_args

from shared.mongo import Document


class TaskStatus(StrEnum):
    QUEUED = "queued"
    DOWNLOADING = "downloading"
    ANALYZING = "analyzing"
    DELIVERING = "delivering"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


class TaskEvent(StrEnum):
    """What the timeline records besides statuses: people's requests and decisions."""

    REANALYSIS_REQUESTED = "reanalysis_requested"
    ROLES_SWAP_REQUESTED = "roles_swap_requested"
    ROLES_CONFIRMED = "roles_confirmed"
    VERDICT_CORRECTED = "verdict_corrected"


# How a call's manager and client were told apart: by the stereo channels, or on a mono
# call by the manager's voiceprint, by what was said (cues) or by who talks most; or by a
# person. The mono methods are guesses a person can confirm.
RoleMethod = Literal["channels", "voiceprint", "cues", "talk_share", "person"]
GUESSED_ROLE_METHODS: tuple[RoleMethod, ...] = ("voiceprint", "cues", "talk_share")
assert set(GUESSED_ROLE_METHODS) < set(get_args(RoleMethod))

IN_PROGRESS = (TaskStatus.QUEUED, TaskStatus.DOWNLOADING, TaskStatus.ANALYZING)
ANALYSED = (TaskStatus.DELIVERING, TaskStatus.DONE)
REANALYSABLE = (TaskStatus.DELIVERING, TaskStatus.DONE, TaskStatus.FAILED)

# Where each status may be entered from (a redelivered message may repeat a move).
ENTERED_FROM: dict[TaskStatus, tuple[TaskStatus, ...]] = {
    TaskStatus.QUEUED: REANALYSABLE,
    TaskStatus.DOWNLOADING: (TaskStatus.QUEUED, TaskStatus.DOWNLOADING),
    TaskStatus.ANALYZING: (TaskStatus.QUEUED, TaskStatus.DOWNLOADING, TaskStatus.ANALYZING),
    TaskStatus.SKIPPED: (TaskStatus.QUEUED, TaskStatus.DOWNLOADING),
    TaskStatus.DELIVERING: (TaskStatus.ANALYZING, TaskStatus.DONE),
    TaskStatus.DONE: (TaskStatus.DELIVERING,),
    TaskStatus.FAILED: (*IN_PROGRESS, TaskStatus.DELIVERING),
}


def may_enter(status: TaskStatus) -> Document:
    """The filter of tasks that may move to `status`."""
    return {"status": {"$in": [value.value for value in ENTERED_FROM[status]]}}


def moved(
    status: TaskStatus,
    at: datetime,
    *,
    because: TaskEvent | None = None,
    by: str | None = None,
    set_fields: Document | None = None,
    push_fields: Document | None = None,
) -> Document:
    """The update that moves a task to `status` at `at`: the status and its time, and one
    timeline entry (the event that led there when there is one, and who asked), with
    any other fields the same write sets or pushes."""
    return {
        "$set": {"status": status.value, "updated_at": at, **(set_fields or {})},
        "$push": {
            "timeline": timeline_entry(because or status, at, by=by),
            **(push_fields or {}),
        },
    }


def timeline_entry(
    what: TaskStatus | TaskEvent, at: datetime, *, by: str | None = None
) -> Document:
    """One line of a task's timeline: a status it entered or an event, when, and who."""
    return {"status": what.value, "at": at, **({"by": by} if by is not None else {})}


def first_entry(status: TaskStatus, at: datetime) -> Document:
    """The status and timeline of a task as it is accepted."""
    return {
        "status": status.value,
        "updated_at": at,
        "timeline": [timeline_entry(status, at)],
    }
