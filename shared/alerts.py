"""Alert rules («Уведомления»): which calls people must hear about, and how.

A rule has one condition (a score below a bar, a given stage failed, a "must not be
said" point broken, a tracker said, a call that failed, a dispute opened), a scope of
funnel, deal stages and managers like a binding's, its channels (in-app, email, a
signed webhook) and its recipients (the supervisors of the manager's team, chosen
users, addresses). Pure: what a rule is and what of a call fires it, in the words people
read; the notifier sends, the back office edits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    model_validator,
)

from shared.results import BROKEN, broken_points
from shared.scripts import CrmIds, Name, WebhookTarget
from shared.words import counted

Condition = Literal[
    "score_below",
    "stage_failed",
    "forbidden_broken",
    "tracker_hit",
    "call_failed",
    "dispute_opened",
]
CONDITION_LABELS: dict[str, str] = {
    "score_below": "Оценка ниже порога",
    "stage_failed": "Этап не пройден",
    "forbidden_broken": "Сказано запрещённое",
    "tracker_hit": "Сработал словарь",
    "call_failed": "Звонок не обработан",
    "dispute_opened": "Открыто оспаривание",
}
Channel = Literal["in_app", "email", "webhook"]
CHANNEL_LABELS: dict[str, str] = {"in_app": "В приложении", "email": "Email", "webhook": "Вебхук"}
# What about a call fires: its results (analysed), its failure, a dispute on it.
Occasion = Literal["analysed", "failed", "disputed"]
OCCASION_OF: dict[str, Occasion] = {
    "score_below": "analysed",
    "stage_failed": "analysed",
    "forbidden_broken": "analysed",
    "tracker_hit": "analysed",
    "call_failed": "failed",
    "dispute_opened": "disputed",
}
Email = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, to_lower=True, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
    ),
]
ShortId = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class AlertRule(BaseModel):
    """A condition on calls, who hears about the calls that meet it, and how."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    active: StrictBool = True
    condition: Condition
    score_below: float | None = Field(
        None, gt=0, le=100, description="score_below: fires when a checklist's percent is lower."
    )
    template_id: ShortId | None = Field(
        None, description="stage_failed: the script; score_below, forbidden_broken: only it."
    )
    stage: Name | None = Field(None, description="stage_failed: the stage's name.")
    tracker_id: ShortId | None = Field(None, description="tracker_hit: the tracker.")
    stage_id: str | None = Field(None, max_length=128, description="CRM funnel; null: any.")
    deal_stage_ids: CrmIds = Field(default_factory=list, description="Empty: every stage.")
    manager_ids: CrmIds = Field(default_factory=list, description="Empty: every manager.")
    channels: list[Channel] = Field(min_length=1, max_length=3)
    team_supervisors: StrictBool = Field(True, description="The supervisors of the manager's team.")
    user_ids: list[ShortId] = Field(default_factory=list, max_length=100)
    emails: list[Email] = Field(default_factory=list, max_length=50)
    webhook: WebhookTarget | None = Field(None, description="Where the webhook channel posts.")
    digest: StrictBool = Field(False, description="Email one daily digest instead of each alert.")

    @model_validator(mode="after")
    def _complete(self) -> AlertRule:
        needs = {
            "score_below": ("score_below", "укажите порог оценки (score_below), %"),
            "stage_failed": ("stage", "укажите этап (stage) и шаблон скрипта (template_id)"),
            "tracker_hit": ("tracker_id", "укажите словарь (tracker_id)"),
        }
        if self.condition in needs:
            field, message = needs[self.condition]
            if getattr(self, field) is None:
                raise ValueError(message)
        if self.condition == "stage_failed" and self.template_id is None:
            raise ValueError(needs["stage_failed"][1])
        if ("webhook" in self.channels) != (self.webhook is not None):
            raise ValueError("канал «Вебхук» и адрес вебхука (webhook.url) задаются вместе")
        people = self.team_supervisors or self.user_ids
        if {"in_app", "email"} & set(self.channels) and not (people or self.emails):
            raise ValueError("укажите получателей: руководителей команды, пользователей или адреса")
        if len(set(self.channels)) != len(self.channels):
            raise ValueError("каналы не должны повторяться")
        return self

    @property
    def occasion(self) -> Occasion:
        return OCCASION_OF[self.condition]

    def covers(self, task: Mapping[str, Any]) -> bool:
        """Whether the call is in the rule's funnel, deal stages and managers."""
        return (
            (self.stage_id is None or task.get("stage_id") == self.stage_id)
            and (not self.deal_stage_ids or task.get("deal_stage_id") in self.deal_stage_ids)
            and (not self.manager_ids or task.get("manager_id") in self.manager_ids)
        )

    def _checklists(self, results: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        return [
            checklist
            for checklist in results.get("checklists", [])
            if self.template_id is None or checklist["template"]["id"] == self.template_id
        ]

    def fired_by_results(self, results: Mapping[str, Any]) -> str | None:
        """What of an analysed call's results fires the rule, as people read it; None if
        nothing does."""
        if self.condition == "tracker_hit":
            for hit in results.get("trackers", []):
                if hit["tracker_id"] == self.tracker_id:
                    quote = hit["quotes"][0]["text"] if hit["quotes"] else ""
                    return f"Словарь «{hit['name']}»: {counted(hit['hits'], 'раз')}, «{quote}»"
            return None
        for checklist in self._checklists(results):
            script = checklist["template"]["name"]
            score = checklist["score"]
            if self.condition == "score_below":
                if score["applicable"] and self.score_below and score["percent"] < self.score_below:
                    return f"Оценка {score['percent']:g}% ({score['text']}) по скрипту «{script}»"
                continue
            for stage in checklist["stages"]:
                failed = stage["applicable"] and stage["evaluated"] and not stage["passed"]
                if self.condition == "stage_failed" and stage["name"] == self.stage and failed:
                    return f"Этап «{stage['name']}» не пройден (скрипт «{script}»)"
                if self.condition == "forbidden_broken":
                    broken = broken_points(stage)
                    if broken:
                        return f"{BROKEN}{broken[0]} (этап «{stage['name']}», скрипт «{script}»)"
        return None


def alert_id(rule_id: str, subject: str) -> str:
    """The one alert of a rule for a subject (a call, a dispute): the same on every
    redelivery of what fired it, so it is raised once."""
    return "alt_" + hashlib.sha256(f"{rule_id}:{subject}".encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Message:
    """What an alert says, in every channel."""

    rule: str
    summary: str
    call: str
    link: str

    @property
    def subject(self) -> str:
        return f"{self.rule}: {self.summary}"

    def text(self) -> str:
        return f"{self.summary}\n{self.call}\n{self.link}\n"


def digest_text(messages: list[Message]) -> tuple[str, str]:
    """The subject and text of a daily digest of alerts."""
    subject = f"Цифровой РОП: {len(messages)} уведомл. за день"
    lines = [f"• {m.rule}: {m.summary}\n  {m.call}\n  {m.link}" for m in messages]
    return subject, "\n".join(lines) + "\n"


def next_digest_at(now: datetime, *, hour: int, zone: str) -> datetime:
    """When the digest that an alert raised `now` goes: the next `hour` o'clock in the
    zone (UTC, aware)."""
    tz = ZoneInfo(zone)
    local = now.astimezone(tz)
    day: date = local.date()
    at = datetime.combine(day, time(hour), tz)
    if at <= local:
        at = datetime.combine(day + timedelta(days=1), time(hour), tz)
    return at.astimezone(ZoneInfo("UTC"))
