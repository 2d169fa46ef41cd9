"""Calls as people see them (the read side): the filtered list, the Excel rows, the call
card and its audio, always through the viewer's visibility. What people do to a call is
in `commands.py`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from gridfs.asynchronous import AsyncGridFSBucket
from gridfs.errors import NoFile
from pydantic import Field
from pymongo.asynchronous.database import AsyncDatabase
from typing_extensions import TypedDict

from services.ingest.apidoc import IsoTime
from services.ingest.backoffice import disputes, rollups
from services.ingest.backoffice.accounts import User, visible_task
from services.ingest.backoffice.deliveries import DeliveryView
from services.ingest.backoffice.deliveries import view as delivery_view
from services.ingest.backoffice.disputes import DisputeStatus, DisputeView
from services.ingest.backoffice.filters import CallFilters, Position, status_label
from services.ingest.backoffice.seek import Seek
from services.ingest.intake.tasks import TaskFields, TaskId, iso, task_fields
from shared import call_details
from shared.errors import Forbidden, NotFound
from shared.mongo import AUDIO_BUCKET, COMMENTS, DELIVERIES, Document, calls
from shared.results import OverallScore, Percent, Reviewer, TemplateRef
from shared.reviews import Correction, Verdict, verdict_of
from shared.tasks import ANALYSED, GUESSED_ROLE_METHODS, REANALYSABLE, RoleMethod, TaskStatus

NO_AUDIO = "Аудио этого звонка нет в хранилище"
EXPORT_LIMIT = 50_000
EXPORT_BATCH = 1000
# Filters the rollups do not hold are counted this far (shown as «более 10 000»).
COUNT_CAP = 10_000


ROW_FIELDS = {
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
    "dispute": 1,
    "received_at": 1,
    "probed_duration_s": 1,
    "declared_duration_s": 1,
    "results.metrics.talk_ratio": 1,
    "roles.uncertain": 1,
}


class CallIdentity(TypedDict):
    """Which call a line is: what the calls list and a table's rows both show of it."""

    task_id: TaskId
    call_id: str
    deal_id: str | None
    manager_id: str | None
    manager_name: str | None
    received_at: IsoTime


def identity(document: Document) -> CallIdentity:
    return {
        "task_id": document["_id"],
        "call_id": document["call_id"],
        "deal_id": document.get("deal_id"),
        "manager_id": document.get("manager_id"),
        "manager_name": document.get("manager_name"),
        "received_at": iso(document["received_at"]),
    }


class CallRow(CallIdentity):
    """One line of the calls list."""

    stage: str | None
    stage_id: str | None
    deal_stage_id: str | None
    status: TaskStatus
    status_label: str
    reason: Annotated[Any, Field(description="Why it failed or was skipped")]
    score: OverallScore | None
    duration_s: float | None
    talk_ratio: Annotated[float | None, Field(ge=0, le=1)]
    roles_uncertain: bool
    dispute: Annotated[
        DisputeStatus | None,
        Field(description="`open` while one of its disputes is, else the latest one's status"),
    ]


class CallPage(TypedDict):
    items: list[CallRow]
    total: Annotated[int, Field(description="Calls the filters select, on every page")]
    total_capped: Annotated[
        bool,
        Field(description=f"More calls than `total` match (counting stops at {COUNT_CAP:,})"),
    ]
    per_page: int
    next: Annotated[str | None, Field(description="`after` for the next page; null on the last")]


def row_view(document: Document) -> CallRow:
    """One line of the calls list."""
    error = document.get("error") or {}
    return {
        **identity(document),
        "stage": document.get("stage"),
        "stage_id": document.get("stage_id"),
        "deal_stage_id": document.get("deal_stage_id"),
        "status": document["status"],
        "status_label": status_label(document["status"]),
        "reason": error.get("message") or document.get("skip_reason"),
        "score": document.get("score"),
        "duration_s": document.get("probed_duration_s") or document.get("declared_duration_s"),
        "talk_ratio": ((document.get("results") or {}).get("metrics") or {}).get("talk_ratio"),
        "roles_uncertain": bool((document.get("roles") or {}).get("uncertain")),
        "dispute": document.get("dispute"),
    }


async def managers_seen(
    db: AsyncDatabase[Document], viewer: User, filters: CallFilters, *, rollup_zone: str
) -> list[dict[str, str]]:
    """The managers with calls in the period that the viewer can see, for the filter: from
    the rollups when the days are theirs (kept in `rollup_zone`)."""
    in_period = CallFilters(date_from=filters.date_from, date_to=filters.date_to, tz=filters.tz)
    if rollups.answers(in_period, rollup_zone):
        names = {
            bucket["manager_id"]: bucket["manager_name"]
            for bucket in await rollups.buckets(db, viewer, in_period)
        }
    else:
        rows = await (
            await calls(db).aggregate(
                [
                    {"$match": in_period.query(viewer)},
                    {"$sort": {"received_at": 1}},
                    {"$group": {"_id": "$manager_id", "name": {"$last": "$manager_name"}}},
                ]
            )
        ).to_list()
        names = {row["_id"]: row["name"] for row in rows}
    return [
        {"id": manager_id, "name": names[manager_id] or manager_id}
        for manager_id in sorted(names)
        if manager_id
    ]


async def count_calls(
    db: AsyncDatabase[Document], viewer: User, filters: CallFilters, *, rollup_zone: str
) -> tuple[int, bool]:
    """How many calls the filters select, and whether there are more than that: from the
    rollups when they hold the filters, else counted up to COUNT_CAP."""
    if rollups.answers(filters, rollup_zone):
        buckets = await rollups.buckets(db, viewer, filters)
        return sum(bucket["calls"] for bucket in buckets), False
    counted = await Seek(db, viewer, filters, {"_id": 1}).count(COUNT_CAP)
    return min(counted, COUNT_CAP), counted > COUNT_CAP


async def list_calls(
    db: AsyncDatabase[Document], viewer: User, filters: CallFilters, *, rollup_zone: str
) -> CallPage:
    """One page of the filtered list from where the filters say it starts, the total, and
    where the next page starts."""
    total, capped = await count_calls(db, viewer, filters, rollup_zone=rollup_zone)
    seek = Seek(db, viewer, filters, ROW_FIELDS, expected=total)
    rows = await seek.rows(filters.start, filters.per_page + 1)
    page = rows[: filters.per_page]
    return {
        "items": [row_view(document) for document in page],
        "total": total,
        "total_capped": capped,
        "per_page": filters.per_page,
        "next": Position.of(page[-1]).encode() if len(rows) > len(page) else None,
    }


async def all_rows(
    db: AsyncDatabase[Document], viewer: User, filters: CallFilters
) -> AsyncIterator[CallRow]:
    """Every row the filters select, in list order (for the Excel export), read a window
    at a time."""
    seek = Seek(db, viewer, filters, ROW_FIELDS)
    async for document in seek.each(None, EXPORT_LIMIT, batch=EXPORT_BATCH):
        yield row_view(document)


class RolesView(TypedDict):
    """How the call's speakers were told apart, and what a person may do about it."""

    method: RoleMethod
    method_label: str
    confidence: Annotated[float, Field(ge=0, le=1)]
    uncertain: bool
    by: Annotated[str | None, Field(description="Who decided, when a person did")]
    swappable: bool
    confirmable: bool


class CommentView(TypedDict):
    author: str
    text: str
    at: IsoTime


class CorrectionView(TypedDict):
    """A person's correction of a stage (the call's history of them, oldest first)."""

    id: str
    binding_id: str
    template: TemplateRef
    stage: str
    verdict: Verdict
    completion: Percent | None
    machine_verdict: Annotated[Verdict | None, Field(description="null: not evaluated")]
    reason: str
    by: Reviewer
    at: IsoTime
    dispute_id: str | None


def correction_view(correction: Correction) -> CorrectionView:
    return {
        "id": correction["id"],
        "binding_id": correction["binding_id"],
        "template": correction["template"],
        "stage": correction["stage"],
        "verdict": correction["verdict"],
        "completion": correction["completion"],
        "machine_verdict": verdict_of(correction["machine"]),
        "reason": correction["reason"],
        "by": correction["by"],
        "at": iso(correction["at"]),
        "dispute_id": correction["dispute_id"],
    }


class CallCard(TaskFields):
    """Everything about one call."""

    status_label: str
    score: OverallScore | None
    transcript: Annotated[list[Document], Field(description="Utterances with speaker and times")]
    has_audio: bool
    reanalysable: bool
    roles: RolesView | None
    reviewed_by: Reviewer | None
    corrections: list[CorrectionView]
    disputes: list[DisputeView]
    comments: list[CommentView]
    deliveries: list[DeliveryView]


async def call_card(db: AsyncDatabase[Document], viewer: User, task_id: str) -> CallCard:
    """Everything about one call: status, results, transcript, comments, deliveries."""
    document = await visible_task(db, viewer, task_id, {"outbox": 0, "outbox_pending": 0})
    details = await call_details.of(db, document, {"transcript": 1})
    comments = await db[COMMENTS].find({"task_id": task_id}).sort("at", 1).to_list()
    deliveries = (
        await db[DELIVERIES]
        .find({"task_id": task_id}, {"secret": 0, "body": 0})
        .sort("created_at", 1)
        .to_list()
    )
    return {
        **task_fields(document),
        "status_label": status_label(document["status"]),
        "score": document.get("score"),
        "transcript": details.get("transcript") or [],
        "has_audio": bool(document.get("audio")),
        "reanalysable": document["status"] in REANALYSABLE and bool(document.get("audio")),
        "roles": roles_view(document),
        "reviewed_by": document.get("reviewed_by"),
        "corrections": [correction_view(c) for c in document.get("corrections") or []],
        "disputes": await disputes.of_call(db, task_id),
        "comments": [comment_view(comment) for comment in comments],
        "deliveries": [delivery_view(delivery) for delivery in deliveries],
    }


def comment_view(comment: Document) -> CommentView:
    return {"author": comment["author"], "text": comment["text"], "at": iso(comment["at"])}


ROLE_METHODS = {
    "channels": "по каналам стерео-записи",
    "voiceprint": "по голосу менеджера",
    "cues": "по репликам",
    "talk_share": "по доле речи",
    "person": "вручную",
}


def roles_view(document: Document) -> RolesView | None:
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
        "confirmable": analysed and roles["method"] in GUESSED_ROLE_METHODS,
    }


async def check_delivery(
    db: AsyncDatabase[Document], viewer: User, task_id: str, delivery_id: str
) -> None:
    """Refuse a delivery that is not of this call, or a call the viewer cannot see."""
    await visible_task(db, viewer, task_id, {"_id": 1})
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
    document = await visible_task(db, viewer, task_id, {"audio": 1})
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
