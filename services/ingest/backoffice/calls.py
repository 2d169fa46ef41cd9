"""Calls as people see them (the read side): the filtered list, the Excel rows, the call
card and its audio, always through the viewer's visibility. What people do to a call is
in `commands.py`."""

from __future__ import annotations

from typing import Any

from gridfs.asynchronous import AsyncGridFSBucket
from gridfs.errors import NoFile
from pymongo.asynchronous.database import AsyncDatabase

from services.ingest.backoffice.accounts import User, find_visible
from services.ingest.backoffice.filters import STATUS_LABELS, CallFilters
from services.ingest.intake.tasks import iso, task_view
from shared.errors import Forbidden, NotFound
from shared.mongo import AUDIO_BUCKET, COMMENTS, DELIVERIES, Document, calls
from shared.tasks import (
    ANALYSED,
    REANALYSABLE,
)

CALL_NOT_FOUND = "Звонок не найден"
NOT_YOURS = "Это звонок другого менеджера"
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


async def visible_task(
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
    document = await visible_task(
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
