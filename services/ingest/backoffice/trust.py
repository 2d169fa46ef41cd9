"""How often the machine and people agree («Качество оценки», SPEC §5.1): per template
version and stage, over the days the reviews were given, the agreement, Cohen's κ and
the confusion counts, blind reviews and corrections apart (corrections lean toward the
errors someone noticed; blind reviews are the honest sample).

Reads the `reviews` records (`shared/reviews.py`), a record per person's verdict on a
stage, never the calls; within the viewer's visibility (a supervisor: their team)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from pymongo.asynchronous.cursor import AsyncCursor
from pymongo.asynchronous.database import AsyncDatabase
from typing_extensions import TypedDict

from services.ingest.backoffice.accounts import User
from services.ingest.backoffice.filters import CallFilters, Day, ZoneName
from shared.mongo import REVIEWS, Document, all_of
from shared.results import Percent, TemplateRef
from shared.reviews import VERDICTS, Verdict

Kind = Literal["blind", "correction"]
KIND_LABELS = {"blind": "слепая проверка", "correction": "исправления"}


class TrustFilters(BaseModel):
    """The days the reviews were given (the last 30 by default), and a template."""

    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)

    date_from: Day | None = None
    date_to: Day | None = None
    template_id: str = ""
    tz: ZoneName = "UTC"

    def days(self) -> CallFilters:
        """As the calls filters read days; a month back by default."""
        days = CallFilters(date_from=self.date_from, date_to=self.date_to, tz=self.tz)
        first, last = days.days()
        if self.date_from is None:
            first = date.fromordinal(last.toordinal() - 29)
        return CallFilters(date_from=first, date_to=last, tz=self.tz)


class Cell(TypedDict):
    machine: Verdict
    human: Verdict
    count: int


class StageTrust(TypedDict):
    """The agreement on one stage of one template version, by one kind of review."""

    template: TemplateRef
    stage: str
    method: str
    kind: Kind
    kind_label: str
    reviewed: Annotated[int, Field(description="Verdicts compared (the machine judged)")]
    agreed: int
    agreement: Percent | None
    kappa: Annotated[float | None, Field(description="Cohen's κ; null: one class only")]
    machine_passed_human_failed: int
    machine_failed_human_passed: int
    not_judged: Annotated[int, Field(description="Reviews where the machine could not judge")]
    confusion: list[Cell]


class MethodTrust(TypedDict):
    method: str
    kind: Kind
    kind_label: str
    reviewed: int
    agreement: Percent | None
    kappa: float | None


class TrustReport(TypedDict):
    stages: Annotated[list[StageTrust], Field(description="The lowest agreement first")]
    methods: list[MethodTrust]


def kappa(confusion: Mapping[tuple[str, str], int]) -> float | None:
    """Cohen's κ of (machine, human) pairs: (p_o − p_e) / (1 − p_e); None when chance
    agreement is certain (both said one and the same class only: κ is undefined)."""
    total = sum(confusion.values())
    if total == 0:
        return None
    observed = sum(n for (machine, human), n in confusion.items() if machine == human) / total
    machine_share, human_share = Counter[str](), Counter[str]()
    for (machine, human), n in confusion.items():
        machine_share[machine] += n
        human_share[human] += n
    expected = sum(machine_share[c] * human_share[c] for c in machine_share) / total**2
    if expected >= 1.0:
        return None
    return round((observed - expected) / (1 - expected), 3)


def agreement(confusion: Mapping[tuple[str, str], int]) -> float | None:
    """The share of pairs where machine and human said the same, in percent."""
    total = sum(confusion.values())
    agreed = sum(n for (machine, human), n in confusion.items() if machine == human)
    return round(100 * agreed / total, 1) if total else None


def _counted(records: Iterable[Document]) -> Iterable[Document]:
    """Blind reviews, and the correction in force of each stage (an earlier one of the
    same stage was the same person's or another's mind changed, not a second sample)."""
    return (r for r in records if r["kind"] == "blind" or r.get("current"))


@dataclass
class _Tally:
    """The pairs of verdicts of one stage (or method) and one kind of review."""

    template: TemplateRef
    method: str
    kind: Kind
    confusion: Counter[tuple[str, str]] = field(default_factory=Counter)
    not_judged: int = 0

    def add(self, record: Document) -> None:
        if record["machine"] is None:
            self.not_judged += 1
        else:
            self.confusion[(record["machine"], record["human"])] += 1

    @property
    def reviewed(self) -> int:
        return sum(self.confusion.values())


def report_of(records: Iterable[Document]) -> TrustReport:
    """The report of these records: a row per template version, stage and kind of review,
    the lowest agreement first; and the totals by method and kind."""
    stages: dict[tuple[str, int, str, str], _Tally] = {}
    methods: dict[tuple[str, str], _Tally] = {}
    for record in _counted(records):
        template, kind, method = record["template"], record["kind"], record["method"]
        key = (template["id"], template.get("version", 1), record["stage"], kind)
        stages.setdefault(key, _Tally(template, method, kind)).add(record)
        methods.setdefault((method, kind), _Tally(template, method, kind)).add(record)
    rows: list[StageTrust] = [
        {
            "template": tally.template,
            "stage": stage,
            "method": tally.method,
            "kind": tally.kind,
            "kind_label": KIND_LABELS[tally.kind],
            "reviewed": tally.reviewed,
            "agreed": sum(n for (m, h), n in tally.confusion.items() if m == h),
            "agreement": agreement(tally.confusion),
            "kappa": kappa(tally.confusion),
            "machine_passed_human_failed": tally.confusion[("passed", "failed")],
            "machine_failed_human_passed": tally.confusion[("failed", "passed")],
            "not_judged": tally.not_judged,
            "confusion": [
                {"machine": m, "human": h, "count": tally.confusion[(m, h)]}
                for m in VERDICTS
                for h in VERDICTS
                if tally.confusion[(m, h)]
            ],
        }
        for (_, _, stage, _), tally in stages.items()
    ]
    rows.sort(key=lambda row: (row["agreement"] is None, row["agreement"] or 0, row["stage"]))
    return {
        "stages": rows,
        "methods": [
            {
                "method": method,
                "kind": tally.kind,
                "kind_label": KIND_LABELS[tally.kind],
                "reviewed": tally.reviewed,
                "agreement": agreement(tally.confusion),
                "kappa": kappa(tally.confusion),
            }
            for (method, _), tally in sorted(methods.items())
        ],
    }


async def report(db: AsyncDatabase[Document], viewer: User, filters: TrustFilters) -> TrustReport:
    """The trust report of the reviews given in the period that the viewer may see."""
    template = {"template.id": filters.template_id} if filters.template_id else {}
    return report_of(await _reviews(db, viewer, filters, template).to_list())


def _reviews(
    db: AsyncDatabase[Document], viewer: User, filters: TrustFilters, narrowed: Document
) -> AsyncCursor[Document]:
    """The review records given in the filters' days that the viewer may see (the day
    first: its index), narrowed further."""
    start, end = filters.days().period()
    return db[REVIEWS].find(
        all_of({"at": {"$gte": start, "$lt": end}}, viewer.visibility(), narrowed)
    )


class StageFilters(TrustFilters):
    """One stage of one template version, over the same days."""

    template_id: str = Field(min_length=1, max_length=64)
    version: int = Field(1, ge=1)
    stage: str = Field(min_length=1, max_length=200)


class ReviewRecord(TypedDict):
    task_id: str
    call_id: str | None
    kind: Kind
    kind_label: str
    machine: Verdict | None
    human: Verdict
    by: str
    at: Annotated[str, Field(description="ISO time")]
    dispute_id: str | None


async def stage_records(
    db: AsyncDatabase[Document], viewer: User, filters: StageFilters
) -> list[ReviewRecord]:
    """The reviews of one stage in the period (what its agreement counts), newest first:
    the calls people judged blind, corrected, or corrected on a dispute."""
    found = _reviews(
        db, viewer, filters, {"template.id": filters.template_id, "stage": filters.stage}
    )
    records = [
        record
        for record in _counted(await found.sort("at", -1).to_list())
        if record["template"].get("version", 1) == filters.version
    ]
    return [
        {
            "task_id": record["task_id"],
            "call_id": record.get("call_id"),
            "kind": record["kind"],
            "kind_label": KIND_LABELS[record["kind"]],
            "machine": record["machine"],
            "human": record["human"],
            "by": record["by"]["name"],
            "at": record["at"].isoformat(),
            "dispute_id": record.get("dispute_id"),
        }
        for record in records
    ]
