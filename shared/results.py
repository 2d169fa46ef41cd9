"""What the analysis of a call produces (SPEC §7): a checklist per bound script, a row per
analytics table, the talk metrics, and the call's overall score. The analyzer writes
these types, the status API and the call card show them, the webhooks carry them; the
OpenAPI document describes them from here."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field
from typing_extensions import TypedDict

Percent = Annotated[float, Field(ge=0, le=100)]
Share = Annotated[float, Field(ge=0, le=1)]


class Evidence(TypedDict):
    """What was said that decided a point, and when."""

    text: str
    start_s: float
    end_s: float
    speaker: Literal["manager", "client"]


class StageResult(TypedDict):
    """One stage of a script, judged."""

    name: str
    applicable: Annotated[bool, Field(description="False: skipped by its `ignore_when`")]
    completion: Annotated[Percent, Field(description="The weight of its points met, of 100")]
    passed: bool
    evaluated: Annotated[bool, Field(description="False: could not be judged (no LLM)")]
    evidence: list[Evidence]
    recommendation: str | None
    notes: list[str]


class ChecklistScore(TypedDict):
    passed: int
    applicable: int
    percent: Percent
    text: Annotated[str, Field(description="`passed/applicable`, e.g. `3/4`")]


class TemplateRef(TypedDict):
    id: str
    name: str


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


class Results(TypedDict):
    checklists: list[Checklist]
    tables: list[TableResult]
    metrics: CallMetrics


class Reviewer(TypedDict):
    """The person who corrected a call's results (swapped its roles, later its verdicts)."""

    id: str
    email: str
    name: str


class OverallScore(TypedDict):
    """The call's score over all its checklists (what lists sort and filter by)."""

    passed: int
    applicable: int
    percent: Percent
    perfect: Annotated[bool, Field(description="Every applicable stage passed")]
