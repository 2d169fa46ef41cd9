"""Blind review for calibration (SPEC §5.1): the calls the analyzer picked
(`blind_review_percent` of each manager's week, at least one) wait for a person who
judges every stage without seeing the machine's verdicts; only then both are shown.
Each verdict is a `reviews` record (kind `blind`): the honest sample of the trust page.
A blind review changes no verdict: a person who disagrees corrects it on the card."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from pymongo.asynchronous.database import AsyncDatabase
from typing_extensions import TypedDict

from services.ingest.apidoc import IsoTime
from services.ingest.backoffice.accounts import Role, User, visible_task
from services.ingest.backoffice.calls import CallIdentity, identity
from services.ingest.intake.tasks import iso
from shared import call_details
from shared.errors import Conflict, Forbidden, InvalidRequest
from shared.events import utcnow
from shared.mongo import REVIEWS, TEMPLATE_VERSIONS, Document, all_of, calls
from shared.results import TemplateRef
from shared.reviews import Verdict, machine_of, verdict_of

LEADS_ONLY = "Слепую проверку проводят администратор и руководитель"
NOT_PICKED = "Этот звонок не выбран для слепой проверки"
DONE = "Этот звонок уже проверен вслепую"
QUEUE_LIMIT = 100
WAITING: Document = {"blind_review.state": "waiting"}


class BlindStage(TypedDict):
    name: str
    criteria: Annotated[str, Field(description="What the stage asks (no verdict)")]


class BlindChecklist(TypedDict):
    binding_id: str
    template: TemplateRef
    stages: list[BlindStage]


class BlindCall(TypedDict):
    """A call to judge: what was said, and the stages; never the machine's verdicts."""

    task_id: str
    call_id: str
    manager_id: str
    manager_name: str | None
    received_at: IsoTime
    has_audio: bool
    transcript: list[Document]
    checklists: list[BlindChecklist]


class BlindQueue(TypedDict):
    items: list[CallIdentity]


class StageVerdictForm(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    binding_id: str = Field(min_length=1, max_length=64)
    stage: str = Field(min_length=1, max_length=200)
    verdict: Verdict


class BlindReviewForm(BaseModel):
    """A verdict on every stage of every checklist of the call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    verdicts: list[StageVerdictForm] = Field(min_length=1, max_length=200)


class Compared(TypedDict):
    binding_id: str
    template: TemplateRef
    stage: str
    method: str
    human: Verdict
    machine: Annotated[Verdict | None, Field(description="null: the machine could not judge")]
    agree: bool | None


class BlindResult(TypedDict):
    """Both verdicts of every stage, once the person's are in."""

    task_id: str
    by: Annotated[str, Field(description="Who reviewed it")]
    at: IsoTime
    stages: list[Compared]


def _leads(viewer: User) -> None:
    if viewer.role not in (Role.ADMIN, Role.SUPERVISOR):
        raise Forbidden(LEADS_ONLY)


async def queue(db: AsyncDatabase[Document], viewer: User) -> BlindQueue:
    """The picked calls still waiting, newest first, that the viewer may see."""
    _leads(viewer)
    found = (
        await calls(db)
        .find(
            all_of(WAITING, viewer.visibility()),
            {"call_id": 1, "deal_id": 1, "manager_id": 1, "manager_name": 1, "received_at": 1},
        )
        .sort("received_at", -1)
        .limit(QUEUE_LIMIT)
        .to_list()
    )
    return {"items": [identity(call) for call in found]}


async def waiting_count(db: AsyncDatabase[Document], viewer: User) -> int:
    """How many picked calls wait for the viewer (the menu's count)."""
    if viewer.role not in (Role.ADMIN, Role.SUPERVISOR):
        return 0
    return await calls(db).count_documents(all_of(WAITING, viewer.visibility()))


async def _criteria(db: AsyncDatabase[Document], template: TemplateRef) -> dict[str, str]:
    version = await db[TEMPLATE_VERSIONS].find_one(
        {"_id": f"{template['id']}@{template.get('version', 1)}"}
    )
    return {stage["name"]: stage.get("criteria", "") for stage in (version or {}).get("stages", [])}


async def _waiting(db: AsyncDatabase[Document], viewer: User, task_id: str) -> Document:
    """A picked call still waiting for its blind review, that the viewer may judge."""
    _leads(viewer)
    task = await visible_task(db, viewer, task_id, {"outbox": 0})
    if (task.get("blind_review") or {}).get("state") != "waiting":
        raise Conflict(DONE if task.get("blind_review") else NOT_PICKED)
    return task


async def blind_call(db: AsyncDatabase[Document], viewer: User, task_id: str) -> BlindCall:
    """The call as the reviewer sees it before judging."""
    task = await _waiting(db, viewer, task_id)
    details = await call_details.of(db, task, {"transcript": 1})
    checklists: list[BlindChecklist] = []
    for checklist in task["results"]["checklists"]:
        criteria = await _criteria(db, checklist["template"])
        checklists.append(
            {
                "binding_id": checklist["binding_id"],
                "template": checklist["template"],
                "stages": [
                    {"name": stage["name"], "criteria": criteria.get(stage["name"], "")}
                    for stage in checklist["stages"]
                ],
            }
        )
    return {
        "task_id": task_id,
        "call_id": task["call_id"],
        "manager_id": task["manager_id"],
        "manager_name": task.get("manager_name"),
        "received_at": iso(task["received_at"]),
        "has_audio": bool(task.get("audio")),
        "transcript": details.get("transcript") or [],
        "checklists": checklists,
    }


def _compared(task: Document, verdicts: dict[tuple[str, str], Verdict]) -> list[Compared]:
    compared: list[Compared] = []
    for checklist in task["results"]["checklists"]:
        for stage in checklist["stages"]:
            machine = verdict_of(machine_of(stage))
            human = verdicts[(checklist["binding_id"], stage["name"])]
            compared.append(
                {
                    "binding_id": checklist["binding_id"],
                    "template": checklist["template"],
                    "stage": stage["name"],
                    "method": stage.get("method", "phrases"),
                    "human": human,
                    "machine": machine,
                    "agree": None if machine is None else machine == human,
                }
            )
    return compared


def _record_id(task_id: str, row: Compared) -> str:
    return f"blind:{task_id}:{row['binding_id']}:{row['stage']}"


async def submit(
    db: AsyncDatabase[Document], viewer: User, task_id: str, form: BlindReviewForm
) -> BlindResult:
    """Record the person's verdict on every stage (on the call, then as `reviews`
    records); then both verdicts are shown."""
    task = await _waiting(db, viewer, task_id)
    given = {(v.binding_id, v.stage): v.verdict for v in form.verdicts}
    wanted = {
        (checklist["binding_id"], stage["name"])
        for checklist in task["results"]["checklists"]
        for stage in checklist["stages"]
    }
    if set(given) != wanted:
        raise InvalidRequest(
            "Нужен вердикт по каждому этапу звонка, и только по ним",
            details=[{"field": "verdicts", "message": "этапы не совпадают с чек-листами"}],
        )
    now = utcnow()
    compared = _compared(task, given)
    review = {"state": "done", "by": viewer.reviewer(), "at": now, "stages": compared}
    marked = await calls(db).update_one(
        {"_id": task_id, **WAITING}, {"$set": {"blind_review": review}}
    )
    if marked.modified_count == 0:  # another person's came first
        raise Conflict(DONE)
    for row in compared:  # what the trust page counts
        record = {
            "_id": _record_id(task_id, row),
            "kind": "blind",
            "task_id": task_id,
            "call_id": task["call_id"],
            "manager_id": task["manager_id"],
            **row,
            "by": viewer.reviewer(),
            "at": now,
        }
        await db[REVIEWS].replace_one({"_id": record["_id"]}, record, upsert=True)
    return _result(task_id, review)


def _result(task_id: str, review: Document) -> BlindResult:
    return {
        "task_id": task_id,
        "by": review["by"]["name"],
        "at": iso(review["at"]),
        "stages": review["stages"],
    }


async def result(db: AsyncDatabase[Document], viewer: User, task_id: str) -> BlindResult:
    """Both verdicts of a call reviewed blind, as they were when the person gave theirs."""
    _leads(viewer)
    task = await visible_task(db, viewer, task_id, {"blind_review": 1})
    review = task.get("blind_review") or {}
    if review.get("state") != "done":
        raise Conflict(NOT_PICKED if not review else "Звонок ещё ждёт слепой проверки")
    return _result(task_id, review)
