"""Calls as people see them and act on them: the filtered list, the call card and its
audio, comments, re-analysis, swapping and confirming roles. The JSON API and the web
pages both use these, always through the viewer's visibility."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gridfs.asynchronous import AsyncGridFSBucket
from gridfs.errors import NoFile
from pydantic import BaseModel, ConfigDict, Field
from pymongo.asynchronous.database import AsyncDatabase

from services.ingest.backoffice.accounts import Role, User, find_visible
from services.ingest.backoffice.filters import STATUS_LABELS, CallFilters
from services.ingest.intake.tasks import iso, task_view
from shared import voiceprints
from shared.connection import load_connection_settings
from shared.errors import Conflict, Forbidden, NotFound
from shared.events import utcnow
from shared.mongo import AUDIO_BUCKET, COMMENTS, DELIVERIES, Document, calls
from shared.tasks import (
    ANALYSED,
    REANALYSABLE,
    TaskEvent,
    TaskStatus,
    may_enter,
    moved,
    timeline_entry,
)

CALL_NOT_FOUND = "Звонок не найден"
NOT_YOURS = "Это звонок другого менеджера"
LEADS = (Role.ADMIN, Role.SUPERVISOR)
NO_AUDIO = "Аудио этого звонка нет в хранилище"
EXPORT_LIMIT = 50_000


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
    event: TaskEvent,
    refusal: str,
) -> None:
    """Queue a call's analysis job again; its results go to the CRM with new webhook ids."""
    await _visible_task(db, viewer, task_id, {"_id": 1})
    now = utcnow()
    result = await calls(db).update_one(
        {"_id": task_id, **allowed},
        {
            **moved(
                TaskStatus.QUEUED,
                now,
                because=event,
                by=viewer.email,
                set_fields={
                    "analysis": {"state": "queued", "attempts": 0, "queued_at": now, **job},
                    "deliveries_closed": [],
                },
            ),
            "$unset": {"error": ""},
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
        allowed={**may_enter(TaskStatus.QUEUED), "audio": {"$ne": None}},
        job={},
        event=TaskEvent.REANALYSIS_REQUESTED,
        refusal="Звонок ещё обрабатывается или его аудио нет: повторный анализ невозможен",
    )


def _person(viewer: User) -> Document:
    return {"id": viewer.id, "email": viewer.email, "name": viewer.name or viewer.email}


async def swap_roles(db: AsyncDatabase[Document], viewer: User, task_id: str) -> None:
    """Queue the call's re-scoring with manager and client exchanged (no new transcription);
    the CRM gets the results again as a new revision, reviewed by this person."""
    await _queue_again(
        db,
        viewer,
        task_id,
        allowed={"status": {"$in": list(ANALYSED)}, "transcript": {"$exists": True}},
        job={"mode": "swap_roles", "requested_by": _person(viewer)},
        event=TaskEvent.ROLES_SWAP_REQUESTED,
        refusal="Роли можно поменять только у проанализированного звонка",
    )


async def confirm_roles(db: AsyncDatabase[Document], viewer: User, task_id: str) -> None:
    """Record that a person found a mono call's roles right; the manager's voiceprint
    learns this call's manager voice (when voiceprints are kept). Verdicts stay."""
    await _visible_task(db, viewer, task_id, {"_id": 1})
    learn = (await load_connection_settings(db)).voiceprints_enabled
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
            "$push": {"timeline": timeline_entry(TaskEvent.ROLES_CONFIRMED, now, by=viewer.email)},
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


@dataclass(frozen=True)
class CallCommand:
    """An action a person takes on a call, the same from the API and from the call card."""

    path: str  # the last segment of its URL
    roles: tuple[Role, ...]  # empty: anyone who sees the call
    run: Callable[[AsyncDatabase[Document], User, str], Awaitable[None]]
    logged: str  # the log event
    notice: str  # what the card says afterwards
    queues_analysis: bool  # the call is analysed again (the API answers 202)


COMMANDS = (
    CallCommand("reanalyze", (), reanalyze, "reanalysis_requested", "reanalysis", True),
    CallCommand("swap-roles", LEADS, swap_roles, "roles_swap_requested", "roles_swapped", True),
    CallCommand("confirm-roles", LEADS, confirm_roles, "roles_confirmed", "roles_confirmed", False),
)
