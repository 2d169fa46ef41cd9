"""People's verdicts on script stages (SPEC §5.1): corrections of what the analysis decided,
kept on the call next to the machine's verdict and applied again whenever the call is
scored (the gateway applies a new correction with these functions, the analyzer a call's
corrections to a new analysis); the calls picked for blind review; and the `reviews`
records the trust page counts: one per blind review of a stage, one per correction."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Literal

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from typing_extensions import TypedDict

from shared.mongo import REVIEW_SAMPLES, REVIEWS, Document
from shared.results import (
    Checklist,
    MachineVerdict,
    Reviewer,
    StageResult,
    TemplateRef,
    checklist_score,
)

Verdict = Literal["passed", "failed", "not_applicable"]
VERDICTS: tuple[Verdict, ...] = ("passed", "failed", "not_applicable")
VERDICT_LABELS: dict[str, str] = {
    "passed": "выполнен",
    "failed": "не выполнен",
    "not_applicable": "не применим",
}


# A person's verdict without a completion: done is done.
_DEFAULT_COMPLETION: dict[str, float] = {"passed": 100.0, "failed": 0.0, "not_applicable": 0.0}


class Correction(TypedDict):
    """One correction of one stage, as the call keeps it (`corrections`, oldest first)."""

    id: str
    binding_id: str
    template: TemplateRef
    stage: str
    method: str
    verdict: Verdict
    completion: float | None  # None: 100 when passed, else 0
    machine: MachineVerdict  # what the analysis said when the person corrected it
    reason: str
    by: Reviewer
    at: datetime
    dispute_id: str | None


def verdict_of(stage: StageResult | MachineVerdict) -> Verdict | None:
    """A stage's verdict in one word; None when it could not be judged (no LLM)."""
    if not stage["applicable"]:
        return "not_applicable"
    if not stage["evaluated"]:
        return None
    return "passed" if stage["passed"] else "failed"


def machine_of(stage: StageResult) -> MachineVerdict:
    """What the analysis decided of a stage, corrected since or not."""
    review = stage.get("review")
    if review is not None:
        return review["machine"]
    return {
        "applicable": stage["applicable"],
        "completion": stage["completion"],
        "passed": stage["passed"],
        "evaluated": stage["evaluated"],
    }


def _version(template: TemplateRef) -> int:
    return template.get("version", 1)


def _latest(corrections: Iterable[Correction]) -> dict[tuple[str, int, str], Correction]:
    """The correction in force for each stage: the latest, by binding, version and name."""
    latest: dict[tuple[str, int, str], Correction] = {}
    for correction in corrections:  # oldest first
        key = (correction["binding_id"], _version(correction["template"]), correction["stage"])
        latest[key] = correction
    return latest


def corrected(stage: StageResult, correction: Correction) -> StageResult:
    """The stage as the person judged it, the machine's verdict kept in `review`."""
    machine = machine_of(stage)
    completion = correction["completion"]
    return {
        **stage,
        "applicable": correction["verdict"] != "not_applicable",
        "passed": correction["verdict"] == "passed",
        "evaluated": True,
        "completion": _DEFAULT_COMPLETION[correction["verdict"]]
        if completion is None
        else completion,
        "review": {
            "review_id": correction["id"],
            "by": correction["by"],
            "at": correction["at"].isoformat(),
            "reason": correction["reason"],
            "machine": machine,
        },
    }


def with_corrections(
    checklists: Sequence[Checklist], corrections: Iterable[Correction]
) -> tuple[list[Checklist], Correction | None]:
    """The checklists with the corrections in force applied to the stages they were made
    on (same binding, template version and stage name) and scored again; and the latest
    correction applied (who the results were last reviewed by), if any."""
    latest = _latest(corrections)
    applied: list[Correction] = []
    result: list[Checklist] = []
    for checklist in checklists:
        stages: list[StageResult] = []
        for stage in checklist["stages"]:
            key = (checklist["binding_id"], _version(checklist["template"]), stage["name"])
            correction = latest.get(key)
            if correction is None:
                stages.append(stage)
            else:
                stages.append(corrected(stage, correction))
                applied.append(correction)
        result.append({**checklist, "stages": stages, "score": checklist_score(stages)})
    last = max(applied, key=lambda correction: correction["at"], default=None)
    return result, last


async def pick_for_blind_review(
    db: AsyncDatabase[Document], manager_id: str, received_at: datetime, percent: float
) -> bool:
    """Whether a newly analysed call goes to blind review: `percent` of the manager's
    analysed calls of its week (UTC, from Monday), at least one, the first ones first."""
    if percent <= 0:
        return False
    day = received_at.date()
    key = f"{manager_id}:{day - timedelta(days=day.weekday())}"
    counter = await db[REVIEW_SAMPLES].find_one_and_update(
        {"_id": key}, {"$inc": {"analysed": 1}}, upsert=True, return_document=ReturnDocument.AFTER
    )
    assert counter is not None  # upserted
    wanted = max(1, math.ceil(percent / 100 * counter["analysed"]))
    picked = await db[REVIEW_SAMPLES].update_one(
        {"_id": key, "picked": {"$not": {"$gte": wanted}}}, {"$inc": {"picked": 1}}
    )
    return picked.modified_count == 1


def correction_records(call: Document) -> list[Document]:
    """The `reviews` records of a call's corrections: the latest of each stage counts."""
    corrections: list[Correction] = call.get("corrections") or []
    current = {correction["id"] for correction in _latest(corrections).values()}
    return [
        {
            "_id": correction["id"],
            "kind": "correction",
            "current": correction["id"] in current,
            "task_id": call["_id"],
            "call_id": call.get("call_id"),
            "manager_id": call["manager_id"],
            "binding_id": correction["binding_id"],
            "template": correction["template"],
            "stage": correction["stage"],
            "method": correction["method"],
            "machine": verdict_of(correction["machine"]),
            "human": correction["verdict"],
            "by": correction["by"],
            "at": correction["at"],
            "dispute_id": correction["dispute_id"],
        }
        for correction in corrections
    ]


async def record_corrections(db: AsyncDatabase[Document], found: Iterable[Document]) -> None:
    """Keep the `reviews` records of these calls' corrections in step (idempotent)."""
    for call in found:
        for record in correction_records(call):
            await db[REVIEWS].replace_one({"_id": record["_id"]}, record, upsert=True)
