"""Calls as people see them: the filtered list, the call card, comments, re-analysis,
the managers' rating and the dashboard. The JSON API and the web pages both use these,
always through the viewer's visibility (a manager sees only their own calls).
"""

from __future__ import annotations

import itertools
import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from gridfs.asynchronous import AsyncGridFSBucket
from gridfs.errors import NoFile
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pymongo.asynchronous.database import AsyncDatabase

from services.ingest.accounts import User, find_visible
from services.ingest.handlers import iso, task_view
from services.ingest.spreadsheets import xlsx
from services.ingest.submission import validated
from shared import voiceprints
from shared.errors import Conflict, Forbidden, NotFound
from shared.events import utcnow
from shared.mongo import AUDIO_BUCKET, COMMENTS, DELIVERIES, Document, calls
from shared.settings import is_zone

CALL_NOT_FOUND = "Звонок не найден"
NOT_YOURS = "Это звонок другого менеджера"
NO_AUDIO = "Аудио этого звонка нет в хранилище"
DEFAULT_DAYS = 7
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(9998, 12, 31)  # so that every zone's day is in UTC
MAX_PER_PAGE = 200
EXPORT_LIMIT = 50_000

STATUS_LABELS = {
    "queued": "В очереди",
    "downloading": "Загрузка",
    "analyzing": "Анализ",
    "delivering": "Отправка в CRM",
    "done": "Готово",
    "failed": "Ошибка",
    "skipped": "Пропущен",
}
REANALYSABLE = ("delivering", "done", "failed")


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


_ROW_FIELDS = {
    "call_id": 1,
    "deal_id": 1,
    "manager_id": 1,
    "manager_name": 1,
    "stage": 1,
    "stage_id": 1,
    "deal_stage_id": 1,
    "status": 1,
    "score": 1,
    "error": 1,
    "skip_reason": 1,
    "received_at": 1,
    "probed_duration_s": 1,
    "declared_duration_s": 1,
    "results.metrics.talk_ratio": 1,
    "roles.uncertain": 1,
}


def row_view(document: Document) -> Document:
    """One line of the calls list."""
    error = document.get("error") or {}
    return {
        "task_id": document["_id"],
        "call_id": document["call_id"],
        "deal_id": document.get("deal_id"),
        "manager_id": document.get("manager_id"),
        "manager_name": document.get("manager_name"),
        "stage": document.get("stage"),
        "stage_id": document.get("stage_id"),
        "deal_stage_id": document.get("deal_stage_id"),
        "status": document["status"],
        "status_label": STATUS_LABELS.get(document["status"], document["status"]),
        "reason": error.get("message") or document.get("skip_reason"),
        "score": document.get("score"),
        "duration_s": document.get("probed_duration_s") or document.get("declared_duration_s"),
        "talk_ratio": ((document.get("results") or {}).get("metrics") or {}).get("talk_ratio"),
        "roles_uncertain": bool((document.get("roles") or {}).get("uncertain")),
        "received_at": iso(document["received_at"]),
    }


async def managers_seen(
    db: AsyncDatabase[Document], viewer: User, filters: CallFilters
) -> list[dict[str, str]]:
    """The managers with calls in the period that the viewer can see, for the filter
    (the period keeps this on the date index, whatever the size of the history)."""
    in_period = CallFilters(date_from=filters.date_from, date_to=filters.date_to, tz=filters.tz)
    rows = await (
        await calls(db).aggregate(
            [
                {"$match": in_period.query(viewer)},
                {"$group": {"_id": "$manager_id", "name": {"$last": "$manager_name"}}},
                {"$sort": {"_id": 1}},
            ]
        )
    ).to_list()
    return [{"id": row["_id"], "name": row["name"] or row["_id"]} for row in rows if row["_id"]]


async def list_calls(db: AsyncDatabase[Document], viewer: User, filters: CallFilters) -> Document:
    """One page of the filtered list, with the total."""
    query = filters.query(viewer)
    cursor = (
        calls(db)
        .find(query, _ROW_FIELDS)
        .sort(filters.sort_keys())
        .skip((filters.page - 1) * filters.per_page)
        .limit(filters.per_page)
    )
    return {
        "items": [row_view(document) for document in await cursor.to_list()],
        "total": await calls(db).count_documents(query),
        "page": filters.page,
        "per_page": filters.per_page,
    }


async def all_rows(
    db: AsyncDatabase[Document], viewer: User, filters: CallFilters
) -> list[Document]:
    """Every row the filters select (for the Excel export), newest first."""
    cursor = calls(db).find(filters.query(viewer), _ROW_FIELDS).sort(filters.sort_keys())
    return [row_view(document) for document in await cursor.limit(EXPORT_LIMIT).to_list()]


async def _visible_task(
    db: AsyncDatabase[Document], viewer: User, task_id: str, projection: Document | None = None
) -> Document:
    document = await find_visible(
        calls(db), viewer, task_id, not_yours=NOT_YOURS, projection=projection
    )
    if document is None:
        raise NotFound(CALL_NOT_FOUND)
    return document


async def call_card(db: AsyncDatabase[Document], viewer: User, task_id: str) -> Document:
    """Everything about one call: status, results, transcript, comments, deliveries."""
    document = await _visible_task(
        db, viewer, task_id, {"outbox": 0, "outbox_pending": 0, "voices": 0, "speech": 0}
    )
    comments = await db[COMMENTS].find({"task_id": task_id}).sort("at", 1).to_list()
    deliveries = (
        await db[DELIVERIES]
        .find({"task_id": task_id}, {"secret": 0, "body": 0})
        .sort("created_at", 1)
        .to_list()
    )
    return {
        **task_view(document),
        "status_label": STATUS_LABELS.get(document["status"], document["status"]),
        "score": document.get("score"),
        "transcript": document.get("transcript") or [],
        "has_audio": bool(document.get("audio")),
        "reanalysable": document["status"] in REANALYSABLE and bool(document.get("audio")),
        "roles": roles_view(document),
        "revision": document.get("revision"),
        "reviewed_by": document.get("reviewed_by"),
        "comments": [
            {"author": c["author"], "text": c["text"], "at": iso(c["at"])} for c in comments
        ],
        "deliveries": [
            {
                "id": d["_id"],
                "type": d["type"],
                "url": d["url"],
                "status": d["status"],
                "attempts": [
                    {**attempt, "at": iso(attempt["at"])} for attempt in d.get("attempts", [])
                ],
            }
            for d in deliveries
        ],
    }


ROLE_METHODS = {
    "channels": "по каналам стерео-записи",
    "voiceprint": "по голосу менеджера",
    "cues": "по репликам",
    "talk_share": "по доле речи",
    "person": "вручную",
}


def roles_view(document: Document) -> Document | None:
    """How the call's speakers were told apart, for people; None before the analysis."""
    roles = document.get("roles")
    if not roles:
        return None
    analysed = document["status"] in ANALYSED
    return {
        "method": roles["method"],
        "method_label": ROLE_METHODS.get(roles["method"], roles["method"]),
        "confidence": roles["confidence"],
        "uncertain": roles["uncertain"],
        "by": roles.get("by"),
        "swappable": analysed,
        "confirmable": analysed and roles["method"] in ("voiceprint", "cues", "talk_share"),
    }


async def check_delivery(
    db: AsyncDatabase[Document], viewer: User, task_id: str, delivery_id: str
) -> None:
    """Refuse a delivery that is not of this call, or a call the viewer cannot see."""
    await _visible_task(db, viewer, task_id, {"_id": 1})
    if not await db[DELIVERIES].count_documents({"_id": delivery_id, "task_id": task_id}, limit=1):
        raise Forbidden("Эта доставка относится к другому звонку")


# What a browser's audio element understands, by the container ffprobe found.
AUDIO_TYPES = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "ogg": "audio/ogg",
    "flac": "audio/flac",
    "mov,mp4,m4a,3gp,3g2,mj2": "audio/mp4",
    "matroska,webm": "audio/webm",
}


async def open_audio(db: AsyncDatabase[Document], viewer: User, task_id: str) -> tuple[Any, str]:
    """A GridFS stream of the call's stored audio (seekable), and its media type."""
    document = await _visible_task(db, viewer, task_id, {"audio": 1})
    audio = document.get("audio")
    if not audio:
        raise NotFound(NO_AUDIO)
    try:
        stream = await AsyncGridFSBucket(db, bucket_name=AUDIO_BUCKET).open_download_stream(
            audio["file_id"]
        )
    except NoFile as exc:
        raise NotFound(NO_AUDIO) from exc
    return stream, AUDIO_TYPES.get(audio.get("container") or "", "application/octet-stream")


class CommentForm(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    text: str = Field(min_length=1, max_length=4000)


async def add_comment(
    db: AsyncDatabase[Document], viewer: User, task_id: str, form: CommentForm
) -> Document:
    """Add a comment to a call the viewer can see."""
    await _visible_task(db, viewer, task_id, {"_id": 1})
    comment = {
        "task_id": task_id,
        "author": viewer.name or viewer.email,
        "author_id": viewer.id,
        "text": form.text,
        "at": utcnow(),
    }
    await db[COMMENTS].insert_one(comment)
    return {"author": comment["author"], "text": comment["text"], "at": iso(comment["at"])}


async def _queue_again(
    db: AsyncDatabase[Document],
    viewer: User,
    task_id: str,
    *,
    allowed: Document,
    job: Document,
    event: str,
    refusal: str,
) -> None:
    """Queue a call's analysis job again; its results go to the CRM with new webhook ids."""
    await _visible_task(db, viewer, task_id, {"_id": 1})
    now = utcnow()
    result = await calls(db).update_one(
        {"_id": task_id, **allowed},
        {
            "$set": {
                "status": "queued",
                "updated_at": now,
                "analysis": {"state": "queued", "attempts": 0, "queued_at": now, **job},
                "deliveries_closed": [],
            },
            "$unset": {"error": ""},
            "$push": {"timeline": {"status": event, "at": now, "by": viewer.email}},
        },
    )
    if result.matched_count == 0:
        raise Conflict(refusal)


async def reanalyze(db: AsyncDatabase[Document], viewer: User, task_id: str) -> None:
    """Queue the call's analysis again with today's scripts and tables."""
    await _queue_again(
        db,
        viewer,
        task_id,
        allowed={"status": {"$in": list(REANALYSABLE)}, "audio": {"$ne": None}},
        job={},
        event="reanalysis_requested",
        refusal="Звонок ещё обрабатывается или его аудио нет: повторный анализ невозможен",
    )


def _person(viewer: User) -> Document:
    return {"id": viewer.id, "email": viewer.email, "name": viewer.name or viewer.email}


ANALYSED = ("delivering", "done")


async def swap_roles(db: AsyncDatabase[Document], viewer: User, task_id: str) -> None:
    """Queue the call's re-scoring with manager and client exchanged (no new transcription);
    the CRM gets the results again as a new revision, reviewed by this person."""
    await _queue_again(
        db,
        viewer,
        task_id,
        allowed={"status": {"$in": list(ANALYSED)}, "transcript": {"$exists": True}},
        job={"mode": "swap_roles", "requested_by": _person(viewer)},
        event="roles_swap_requested",
        refusal="Роли можно поменять только у проанализированного звонка",
    )


async def confirm_roles(
    db: AsyncDatabase[Document], viewer: User, task_id: str, *, learn: bool
) -> None:
    """Record that a person found a mono call's roles right; the manager's voiceprint
    learns this call's manager voice (when voiceprints are kept). Verdicts stay."""
    await _visible_task(db, viewer, task_id, {"_id": 1})
    now = utcnow()
    task = await calls(db).find_one_and_update(
        {
            "_id": task_id,
            "status": {"$in": list(ANALYSED)},
            "roles.method": {"$in": ["voiceprint", "cues", "talk_share"]},
        },
        {
            "$set": {
                "roles": {
                    "method": "person",
                    "confidence": 1.0,
                    "uncertain": False,
                    "by": viewer.email,
                    "at": now,
                },
                "updated_at": now,
            },
            "$push": {"timeline": {"status": "roles_confirmed", "at": now, "by": viewer.email}},
        },
        projection={"manager_id": 1, "voices": 1},
    )
    if task is None:
        raise Conflict("Подтвердить можно только роли, определённые автоматически на моно-записи")
    manager_voice = (task.get("voices") or {}).get("manager")
    if learn and manager_voice:
        await voiceprints.learn(
            db,
            task["manager_id"],
            task_id=task_id,
            embedding=voiceprints.unpack(manager_voice["embedding"]),
            speech_s=manager_voice["speech_s"],
            source="confirmed",
        )


async def managers(db: AsyncDatabase[Document], viewer: User, filters: CallFilters) -> Document:
    """Per manager in the period: rating (stages passed), calls, average score, perfect
    calls, average talk ratio; and each manager's average score by week."""
    match = filters.query(viewer)
    rows = await (
        await calls(db).aggregate(
            [
                {"$match": match},
                {
                    "$group": {
                        "_id": "$manager_id",
                        "name": {"$last": "$manager_name"},
                        "calls": {"$sum": 1},
                        "analysed": {"$sum": {"$cond": [{"$gt": ["$score", None]}, 1, 0]}},
                        "rating": {"$sum": {"$ifNull": ["$score.passed", 0]}},
                        "average": {"$avg": "$score.percent"},
                        "perfect": {"$sum": {"$cond": [{"$eq": ["$score.perfect", True]}, 1, 0]}},
                        "talk_ratio": {"$avg": "$results.metrics.talk_ratio"},
                    }
                },
                {"$sort": {"rating": -1, "_id": 1}},
            ]
        )
    ).to_list()
    weekly = await (
        await calls(db).aggregate(
            [
                {"$match": {**match, "score": {"$ne": None}}},
                {
                    "$group": {
                        "_id": {
                            "manager": "$manager_id",
                            "week": {
                                "$dateTrunc": {
                                    "date": "$received_at",
                                    "unit": "week",
                                    "timezone": filters.tz,
                                }
                            },
                        },
                        "average": {"$avg": "$score.percent"},
                    }
                },
                {"$sort": {"_id.week": 1}},
            ]
        )
    ).to_list()
    series: dict[str, list[Document]] = {}
    for point in weekly:
        series.setdefault(point["_id"]["manager"], []).append(
            {
                "week": point["_id"]["week"].astimezone(filters.zone).date().isoformat(),
                "average": _round(point["average"]),
            }
        )
    return {
        "items": [
            {
                "manager_id": row["_id"],
                "manager_name": row["name"],
                "calls": row["calls"],
                "analysed": row["analysed"],
                "rating": row["rating"],
                "average_score": _round(row["average"]),
                "perfect": row["perfect"],
                "talk_ratio": _round(row["talk_ratio"], 2),
                "weekly": series.get(row["_id"], []),
            }
            for row in rows
        ]
    }


TALK_RATIO_BUCKETS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.000001)


async def dashboard(db: AsyncDatabase[Document], viewer: User, filters: CallFilters) -> Document:
    """Calls and average score per day, the stages failed most often, the talk ratios."""
    match = filters.query(viewer)
    daily = await (
        await calls(db).aggregate(
            [
                {"$match": match},
                {
                    "$group": {
                        "_id": {
                            "$dateToString": {
                                "format": "%Y-%m-%d",
                                "date": "$received_at",
                                "timezone": filters.tz,
                            }
                        },
                        "calls": {"$sum": 1},
                        "average": {"$avg": "$score.percent"},
                    }
                },
                {"$sort": {"_id": 1}},
            ]
        )
    ).to_list()
    failed_stages = await (
        await calls(db).aggregate(
            [
                {"$match": {**match, "results.checklists": {"$exists": True}}},
                {"$unwind": "$results.checklists"},
                {"$unwind": "$results.checklists.stages"},
                {
                    "$match": {
                        "results.checklists.stages.applicable": True,
                        "results.checklists.stages.passed": False,
                    }
                },
                {"$group": {"_id": "$results.checklists.stages.name", "failed": {"$sum": 1}}},
                {"$sort": {"failed": -1, "_id": 1}},
                {"$limit": 10},
            ]
        )
    ).to_list()
    ratios = await (
        await calls(db).aggregate(
            [
                {"$match": {**match, "results.metrics.talk_ratio": {"$type": "number"}}},
                {
                    "$bucket": {
                        "groupBy": "$results.metrics.talk_ratio",
                        "boundaries": list(TALK_RATIO_BUCKETS),
                        "default": "other",
                        "output": {"calls": {"$sum": 1}},
                    }
                },
            ]
        )
    ).to_list()
    counts = {bucket["_id"]: bucket["calls"] for bucket in ratios}
    first, last = filters.days()
    days = [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]
    by_day = {row["_id"]: row for row in daily}
    return {
        "days": [
            {
                "day": day,
                "calls": by_day.get(day, {}).get("calls", 0),
                "average_score": _round(by_day.get(day, {}).get("average")),
            }
            for day in days
        ],
        "failed_stages": [{"stage": row["_id"], "failed": row["failed"]} for row in failed_stages],
        "talk_ratio": [
            {
                "from": low,
                "to": min(high, 1.0),
                "calls": counts.get(low, 0),
            }
            for low, high in itertools.pairwise(TALK_RATIO_BUCKETS)
        ],
    }


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


async def table_rows(
    db: AsyncDatabase[Document], viewer: User, table_id: str, filters: CallFilters
) -> list[Document]:
    """The rows one analytics table collected from the calls in the filters, in list order:
    the call's identity, then the table's fields."""
    documents = await (
        await calls(db).aggregate(
            [
                {"$match": {**filters.query(viewer), "results.tables.table_id": table_id}},
                {"$sort": dict(filters.sort_keys())},
                {"$limit": EXPORT_LIMIT},
                {"$unwind": "$results.tables"},
                {"$match": {"results.tables.table_id": table_id}},
                {
                    "$project": {
                        "call_id": 1,
                        "deal_id": 1,
                        "manager_id": 1,
                        "manager_name": 1,
                        "received_at": 1,
                        "row": "$results.tables.row",
                    }
                },
            ]
        )
    ).to_list()
    return [
        {
            "task_id": document["_id"],
            "call_id": document["call_id"],
            "deal_id": document.get("deal_id"),
            "manager_id": document.get("manager_id"),
            "manager_name": document.get("manager_name"),
            "received_at": iso(document["received_at"]),
            "row": document.get("row") or {},
        }
        for document in documents
    ]


CALL_COLUMNS = (
    ("received_at", "Дата"),
    ("call_id", "ID звонка"),
    ("deal_id", "Сделка"),
    ("manager_name", "Менеджер"),
    ("manager_id", "ID менеджера"),
    ("stage", "Воронка"),
    ("deal_stage_id", "Этап"),
    ("status_label", "Статус"),
    ("score_text", "Оценка"),
    ("score_percent", "Оценка, %"),
    ("duration_s", "Длительность, с"),
    ("talk_ratio", "Доля речи менеджера"),
    ("reason", "Причина"),
)


def local_time(iso_time: str, zone: ZoneInfo) -> str:
    """An ISO instant as people read it in their zone: 27.11.2026 17:03."""
    return f"{datetime.fromisoformat(iso_time).astimezone(zone):%d.%m.%Y %H:%M}"


def calls_workbook(rows: list[Document], zone: ZoneInfo) -> bytes:
    """The calls list as an Excel sheet, times in the zone."""
    flat = [
        {
            **row,
            "received_at": local_time(row["received_at"], zone),
            "score_text": f"{row['score']['passed']}/{row['score']['applicable']}"
            if row["score"]
            else None,
            "score_percent": row["score"]["percent"] if row["score"] else None,
        }
        for row in rows
    ]
    return xlsx("Коммуникации", CALL_COLUMNS, flat)


def table_workbook(table: Document, rows: list[Document], zone: ZoneInfo) -> bytes:
    """An analytics table's rows as an Excel sheet: the call, then the table's fields."""
    columns = [
        ("received_at", "Дата"),
        ("call_id", "ID звонка"),
        ("deal_id", "Сделка"),
        ("manager_name", "Менеджер"),
    ] + [(f"row.{field['key']}", field.get("name") or field["key"]) for field in table["fields"]]
    flat = [
        {
            **row,
            "received_at": local_time(row["received_at"], zone),
            **{f"row.{key}": value for key, value in row["row"].items()},
        }
        for row in rows
    ]
    return xlsx(table["name"], columns, flat)
