"""What the analysis of a call produces (SPEC §7): a checklist per bound script, a row per
analytics table, the talk metrics, and the call's overall score. The analyzer writes
these types, the status API and the call card show them, the webhooks carry them; the
OpenAPI document describes them from here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal, NotRequired

from pydantic import Field
from typing_extensions import TypedDict

Percent = Annotated[float, Field(ge=0, le=100)]
Share = Annotated[float, Field(ge=0, le=1)]

# The languages calls are recognised in, the default first.
LanguageCode = Literal["ru", "en"]
LANGUAGES: tuple[LanguageCode, ...] = ("ru", "en")
# The Connection page's «Язык звонков»: one of them, or identified per call.
LanguageSetting = Literal["ru", "en", "auto"]


class Evidence(TypedDict):
    """What was said that decided a point, and when."""

    text: str
    start_s: float
    end_s: float
    speaker: Literal["manager", "client"]


class Reviewer(TypedDict):
    """The person who corrected a call's results (swapped its roles, corrected a verdict)."""

    id: str
    email: str
    name: str


class MachineVerdict(TypedDict):
    """What the analysis decided of a stage, kept when a person corrects it."""

    applicable: bool
    completion: Percent
    passed: bool
    evaluated: bool


class StageReview(TypedDict):
    """A person's correction of a stage: the stage's fields are theirs, the machine's
    verdict is kept here."""

    review_id: str
    by: Reviewer
    at: Annotated[str, Field(description="ISO time of the correction")]
    reason: str
    machine: MachineVerdict


# How a stage's notes name a "must not be said" point that was said (a broken point).
BROKEN = "Нарушено: "


class StageResult(TypedDict):
    """One stage of a script, judged."""

    name: str
    method: NotRequired[Literal["phrases", "llm"]]
    applicable: Annotated[bool, Field(description="False: skipped by its `ignore_when`")]
    completion: Annotated[Percent, Field(description="The weight of its points met, of 100")]
    passed: bool
    evaluated: Annotated[bool, Field(description="False: could not be judged (no LLM)")]
    evidence: list[Evidence]
    recommendation: str | None
    notes: list[str]
    review: NotRequired[Annotated[StageReview, Field(description="Set when a person corrected it")]]


class ChecklistScore(TypedDict):
    passed: int
    applicable: int
    percent: Percent
    text: Annotated[str, Field(description="`passed/applicable`, e.g. `3/4`")]


class TemplateRef(TypedDict):
    id: str
    name: str
    version: NotRequired[Annotated[int, Field(ge=1, description="The version scored with")]]


class Checklist(TypedDict):
    """One bound script's verdicts: the body of `checklist.completed`'s `checklist`."""

    binding_id: str
    template: TemplateRef
    score: ChecklistScore
    stages: list[StageResult]


class TableResult(TypedDict):
    """What one analytics table collected from the call."""

    table_id: str
    name: str
    row: Annotated[dict[str, Any], Field(description="The table's fields by key")]
    null_reasons: Annotated[dict[str, str], Field(description="Why a field is null")]


class CallMetrics(TypedDict):
    duration_s: float
    talk_time_manager_s: float
    talk_time_client_s: float
    talk_ratio: Annotated[Share | None, Field(description="The manager's share of the talk")]
    longest_monologue_s: float
    silence_s: float
    interruptions: int
    words_per_minute_manager: float | None


class TrackerHits(TypedDict):
    """Where a call said a tracker's phrases (trackers it never said are not listed)."""

    tracker_id: str
    name: str
    hits: Annotated[int, Field(ge=1, description="Places the phrases were said")]
    quotes: Annotated[list[Evidence], Field(description="The first of them, in time order")]


class CallLanguage(TypedDict):
    """The language a call was recognised in, and what the model heard in its first speech."""

    code: Annotated[LanguageCode, Field(description="The language of the transcript")]
    setting: Annotated[LanguageSetting, Field(description="«Язык звонков» when it was analysed")]
    detected: Annotated[
        LanguageCode | None,
        Field(
            description="The likelier language in the call's first speech, as the model "
            "heard it; null where the model hears one language only"
        ),
    ]
    probability: Annotated[Share | None, Field(description="How sure the model was of it")]
    mismatch: Annotated[
        bool, Field(description="The call sounded like another language than it was recognised in")
    ]


class Results(TypedDict):
    checklists: list[Checklist]
    tables: list[TableResult]
    metrics: CallMetrics
    trackers: NotRequired[list[TrackerHits]]  # absent on calls analysed before trackers
    language: NotRequired[CallLanguage]  # absent on calls analysed before languages


class OverallScore(TypedDict):
    """The call's score over all its checklists (what lists sort and filter by)."""

    passed: int
    applicable: int
    percent: Percent
    perfect: Annotated[bool, Field(description="Every applicable stage passed")]


def checklist_score(stages: Sequence[StageResult]) -> ChecklistScore:
    """ "X/Y": stages passed out of applicable evaluated stages, and the percent."""
    counted = [stage for stage in stages if stage["applicable"] and stage["evaluated"]]
    passed = sum(1 for stage in counted if stage["passed"])
    return {
        "passed": passed,
        "applicable": len(counted),
        "percent": round(100.0 * passed / len(counted), 1) if counted else 0.0,
        "text": f"{passed}/{len(counted)}",
    }


def overall_score(checklists: Sequence[Checklist]) -> OverallScore | None:
    """The call's score over all its checklists (what lists sort and filter by): stages
    passed of stages applicable, the percent, and whether every applicable stage passed."""
    passed = sum(checklist["score"]["passed"] for checklist in checklists)
    applicable = sum(checklist["score"]["applicable"] for checklist in checklists)
    if not applicable:
        return None
    return {
        "passed": passed,
        "applicable": applicable,
        "percent": round(100 * passed / applicable, 1),
        "perfect": passed == applicable,
    }


def broken_points(stage: StageResult) -> list[str]:
    """The "must not be said" points of a stage that were said."""
    return [note.removeprefix(BROKEN) for note in stage["notes"] if note.startswith(BROKEN)]
