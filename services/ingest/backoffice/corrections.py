"""A person corrects a stage verdict of a call (SPEC §5.1): an admin, or a supervisor of
the call's manager. The call keeps every correction (`corrections`, oldest first) and
the machine's verdict next to the human one; the score is computed again, the results
become a new revision, and the CRM gets that checklist again (`call.reviewed`, through
the call's outbox, in the same write)."""

from __future__ import annotations

import secrets
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from pymongo.asynchronous.database import AsyncDatabase
from typing_extensions import TypedDict

from services.ingest.backoffice.accounts import Role, User, visible_task
from shared.errors import Conflict, Forbidden, InvalidRequest
from shared.events import CallMeta, CallReviewed, Envelope, call_meta, utcnow
from shared.mongo import Document, calls
from shared.outbox import outbox_append
from shared.results import Checklist, OverallScore, StageResult, overall_score
from shared.reviews import Correction, Verdict, machine_of, with_corrections
from shared.rollups import remember_score
from shared.tasks import ANALYSED, TaskEvent, TaskStatus, moved

NOT_ANALYSED = "Исправить можно только вердикты проанализированного звонка"
CHANGED = "Результаты звонка изменились, пока вы их исправляли: обновите страницу"
LEADS_ONLY = "Исправлять вердикты могут администратор и руководитель менеджера"


class CorrectionForm(BaseModel):
    """A person's verdict on one stage of a call's checklist."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    binding_id: str = Field(min_length=1, max_length=64, description="The checklist's binding")
    stage: str = Field(min_length=1, max_length=200, description="The stage's name")
    verdict: Verdict
    completion: float | None = Field(
        None, ge=0, le=100, description="Completion percent; null: 100 if passed, else 0"
    )
    reason: str = Field(min_length=1, max_length=2000, description="Why, for the manager")


class Corrected(TypedDict):
    """The call's results after the correction."""

    revision: Annotated[int, Field(ge=1)]
    checklist: Checklist
    score: OverallScore | None


_FIELDS = {
    "status": 1,
    "revision": 1,
    "results": 1,
    "corrections": 1,
    **{name: 1 for name in CallMeta.model_fields},
}


def stage_of(results: Document | None, binding_id: str, name: str) -> tuple[Checklist, StageResult]:
    """A stage of the call's results, by its checklist's binding and its name; a 400
    naming the field when there is none."""
    for checklist in (results or {}).get("checklists", []):
        if checklist["binding_id"] != binding_id:
            continue
        for stage in checklist["stages"]:
            if stage["name"] == name:
                return checklist, stage
        raise InvalidRequest(
            "Такого этапа нет в чек-листе звонка",
            details=[{"field": "stage", "message": "нет этапа с таким названием"}],
        )
    raise InvalidRequest(
        "Такого чек-листа нет в результатах звонка",
        details=[{"field": "binding_id", "message": "нет чек-листа этой привязки"}],
    )


async def correct(
    db: AsyncDatabase[Document],
    viewer: User,
    task_id: str,
    form: CorrectionForm,
    *,
    dispute_id: str | None = None,
) -> Corrected:
    """Correct one stage verdict of a call the viewer leads; the results as they are now."""
    if viewer.role not in (Role.ADMIN, Role.SUPERVISOR):
        raise Forbidden(LEADS_ONLY)
    task = await visible_task(db, viewer, task_id, _FIELDS)
    if task["status"] not in ANALYSED:
        raise Conflict(NOT_ANALYSED)
    checklist, stage = stage_of(task.get("results"), form.binding_id, form.stage)
    now = utcnow()
    correction: Correction = {
        "id": f"cor_{secrets.token_hex(8)}",
        "binding_id": form.binding_id,
        "template": checklist["template"],
        "stage": form.stage,
        "method": stage.get("method", "phrases"),
        "verdict": form.verdict,
        "completion": form.completion,
        "machine": machine_of(stage),
        "reason": form.reason,
        "by": viewer.reviewer(),
        "at": now,
        "dispute_id": dispute_id,
    }
    corrections = [*(task.get("corrections") or []), correction]
    checklists, _ = with_corrections(task["results"]["checklists"], corrections)
    score = overall_score(checklists)
    if score is not None:  # known to the score sorts before the call has it
        await remember_score(db, score["percent"])
    revision = (task.get("revision") or 1) + 1
    event = CallReviewed(**call_meta(task), binding_ids=[form.binding_id], revision=revision)
    outbox_set, outbox_push = outbox_append(Envelope.wrap(event, task_id=task_id))
    update = moved(
        TaskStatus.DELIVERING,
        now,
        because=TaskEvent.VERDICT_CORRECTED,
        by=viewer.email,
        set_fields={
            "results.checklists": checklists,
            "score": score,
            "revision": revision,
            "reviewed_by": viewer.reviewer(),
            "deliveries_closed": [],
            **outbox_set,
        },
        push_fields={**outbox_push, "corrections": correction},
    )
    written = await calls(db).update_one(
        {"_id": task_id, "revision": task.get("revision"), "status": {"$in": list(ANALYSED)}},
        update,
    )
    if written.matched_count == 0:
        raise Conflict(CHANGED)
    (changed,) = [c for c in checklists if c["binding_id"] == form.binding_id]
    return {"revision": revision, "checklist": changed, "score": score}
