"""Which scripts and tables apply to a call, and the results document they produce (SPEC §7)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from services.analyzer.phrases import Quote, Token, every_place, tokenize
from services.analyzer.pipeline import Transcription
from services.analyzer.scoring import StageVerdict, evaluate_phrases
from services.analyzer.tables import LLM_NOT_CONFIGURED, build_row
from shared.results import (
    Checklist,
    Evidence,
    StageResult,
    TableResult,
    TemplateRef,
    TrackerHits,
    checklist_score,
)
from shared.scripts import Binding, Stage, Table, Template, Tracker


@dataclass(frozen=True)
class Call:
    """The CRM facts that decide which bindings and tables apply."""

    received_at: datetime
    manager_id: str
    stage_id: str | None
    deal_stage_id: str | None


def _in(value: str | None, allowed: Sequence[str]) -> bool:
    return not allowed or value in allowed


def binding_applies(binding: Binding, created_at: datetime, call: Call) -> bool:
    """Only calls received after the binding was saved, of its funnel, stages and managers."""
    return (
        created_at <= call.received_at
        and (binding.stage_id is None or binding.stage_id == call.stage_id)
        and _in(call.deal_stage_id, binding.deal_stage_ids)
        and _in(call.manager_id, binding.manager_ids)
    )


def table_applies(table: Table, created_at: datetime, call: Call) -> bool:
    """Only calls received after the table was saved, of its funnel and stages."""
    return (
        created_at <= call.received_at
        and (table.stage_id is None or table.stage_id == call.stage_id)
        and _in(call.deal_stage_id, table.deal_stage_ids)
    )


def _quote(quote: Quote) -> Evidence:
    return {
        "text": quote.text,
        "start_s": round(quote.start_s, 2),
        "end_s": round(quote.end_s, 2),
        "speaker": quote.speaker,
    }


def _verdict(
    stage: Stage,
    tokens: Sequence[Token],
    transcription: Transcription,
    llm_verdicts: Mapping[str, StageVerdict] | None,
) -> StageVerdict:
    if stage.method == "phrases":
        return evaluate_phrases(
            stage,
            tokens,
            duration_s=transcription.metrics.duration_s,
            roles_uncertain=transcription.roles.uncertain,
        )
    if llm_verdicts is not None and stage.name in llm_verdicts:
        return llm_verdicts[stage.name]
    return StageVerdict.not_evaluated(stage.name, LLM_NOT_CONFIGURED)


def stage_result(verdict: StageVerdict, method: Literal["phrases", "llm"]) -> StageResult:
    """A verdict as the results carry it."""
    return {
        "name": verdict.name,
        "method": method,
        "applicable": verdict.applicable,
        "completion": verdict.completion,
        "passed": verdict.passed,
        "evaluated": verdict.evaluated,
        "evidence": [_quote(quote) for quote in verdict.evidence],
        "recommendation": verdict.recommendation,
        "notes": verdict.notes,
    }


def checklist(
    binding_id: str,
    template_ref: TemplateRef,
    template: Template,
    transcription: Transcription,
    llm_verdicts: Mapping[str, StageVerdict] | None = None,
) -> Checklist:
    """One `checklist.completed` body: verdicts of every stage and the "X/Y" score.

    `llm_verdicts` holds the verdicts of the template's `llm` stages by stage name.
    """
    tokens = tokenize(transcription.utterances)
    stages = [
        stage_result(_verdict(stage, tokens, transcription, llm_verdicts), stage.method)
        for stage in template.stages
    ]
    return {
        "binding_id": binding_id,
        "template": template_ref,
        "score": checklist_score(stages),
        "stages": stages,
    }


MAX_TRACKER_QUOTES = 20


def tracker_hits(tracker_id: str, tracker: Tracker, tokens: Sequence[Token]) -> TrackerHits | None:
    """Where the call said the tracker's phrases (by its speaker, within its window);
    None when it never did."""
    quotes = sorted(
        {
            (quote.start_s, quote.end_s): quote
            for phrase in tracker.phrases
            for quote in every_place(
                phrase, tokens, speaker=tracker.speaker, within_s=tracker.within_s
            )
        }.values(),
        key=lambda quote: quote.start_s,
    )
    if not quotes:
        return None
    return {
        "tracker_id": tracker_id,
        "name": tracker.name,
        "hits": len(quotes),
        "quotes": [_quote(quote) for quote in quotes[:MAX_TRACKER_QUOTES]],
    }


def trackers_hits(
    trackers: Mapping[str, Tracker], transcription: Transcription
) -> list[TrackerHits]:
    """The hits of every tracker the call said, in the trackers' order."""
    tokens = tokenize(transcription.utterances)
    return [
        hits
        for tracker_id, tracker in trackers.items()
        if (hits := tracker_hits(tracker_id, tracker, tokens)) is not None
    ]


def table_row(
    table_id: str,
    table: Table,
    transcription: Transcription,
    llm_values: Mapping[str, Any] | None = None,
) -> TableResult:
    """One `analytics.completed` body: the typed row, and why any value is null."""
    row = build_row(
        table.fields,
        utterances=transcription.utterances,
        tokens=tokenize(transcription.utterances),
        metrics=transcription.metrics,
        llm_values=llm_values,
    )
    return {
        "table_id": table_id,
        "name": table.name,
        "row": row.values,
        "null_reasons": row.reasons,
    }
