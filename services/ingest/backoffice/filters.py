"""The filters of the calls list, the reports and the exports: days in a zone, manager,
client, funnel, status, score, uncertain roles; sorting and paging."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.ingest.backoffice.accounts import User
from services.ingest.intake.submission import validated
from shared.events import utcnow
from shared.mongo import Document
from shared.settings import is_zone
from shared.tasks import TaskStatus

DEFAULT_DAYS = 7
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(9998, 12, 31)  # so that every zone's day is in UTC
MAX_PER_PAGE = 200

STATUS_LABELS: dict[str, str] = {
    TaskStatus.QUEUED: "В очереди",
    TaskStatus.DOWNLOADING: "Загрузка",
    TaskStatus.ANALYZING: "Анализ",
    TaskStatus.DELIVERING: "Отправка в CRM",
    TaskStatus.DONE: "Готово",
    TaskStatus.FAILED: "Ошибка",
    TaskStatus.SKIPPED: "Пропущен",
}


def status_label(status: str) -> str:
    """A task status as people read it."""
    return STATUS_LABELS.get(status, status)


class CallFilters(BaseModel):
    """The filters of the calls list; the last seven days by default."""

    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)

    date_from: date | None = Field(None, ge=FIRST_DAY, le=LAST_DAY)
    date_to: date | None = Field(None, ge=FIRST_DAY, le=LAST_DAY)
    manager_id: str = ""
    client: str = Field("", max_length=200, description="The CRM deal id.")
    stage_id: str = Field("", description="The CRM funnel.")
    deal_stage_id: str = Field("", description="The stage in the funnel.")
    status: str = ""
    score_min: float | None = Field(None, ge=0, le=100)
    score_max: float | None = Field(None, ge=0, le=100)
    roles: Literal["", "uncertain"] = Field(
        "",
        description="`uncertain`: mono calls whose roles were decided with little confidence.",
    )
    sort: Literal["new", "old", "score_desc", "score_asc"] = "new"
    page: int = Field(1, ge=1, le=100_000)
    per_page: int = Field(50, ge=1, le=MAX_PER_PAGE)
    tz: str = Field("UTC", description="IANA zone whose days the dates mean.")

    @field_validator("date_from", "date_to", mode="before")
    @classmethod
    def _calendar_date(cls, value: Any) -> Any:
        # Not a number of seconds since 1970 (`date_to=0`): a day, as the form sends it.
        if isinstance(value, str) and not ISO_DATE.fullmatch(value):
            raise ValueError("дата в виде ГГГГ-ММ-ДД")
        if not isinstance(value, str | date | None):
            raise ValueError("дата в виде ГГГГ-ММ-ДД")
        return value

    @field_validator("status")
    @classmethod
    def _known_status(cls, value: str) -> str:
        if value and value not in STATUS_LABELS:
            raise ValueError(f"один из: {', '.join(STATUS_LABELS)}")
        return value

    @field_validator("tz")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if not is_zone(value):
            raise ValueError("неизвестный часовой пояс (например, Europe/Moscow)")
        return value

    @classmethod
    def from_query(cls, query: Any, *, tz: str = "UTC", form: bool = False) -> CallFilters:
        """Parse query-string values (days in `tz` unless the query names a zone); a bad
        one is a 400 naming the field. A form sends the fields left empty, meaning "any";
        to the API a blank number or day is a bad value."""
        values = {key: query[key] for key in query if not (form and query[key] == "")}
        return validated(cls, {"tz": tz, **values})

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    def days(self) -> tuple[date, date]:
        """The first and last day (in the zone); the last week by default."""
        end = self.date_to or utcnow().astimezone(self.zone).date()
        return self.date_from or end - timedelta(days=DEFAULT_DAYS - 1), end

    def period(self) -> tuple[datetime, datetime]:
        """From the start of the first day to the end of the last, in the zone (as UTC)."""
        first, last = self.days()
        return (
            datetime.combine(first, time.min, self.zone).astimezone(UTC),
            datetime.combine(last + timedelta(days=1), time.min, self.zone).astimezone(UTC),
        )

    def query(self, viewer: User) -> Document:
        """The Mongo filter: these filters within what the viewer may see."""
        start, end = self.period()
        conditions: list[Document] = [
            {"received_at": {"$gte": start, "$lt": end}},
            viewer.visibility(),
        ]
        exact = {
            "manager_id": self.manager_id,
            "stage_id": self.stage_id,
            "deal_stage_id": self.deal_stage_id,
            "status": self.status,
            "deal_id": self.client,
        }
        conditions.extend({field: value} for field, value in exact.items() if value)
        score: Document = {}
        if self.score_min is not None:
            score["$gte"] = self.score_min
        if self.score_max is not None:
            score["$lte"] = self.score_max
        if score:
            conditions.append({"score.percent": score})
        if self.roles == "uncertain":
            conditions.append({"roles.uncertain": True})
        return {"$and": [condition for condition in conditions if condition]}

    def sort_keys(self) -> list[tuple[str, int]]:
        return {
            "new": [("received_at", -1)],
            "old": [("received_at", 1)],
            "score_desc": [("score.percent", -1), ("received_at", -1)],
            "score_asc": [("score.percent", 1), ("received_at", -1)],
        }[self.sort]
