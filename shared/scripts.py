"""Sales scripts and analytics tables (SPEC §4, §7), as stored and as applied to calls."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    field_validator,
    model_validator,
)

Speaker = Literal["manager", "client", "any"]


def _one_line(value: str) -> str:
    """Names go into e-mail subjects, spreadsheets and logs: one line, no control
    characters."""
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in value):
        raise ValueError("название пишется в одну строку, без управляющих символов")
    return value


Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_one_line),
]
Phrase = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
LongText = Annotated[str, StringConstraints(max_length=4000)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


TrackerId = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class Tracker(_Strict):
    """A named, reusable phrase list («Словарь»: «Конкуренты», «Негатив», «Возражение:
    дорого»), counted on every analysed call."""

    name: Name
    phrases: list[Phrase] = Field(min_length=1, max_length=100)
    speaker: Speaker = "any"
    within_s: float | None = Field(None, gt=0, description="Only in the first N seconds.")


class Point(_Strict):
    """A sub-point of a stage: phrases that prove it (or must not be said)."""

    text: Name = Field(description="What the point checks, for people.")
    weight: float = Field(gt=0, le=100, description="Share of the stage, in percent.")
    speaker: Speaker = "manager"
    within_s: float | None = Field(None, gt=0, description="Only in the first N seconds.")
    phrases: list[Phrase] = Field(default_factory=list, max_length=50)
    tracker_id: TrackerId | None = Field(
        None, description="A tracker whose phrases the point listens for, instead of its own."
    )
    forbidden: StrictBool = Field(False, description="Met when none of the phrases is said.")

    @model_validator(mode="after")
    def _has_phrases(self) -> Point:
        if not self.phrases and not self.tracker_id:
            raise ValueError("нужны фразы (phrases) или словарь (tracker_id)")
        return self

    def listening_for(self, trackers: Mapping[str, Tracker]) -> Point:
        """The point with its tracker's phrases (when it names one), as it is scored; a
        tracker deleted since leaves the point's own phrases."""
        tracker = trackers.get(self.tracker_id or "")
        return self.model_copy(update={"phrases": tracker.phrases}) if tracker else self


class Stage(_Strict):
    """A stage of the sales script."""

    name: Name
    method: Literal["phrases", "llm"] = "phrases"
    threshold: float = Field(ge=0, le=100, description="Completion percent needed for +1.")
    criteria: LongText = ""
    ignore_when: LongText = ""
    points: list[Point] = Field(default_factory=list, max_length=30)

    @model_validator(mode="after")
    def _points_fit_the_method(self) -> Stage:
        if self.method == "phrases":
            if not self.points:
                raise ValueError("этап с методом phrases должен содержать пункты (points)")
            total = sum(point.weight for point in self.points)
            if abs(total - 100) > 0.01:
                raise ValueError(f"сумма весов пунктов должна быть 100%, сейчас {total:g}%")
        elif not self.criteria.strip():
            raise ValueError("этап с методом llm должен содержать критерии (criteria)")
        return self


class Template(_Strict):
    """A script template: ordered stages."""

    name: Name
    stages: list[Stage] = Field(min_length=1, max_length=30)

    def tracker_ids(self) -> set[str]:
        """The trackers its points listen with."""
        return {
            point.tracker_id
            for stage in self.stages
            for point in stage.points
            if point.tracker_id is not None
        }

    def listening_for(self, trackers: Mapping[str, Tracker]) -> Template:
        """The template with its points' trackers' phrases, as it is scored."""
        return self.model_copy(
            update={
                "stages": [
                    stage.model_copy(
                        update={"points": [p.listening_for(trackers) for p in stage.points]}
                    )
                    for stage in self.stages
                ]
            }
        )

    @field_validator("stages")
    @classmethod
    def _unique_stage_names(cls, stages: list[Stage]) -> list[Stage]:
        names = [stage.name for stage in stages]
        if len(names) != len(set(names)):
            raise ValueError("названия этапов должны быть уникальными")
        return stages


class WebhookTarget(_Strict):
    """Where results go; the secret is generated by the system when saved."""

    url: Annotated[str, StringConstraints(min_length=1, max_length=2048)]

    @field_validator("url")
    @classmethod
    def _http(cls, url: str) -> str:
        if not re.match(r"^https?://[^\s/]+", url):
            raise ValueError("нужна ссылка http:// или https://")
        return url


CrmIds = list[Annotated[str, StringConstraints(min_length=1, max_length=128)]]


class Binding(_Strict):
    """Which template scores the calls of a funnel and stages, optionally of some managers."""

    template_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    stage_id: str | None = Field(None, max_length=128, description="CRM funnel; null: any.")
    deal_stage_ids: CrmIds = Field(default_factory=list, description="Empty: every stage.")
    manager_ids: CrmIds = Field(default_factory=list, description="Empty: every manager.")
    webhook: WebhookTarget


FieldType = Literal["text", "long_text", "number", "boolean", "date", "enum"]
Metric = Literal[
    "duration_s",
    "talk_time_manager_s",
    "talk_time_client_s",
    "talk_ratio",
    "longest_monologue_s",
    "silence_s",
    "interruptions",
    "words_per_minute_manager",
]


class TableField(_Strict):
    """A column of an analytics table and how its value is extracted."""

    key: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    name: Name | None = None
    type: FieldType
    method: Literal["llm", "phrases", "regex", "metric"]
    prompt: LongText | None = None
    phrases: list[Phrase] | None = None
    pattern: Annotated[str, StringConstraints(min_length=1, max_length=500)] | None = None
    metric: Metric | None = None
    options: list[Name] | None = Field(None, description="Allowed values of an enum field.")
    speaker: Speaker = "any"

    @model_validator(mode="after")
    def _method_has_its_input(self) -> TableField:
        needs = {"llm": "prompt", "phrases": "phrases", "regex": "pattern", "metric": "metric"}
        if not getattr(self, needs[self.method]):
            raise ValueError(f"для метода {self.method} нужно поле {needs[self.method]}")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"регулярное выражение не компилируется: {exc}") from exc
        if self.type == "enum" and not self.options:
            raise ValueError("для типа enum нужен список options")
        return self


class Table(_Strict):
    """An analytics table: a row per call of the funnel and stages it collects from."""

    name: Name
    stage_id: str | None = Field(None, max_length=128)
    deal_stage_ids: CrmIds = Field(default_factory=list)
    webhook: WebhookTarget
    fields: list[TableField] = Field(min_length=1, max_length=50)

    @field_validator("fields")
    @classmethod
    def _unique_keys(cls, fields: list[TableField]) -> list[TableField]:
        keys = [field.key for field in fields]
        if len(keys) != len(set(keys)):
            raise ValueError("ключи полей должны быть уникальными")
        return fields
