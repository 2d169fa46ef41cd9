"""What people do to a call (the write side): comment on it, analyse it again, swap or
confirm its roles. Each command is described once (`COMMANDS`) and served by both the
JSON API and the call card."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field
from pymongo.asynchronous.database import AsyncDatabase

from services.ingest.backoffice.accounts import Role, User, visible_task
from services.ingest.backoffice.calls import CommentView, comment_view
from shared import call_details, voiceprints
from shared.connection import load_connection_settings
from shared.errors import Conflict
from shared.events import utcnow
from shared.mongo import COMMENTS, Document, calls
from shared.tasks import (
    ANALYSED,
    GUESSED_ROLE_METHODS,
    TaskEvent,
    TaskStatus,
    may_enter,
    moved,
    timeline_entry,
)

LEADS = (Role.ADMIN, Role.SUPERVISOR)


class CommentForm(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    text: str = Field(min_length=1, max_length=4000)


async def add_comment(
    db: AsyncDatabase[Document], viewer: User, task_id: str, form: CommentForm
) -> CommentView:
    """Add a comment to a call the viewer can see."""
    await visible_task(db, viewer, task_id, {"_id": 1})
    comment = {
        "task_id": task_id,
        "author": viewer.name or viewer.email,
        "author_id": viewer.id,
        "text": form.text,
        "at": utcnow(),
    }
    await db[COMMENTS].insert_one(comment)
    return comment_view(comment)


async def _queue_again(
    db: AsyncDatabase[Document],
    viewer: User,
    task_id: str,
    *,
    allowed: Document,
    job: Document,
    event: TaskEvent,
    refusal: str,
) -> None:
    """Queue a call's analysis job again; its results go to the CRM with new webhook ids."""
    await visible_task(db, viewer, task_id, {"_id": 1})
    now = utcnow()
    result = await calls(db).update_one(
        {"_id": task_id, **allowed},
        {
            **moved(
                TaskStatus.QUEUED,
                now,
                because=event,
                by=viewer.email,
                set_fields={
                    "analysis": {"state": "queued", "attempts": 0, "queued_at": now, **job},
                    "deliveries_closed": [],
                },
            ),
            "$unset": {"error": ""},
        },
    )
    if result.matched_count == 0:
        raise Conflict(refusal)


async def reanalyze(db: AsyncDatabase[Document], viewer: User, task_id: str) -> None:
    """Queue the call's analysis again with today's scripts and tables."""
    await _queue_again(
        db,
        viewer,
        task_id,
        allowed={**may_enter(TaskStatus.QUEUED), "audio": {"$ne": None}},
        job={},
        event=TaskEvent.REANALYSIS_REQUESTED,
        refusal="Звонок ещё обрабатывается или его аудио нет: повторный анализ невозможен",
    )


async def swap_roles(db: AsyncDatabase[Document], viewer: User, task_id: str) -> None:
    """Queue the call's re-scoring with manager and client exchanged (no new transcription);
    the CRM gets the results again as a new revision, reviewed by this person."""
    await _queue_again(
        db,
        viewer,
        task_id,
        allowed={"status": {"$in": list(ANALYSED)}, "details_id": {"$exists": True}},
        job={"mode": "swap_roles", "requested_by": viewer.reviewer()},
        event=TaskEvent.ROLES_SWAP_REQUESTED,
        refusal="Роли можно поменять только у проанализированного звонка",
    )


async def confirm_roles(db: AsyncDatabase[Document], viewer: User, task_id: str) -> None:
    """Record that a person found a mono call's roles right; the manager's voiceprint
    learns this call's manager voice (when voiceprints are kept). Verdicts stay."""
    await visible_task(db, viewer, task_id, {"_id": 1})
    learn = (await load_connection_settings(db)).voiceprints_enabled
    now = utcnow()
    task = await calls(db).find_one_and_update(
        {
            "_id": task_id,
            "status": {"$in": list(ANALYSED)},
            "roles.method": {"$in": list(GUESSED_ROLE_METHODS)},
        },
        {
            "$set": {
                "roles": {
                    "method": "person",
                    "confidence": 1.0,
                    "uncertain": False,
                    "by": viewer.email,
                    "at": now,
                },
                "updated_at": now,
            },
            "$push": {"timeline": timeline_entry(TaskEvent.ROLES_CONFIRMED, now, by=viewer.email)},
        },
        projection={"manager_id": 1, "details_id": 1},
    )
    if task is None:
        raise Conflict("Подтвердить можно только роли, определённые автоматически на моно-записи")
    heavy = await call_details.of(db, task, {"voices": 1})
    manager_voice = (heavy.get("voices") or {}).get("manager")
    if learn and manager_voice:
        await voiceprints.learn(
            db,
            task["manager_id"],
            task_id=task_id,
            embedding=voiceprints.unpack(manager_voice["embedding"]),
            speech_s=manager_voice["speech_s"],
            source="confirmed",
        )


@dataclass(frozen=True)
class CallCommand:
    """An action a person takes on a call, the same from the API and from the call card."""

    path: str  # the last segment of its URL
    roles: tuple[Role, ...]  # who may take it, on a call they see
    run: Callable[[AsyncDatabase[Document], User, str], Awaitable[None]]
    logged: str  # the log event
    notice: str  # what the card says afterwards
    queues_analysis: bool  # the call is analysed again (the API answers 202)
    summary: str  # what it does, for the API's documentation
    conflict: str  # when it cannot be done (409)


COMMANDS = (
    CallCommand(
        "reanalyze",
        LEADS,
        reanalyze,
        "reanalysis_requested",
        "reanalysis",
        True,
        "Analyse the call again; results go out with new webhook ids (admin, supervisor)",
        "still in progress, or no audio",
    ),
    CallCommand(
        "swap-roles",
        LEADS,
        swap_roles,
        "roles_swap_requested",
        "roles_swapped",
        True,
        "Exchange manager and client and score the call again without transcribing it; the "
        "CRM gets the results as a new `revision` with `reviewed_by` (admin, supervisor)",
        "not analysed yet",
    ),
    CallCommand(
        "confirm-roles",
        LEADS,
        confirm_roles,
        "roles_confirmed",
        "roles_confirmed",
        False,
        "The automatically decided roles of a mono call are right; the manager's voiceprint "
        "learns from it (admin, supervisor)",
        "not a mono call analysed yet",
    ),
)


def allowed(viewer: User) -> frozenset[str]:
    """The paths of the commands `viewer` may take on a call they see."""
    return frozenset(command.path for command in COMMANDS if viewer.role in command.roles)
