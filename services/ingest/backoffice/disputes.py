"""Disputes («оспаривания», SPEC §5.1): a manager disputes a stage verdict of an own call
with a comment; the supervisors of their team (and admins) accept it, which corrects the
verdict (`corrections.py`), or reject it with an answer. One open dispute per stage.

A dispute's id sorts by the time it was opened, so the queue pages by id alone. The call
keeps its disputes' status (`dispute`: open while one is, else the latest's) for its line
in the calls list.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError
from typing_extensions import TypedDict

from services.ingest.apidoc import IsoTime
from services.ingest.backoffice import corrections
from services.ingest.backoffice.accounts import Role, User, find_visible, visible_task
from services.ingest.backoffice.corrections import CorrectionForm
from services.ingest.backoffice.filters import CallFilters, Day, ZoneName
from services.ingest.intake.tasks import iso
from shared.errors import Conflict, Forbidden, NotFound
from shared.events import CallDisputed, CallMeta, Envelope, call_meta, utcnow
from shared.mongo import DISPUTES, Document, all_of, calls
from shared.outbox import outbox_append
from shared.results import Reviewer, TemplateRef
from shared.reviews import Verdict, verdict_of
from shared.tasks import ANALYSED

DisputeStatus = Literal["open", "accepted", "rejected"]
STATUS_LABELS: dict[str, str] = {"open": "открыто", "accepted": "принято", "rejected": "отклонено"}
NOT_FOUND = "Оспаривание не найдено"
NOT_YOURS = "Это оспаривание звонка другой команды"
OWN_ONLY = "Оспорить можно только вердикт своего звонка"
ALREADY_OPEN = "Этот этап уже оспорен: дождитесь ответа руководителя"
ANSWERED = "На это оспаривание уже ответили"
NOT_ANALYSED = "Оспорить можно только вердикты проанализированного звонка"
MAX_PER_PAGE = 100
# What accepting a dispute makes of the verdict when the supervisor does not say.
OPPOSITE: dict[Verdict | None, Verdict] = {
    "passed": "failed",
    "failed": "passed",
    "not_applicable": "passed",
    None: "passed",
}


class DisputeForm(BaseModel):
    """What the manager disputes, and why."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    binding_id: str = Field(min_length=1, max_length=64)
    stage: str = Field(min_length=1, max_length=200)
    comment: str = Field(min_length=1, max_length=2000)


class AcceptForm(BaseModel):
    """The supervisor agrees: the verdict becomes this (by default the opposite of the
    disputed one), with an answer for the manager."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    verdict: Verdict | None = None
    completion: float | None = Field(None, ge=0, le=100)
    answer: str = Field(min_length=1, max_length=2000)


class RejectForm(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    answer: str = Field(min_length=1, max_length=2000)


class DisputeFilters(BaseModel):
    """The queue's filters: status, manager, the days the disputes were opened."""

    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)

    status: Literal["", "open", "accepted", "rejected"] = "open"
    manager_id: str = ""
    date_from: Day | None = None
    date_to: Day | None = None
    after: str = Field("", max_length=64, description="The previous page's `next`")
    per_page: int = Field(50, ge=1, le=MAX_PER_PAGE)
    tz: ZoneName = "UTC"


class DisputeView(TypedDict):
    id: str
    task_id: str
    call_id: str
    manager_id: str
    manager_name: str | None
    binding_id: str
    template: TemplateRef
    stage: str
    disputed_verdict: Annotated[Verdict | None, Field(description="What it said then")]
    comment: str
    by: Reviewer
    at: IsoTime
    status: DisputeStatus
    status_label: str
    answer: str | None
    answered_by: Reviewer | None
    answered_at: IsoTime | None


class DisputePage(TypedDict):
    items: list[DisputeView]
    next: Annotated[str | None, Field(description="`after` of the next page; null: the last")]


def view(dispute: Document) -> DisputeView:
    return {
        "id": dispute["_id"],
        "task_id": dispute["task_id"],
        "call_id": dispute["call_id"],
        "manager_id": dispute["manager_id"],
        "manager_name": dispute.get("manager_name"),
        "binding_id": dispute["binding_id"],
        "template": dispute["template"],
        "stage": dispute["stage"],
        "disputed_verdict": dispute["disputed_verdict"],
        "comment": dispute["comment"],
        "by": dispute["by"],
        "at": iso(dispute["at"]),
        "status": dispute["status"],
        "status_label": STATUS_LABELS[dispute["status"]],
        "answer": dispute.get("answer"),
        "answered_by": dispute.get("answered_by"),
        "answered_at": iso(dispute["answered_at"]) if dispute.get("answered_at") else None,
    }


def _new_id() -> str:
    """Sorts by the time it is made (milliseconds), then by chance."""
    milliseconds = int(utcnow().timestamp() * 1000)
    return f"dsp_{milliseconds:012x}{secrets.token_hex(4)}"


async def _mark_call(
    db: AsyncDatabase[Document], task_id: str, *, announce: Envelope | None = None
) -> None:
    """The call's dispute status for its list line: open while any is, else the latest;
    with the event that `announce`s the change (through the call's outbox)."""
    found = await db[DISPUTES].find({"task_id": task_id}, {"status": 1}).sort("_id", 1).to_list()
    statuses = [dispute["status"] for dispute in found]
    status = "open" if "open" in statuses else statuses[-1] if statuses else None
    update: Document = {"$set": {"dispute": status}}
    if announce is not None:
        outbox_set, outbox_push = outbox_append(announce)
        update = {"$set": {"dispute": status, **outbox_set}, "$push": outbox_push}
    await calls(db).update_one({"_id": task_id}, update)


async def open_dispute(
    db: AsyncDatabase[Document], viewer: User, task_id: str, form: DisputeForm
) -> DisputeView:
    """A manager disputes a stage of an own analysed call."""
    if viewer.role is not Role.MANAGER:
        raise Forbidden(OWN_ONLY)
    task = await visible_task(
        db,
        viewer,
        task_id,
        {"status": 1, "results": 1, **{name: 1 for name in CallMeta.model_fields}},
    )
    if task["status"] not in ANALYSED:
        raise Conflict(NOT_ANALYSED)
    checklist, stage = corrections.stage_of(task.get("results"), form.binding_id, form.stage)
    now = utcnow()
    dispute = {
        "_id": _new_id(),
        "open_key": f"{task_id}/{form.binding_id}/{form.stage}",
        "task_id": task_id,
        "call_id": task["call_id"],
        "manager_id": task["manager_id"],
        "manager_name": task.get("manager_name"),
        "binding_id": form.binding_id,
        "template": checklist["template"],
        "stage": form.stage,
        "disputed_verdict": verdict_of(stage),
        "comment": form.comment,
        "by": viewer.reviewer(),
        "at": now,
        "status": "open",
    }
    try:
        await db[DISPUTES].insert_one(dispute)
    except DuplicateKeyError as exc:  # the open_key of this stage is taken
        raise Conflict(ALREADY_OPEN) from exc
    opened = CallDisputed(
        **call_meta(task),
        dispute_id=dispute["_id"],
        script=checklist["template"]["name"],
        script_stage=form.stage,
        comment=form.comment,
    )
    await _mark_call(db, task_id, announce=Envelope.wrap(opened, task_id=task_id))
    return view(dispute)


async def _open_one(db: AsyncDatabase[Document], viewer: User, dispute_id: str) -> Document:
    if viewer.role not in (Role.ADMIN, Role.SUPERVISOR):
        raise Forbidden("Отвечать на оспаривания могут администратор и руководитель")
    dispute = await find_visible(db[DISPUTES], viewer, dispute_id, not_yours=NOT_YOURS)
    if dispute is None:
        raise NotFound(NOT_FOUND)
    if dispute["status"] != "open":
        raise Conflict(ANSWERED)
    return dispute


async def _close(
    db: AsyncDatabase[Document],
    viewer: User,
    dispute: Document,
    status: DisputeStatus,
    answer: str,
) -> DisputeView:
    closed = await db[DISPUTES].find_one_and_update(
        {"_id": dispute["_id"], "status": "open"},
        {
            "$set": {
                "status": status,
                "answer": answer,
                "answered_by": viewer.reviewer(),
                "answered_at": utcnow(),
            },
            "$unset": {"open_key": ""},
        },
        return_document=ReturnDocument.AFTER,
    )
    if closed is None:
        raise Conflict(ANSWERED)
    await _mark_call(db, dispute["task_id"])
    return view(closed)


async def accept(
    db: AsyncDatabase[Document], viewer: User, dispute_id: str, form: AcceptForm
) -> DisputeView:
    """Agree with the manager: the verdict is corrected (a new revision to the CRM), and
    the dispute is answered."""
    dispute = await _open_one(db, viewer, dispute_id)
    correction = CorrectionForm(
        binding_id=dispute["binding_id"],
        stage=dispute["stage"],
        verdict=form.verdict or OPPOSITE[dispute["disputed_verdict"]],
        completion=form.completion,
        reason=form.answer,
    )
    await corrections.correct(db, viewer, dispute["task_id"], correction, dispute_id=dispute_id)
    return await _close(db, viewer, dispute, "accepted", form.answer)


async def reject(
    db: AsyncDatabase[Document], viewer: User, dispute_id: str, form: RejectForm
) -> DisputeView:
    """Keep the verdict, and tell the manager why."""
    dispute = await _open_one(db, viewer, dispute_id)
    return await _close(db, viewer, dispute, "rejected", form.answer)


def _query(viewer: User, filters: DisputeFilters) -> Document:
    conditions: list[Document] = [{"status": filters.status}] if filters.status else []
    conditions.append(viewer.visibility(filters.manager_id))
    if filters.date_from or filters.date_to:  # the days as the calls list reads them
        days = CallFilters(date_from=filters.date_from, date_to=filters.date_to, tz=filters.tz)
        start, end = days.period()
        conditions.append({"at": {"$gte": start, "$lt": end}})
    if filters.after:
        conditions.append({"_id": {"$lt": filters.after}})
    return all_of(*conditions)


async def page(db: AsyncDatabase[Document], viewer: User, filters: DisputeFilters) -> DisputePage:
    """The disputes the viewer may see, newest first."""
    found = (
        await db[DISPUTES]
        .find(_query(viewer, filters))
        .sort("_id", -1)
        .limit(filters.per_page + 1)
        .to_list()
    )
    items = [view(dispute) for dispute in found[: filters.per_page]]
    more = len(found) > filters.per_page
    return {"items": items, "next": items[-1]["id"] if more else None}


async def of_call(db: AsyncDatabase[Document], task_id: str) -> list[DisputeView]:
    """A call's disputes, oldest first (the viewer already sees the call)."""
    found = db[DISPUTES].find({"task_id": task_id}).sort("_id", 1)
    return [view(dispute) for dispute in await found.to_list()]


async def open_count(db: AsyncDatabase[Document], viewer: User) -> int:
    """How many disputes wait for an answer that the viewer may give (the menu's count)."""
    if viewer.role not in (Role.ADMIN, Role.SUPERVISOR):
        return 0
    # The status first: its index reads the open ones only.
    return await db[DISPUTES].count_documents(all_of({"status": "open"}, viewer.visibility()))
