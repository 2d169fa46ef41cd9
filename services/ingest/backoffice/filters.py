"""The filters of the calls list, the reports and the exports: days in a zone, manager,
client, funnel, status, score, uncertain roles; sorting, and where a page starts."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from services.ingest.backoffice.accounts import User
from services.ingest.intake.submission import validated
from shared.events import utcnow
from shared.mongo import Document, all_of
from shared.settings import is_zone
from shared.tasks import TaskStatus

DEFAULT_DAYS = 7
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(9998, 12, 31)  # so that every zone's day is in UTC
MAX_PER_PAGE = 200
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

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


@dataclass(frozen=True)
class Position:
    """Where a page of the list starts: after this call (its sort keys), whatever was
    added or changed before it since (keyset paging)."""

    received_at: datetime
    task_id: str
    score: float | None = None  # the score sorts only

    @classmethod
    def of(cls, row: Document) -> Position:
        return cls(row["received_at"], row["_id"], (row.get("score") or {}).get("percent"))

    def encode(self) -> str:
        """As the `after` parameter carries it (opaque to clients)."""
        milliseconds = round((self.received_at - EPOCH) / timedelta(milliseconds=1))
        text = json.dumps([milliseconds, self.task_id, self.score], separators=(",", ":"))
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Position:
        try:
            milliseconds, task_id, score = json.loads(
                base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            )
            if not isinstance(task_id, str) or not isinstance(score, int | float | None):
                raise TypeError(task_id)
            return cls(EPOCH + timedelta(milliseconds=milliseconds), task_id, score)
        except (ValueError, TypeError, OverflowError) as exc:
            raise ValueError("не начало страницы списка (возьмите его из поля next)") from exc


def _known_zone(value: str) -> str:
    if not is_zone(value):
        raise ValueError("неизвестный часовой пояс (например, Europe/Moscow)")
    return value


def _calendar_date(value: Any) -> Any:
    # Not a number of seconds since 1970 (`date_to=0`): a day, as the form sends it.
    if isinstance(value, str) and not ISO_DATE.fullmatch(value):
        raise ValueError("дата в виде ГГГГ-ММ-ДД")
    if not isinstance(value, str | date | None):
        raise ValueError("дата в виде ГГГГ-ММ-ДД")
    return value


# A day of a period filter (ГГГГ-ММ-ДД), within the years the system knows.
Day = Annotated[date, BeforeValidator(_calendar_date), Field(ge=FIRST_DAY, le=LAST_DAY)]

ZoneName = Annotated[
    str, AfterValidator(_known_zone), Field(description="IANA zone whose days the dates mean.")
]


class CallFilters(BaseModel):
    """The filters of the calls list; the last seven days by default."""

    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)

    date_from: Day | None = None
    date_to: Day | None = None
    manager_id: str = ""
    client: str = Field("", max_length=200, description="The CRM deal id.")
    stage_id: str = Field("", description="The CRM funnel.")
    deal_stage_id: str = Field("", description="The stage in the funnel.")
    status: str = ""
    score_min: float | None = Field(None, ge=0, le=100)
    score_max: float | None = Field(None, ge=0, le=100)
    tracker: str = Field("", max_length=64, description="Calls that said this tracker (its id).")
    roles: Literal["", "uncertain"] = Field(
        "",
        description="`uncertain`: mono calls whose roles were decided with little confidence.",
    )
    sort: Literal["new", "old", "score_desc", "score_asc"] = "new"
    after: str = Field(
        "",
        max_length=200,
        description="Where the page starts: the previous page's `next` (empty: the first).",
    )
    per_page: int = Field(50, ge=1, le=MAX_PER_PAGE)
    tz: ZoneName = "UTC"

    @field_validator("status")
    @classmethod
    def _known_status(cls, value: str) -> str:
        if value and value not in STATUS_LABELS:
            raise ValueError(f"один из: {', '.join(STATUS_LABELS)}")
        return value

    @field_validator("after")
    @classmethod
    def _known_position(cls, value: str) -> str:
        if value:
            Position.decode(value)  # a ValueError names the field
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

    def query(
        self,
        viewer: User,
        *,
        received: Document | datetime | None = None,
        score: float | Literal["range"] | None = "range",
    ) -> Document:
        """The Mongo filter: these filters within what the viewer may see; a page's seek
        narrows `received_at` to a window of the period, and the score from the filters'
        range to one value (None: no score). The time comes first (the index every query
        can use) but for a tracker (its index holds the time too), every field at the top."""
        start, end = self.period()
        exact = {
            "stage_id": self.stage_id,
            "deal_stage_id": self.deal_stage_id,
            "status": self.status,
            "deal_id": self.client,
        }
        return all_of(
            # A tracker's calls are few, and its index has their times too.
            {"trackers_hit": self.tracker} if self.tracker else {},
            {"received_at": {"$gte": start, "$lt": end} if received is None else received},
            viewer.visibility(self.manager_id),
            {field: value for field, value in exact.items() if value},
            self.score_range() if score == "range" else {"score.percent": score},
            {"roles.uncertain": True} if self.roles == "uncertain" else {},
        )

    def score_range(self) -> Document:
        """The condition on the score (empty: any score, or none)."""
        score: Document = {}
        if self.score_min is not None:
            score["$gte"] = self.score_min
        if self.score_max is not None:
            score["$lte"] = self.score_max
        return {"score.percent": score} if score else {}

    def admits_score(self, percent: float | None) -> bool:
        """Whether a call with this score (None: none) is within the filters' range."""
        if percent is None:
            return self.score_min is None and self.score_max is None
        return (self.score_min is None or percent >= self.score_min) and (
            self.score_max is None or percent <= self.score_max
        )

    @property
    def start(self) -> Position | None:
        """Where the page starts (None: the first page)."""
        return Position.decode(self.after) if self.after else None

    @property
    def by_score(self) -> bool:
        return self.sort in ("score_desc", "score_asc")

    @property
    def newest_first(self) -> bool:
        """Whether calls go from the newest (within a score, for the score sorts)."""
        return self.sort != "old"

    def sort_keys(self) -> list[tuple[str, int]]:
        """The order of the list; the task id decides between calls received together."""
        time = -1 if self.newest_first else 1
        keys = [("received_at", time), ("_id", time)]
        if self.by_score:
            return [("score.percent", -1 if self.sort == "score_desc" else 1), *keys]
        return keys
