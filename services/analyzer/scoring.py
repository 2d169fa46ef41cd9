"""Scoring a call against a script: stage verdicts with evidence, and the "X/Y" score."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from services.analyzer.phrases import Quote, Token, find_phrase
from shared.results import BROKEN
from shared.scripts import Point, Stage

# "короче 1 минуты", "менее 30 секунд", "меньше минуты": the one ignore rule that needs no LLM.
_SHORT_CALL = re.compile(
    r"(?:короче|меньше|менее)\s+(?P<number>\d+(?:[.,]\d+)?)?\s*(?P<unit>сек|с\b|мин)", re.I
)


ROLES_UNCERTAIN = "роли говорящих определены неуверенно: проверьте их на карточке звонка"


@dataclass(frozen=True)
class StageVerdict:
    """The outcome of one stage, as the results and webhooks carry it."""

    name: str
    applicable: bool
    completion: float
    passed: bool
    evaluated: bool
    evidence: list[Quote] = field(default_factory=list)
    recommendation: str | None = None
    notes: list[str] = field(default_factory=list)

    @classmethod
    def not_evaluated(cls, name: str, why: str) -> StageVerdict:
        """A stage that could not be judged: it counts neither for nor against the score."""
        return cls(
            name, applicable=True, completion=0.0, passed=False, evaluated=False, notes=[why]
        )


def ignored_as_short(ignore_when: str, duration_s: float) -> bool:
    """True when `ignore_when` says "shorter than N" and the call is."""
    match = _SHORT_CALL.search(ignore_when)
    if match is None:
        return False
    number = float((match["number"] or "1").replace(",", "."))
    limit_s = number * 60 if match["unit"].lower().startswith("мин") else number
    return duration_s < limit_s


def _point_met(point: Point, tokens: Sequence[Token], speaker: str) -> tuple[bool, Quote | None]:
    for phrase in point.phrases:
        quote = find_phrase(phrase, tokens, speaker=speaker, within_s=point.within_s)
        if quote is not None:
            return not point.forbidden, quote
    return point.forbidden, None


def evaluate_phrases(
    stage: Stage, tokens: Sequence[Token], *, duration_s: float, roles_uncertain: bool = False
) -> StageVerdict:
    """Score a `phrases` stage: completion is the weight of the points met.

    When the roles of a mono call were decided with little confidence, a stage whose
    points depend on who spoke says so.
    """
    if ignored_as_short(stage.ignore_when, duration_s):
        return StageVerdict(
            stage.name,
            applicable=False,
            completion=0.0,
            passed=False,
            evaluated=True,
            notes=["этап не применим: звонок слишком короткий"],
        )
    completion = 0.0
    evidence: list[Quote] = []
    missed: list[str] = []
    for point in stage.points:
        met, quote = _point_met(point, tokens, point.speaker)
        if met:
            completion += point.weight
        else:
            missed.append(
                f"{BROKEN}{point.text}" if point.forbidden else f"Не выполнено: {point.text}"
            )
        if quote is not None:
            evidence.append(quote)
    completion = round(completion, 2)
    passed = completion >= stage.threshold
    depends_on_speaker = any(point.speaker != "any" for point in stage.points)
    notes = [ROLES_UNCERTAIN] if roles_uncertain and depends_on_speaker else []
    return StageVerdict(
        name=stage.name,
        applicable=True,
        completion=completion,
        passed=passed,
        evaluated=True,
        evidence=evidence,
        recommendation="; ".join(missed) if missed else None,
        notes=notes,
    )
