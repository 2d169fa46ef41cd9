"""The CRM intake, free of web types: accept a call once, report its task."""

from __future__ import annotations

import json
import math
import secrets
from dataclasses import dataclass
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.ingest.intake.submission import CallSubmission, require_allowed_link
from shared import connection
from shared.connection import ConnectionSettings
from shared.errors import DuplicateCall, NotFound
from shared.events import CallReceived, CallSkipped, Envelope, Event, call_meta, utcnow
from shared.group_commit import GroupWriter
from shared.mongo import CALLS, Document, calls
from shared.outbox import OutboxRelay, outbox_fields
from shared.tasks import IN_PROGRESS, TaskStatus, first_entry
from shared.url_policy import UrlPolicy

ACCEPTED_MESSAGE = "Звонок успешно получен и поставлен в очередь на анализ"
TASK_NOT_FOUND = "Задача не найдена"
CALL_NOT_FOUND = "Звонок не найден"
BASE_ESTIMATE_MIN = (5, 15)


def new_task_id() -> str:
    """Return `task_` followed by 12 lowercase hex digits."""
    return f"task_{secrets.token_hex(6)}"


def skipped_message(min_duration_s: float) -> str:
    """Explain in Russian why a too-short call is not analysed."""
    return (
        f"Звонок короче минимальной длительности ({min_duration_s:g} с) и не будет проанализирован"
    )


def estimate_minutes(backlog: int, calls_per_minute: float) -> str:
    """Estimate processing time as "N-M минут" from the calls waiting ahead."""
    queue_min = math.ceil(backlog / calls_per_minute)
    low, high = BASE_ESTIMATE_MIN
    return f"{low + queue_min}-{high + queue_min} минут"


@dataclass
class IntakeState:
    """Values the intake reads on every request, refreshed in the background."""

    connection: ConnectionSettings
    backlog: int = 0
    calls_per_minute: float = 4.0


async def refresh_intake_state(db: AsyncDatabase[Document], state: IntakeState) -> None:
    """Reload the connection settings and the backlog other replicas may have changed."""
    state.connection = await connection.load_connection_settings(db)
    state.backlog = await calls(db).count_documents({"status": {"$in": list(IN_PROGRESS)}})


@dataclass(frozen=True)
class Acceptance:
    """The answer to an accepted call."""

    task_id: str
    body: Document


async def accept_call(
    submission: CallSubmission,
    *,
    db: AsyncDatabase[Document],
    inserter: GroupWriter,
    relay: OutboxRelay,
    state: IntakeState,
    policy: UrlPolicy,
    source: str,
) -> Acceptance:
    """Store the call and its outgoing event in one write; a second call_id raises DuplicateCall.

    A call whose declared duration is below the minimum is stored as skipped and
    announced with `CallSkipped` instead of `CallReceived`.
    """
    require_allowed_link(policy, submission.audio_url, "audio_url")
    task_id = new_task_id()
    now = utcnow()
    min_duration_s = state.connection.min_call_duration_s
    meta = call_meta(submission)
    too_short = submission.duration is not None and submission.duration < min_duration_s
    event: Event
    if too_short:
        message = skipped_message(min_duration_s)
        event = CallSkipped(**meta, reason="too_short", message=message)
        status = TaskStatus.SKIPPED
        body = {"status": "skipped", "message": message, "task_id": task_id}
    else:
        event = CallReceived(
            **meta, audio_url=submission.audio_url, declared_duration_s=submission.duration
        )
        status = TaskStatus.QUEUED
        body = {
            "status": "success",
            "message": ACCEPTED_MESSAGE,
            "task_id": task_id,
            "estimated_processing_time": estimate_minutes(state.backlog, state.calls_per_minute),
        }
    document: Document = {
        "_id": task_id,
        **meta,
        "audio_url": submission.audio_url,
        "declared_duration_s": submission.duration,
        "extra_json": json.dumps(submission.extra, ensure_ascii=False)
        if submission.extra
        else None,
        "source": source,
        "skip_reason": {"code": "too_short", "message": body["message"]} if too_short else None,
        "error": None,
        "probed_duration_s": None,
        "parts": None,
        "results": None,
        "received_at": now,
        **first_entry(status, now),
        **outbox_fields(Envelope.wrap(event, task_id=task_id, occurred_at=now)),
    }
    try:
        await inserter.insert(CALLS, document)
    except DuplicateKeyError:
        existing = await calls(db).find_one({"call_id": submission.call_id}, {"_id": 1})
        raise DuplicateCall(task_id=existing["_id"] if existing else None) from None
    relay.wake()
    return Acceptance(task_id=task_id, body=body)


def iso(value: Any) -> Any:
    """A datetime as ISO 8601 text for the API; anything else as it is."""
    return value.isoformat() if hasattr(value, "isoformat") else value


def task_view(document: Document) -> Document:
    """The task as the status API shows it (no outbox, ISO times)."""
    return {
        "task_id": document["_id"],
        "call_id": document["call_id"],
        "status": document["status"],
        "error": document.get("error"),
        "skip_reason": document.get("skip_reason"),
        "deal_id": document["deal_id"],
        "manager_id": document["manager_id"],
        "manager_name": document.get("manager_name"),
        "deal_stage_id": document.get("deal_stage_id"),
        "stage_id": document.get("stage_id"),
        "stage": document.get("stage"),
        "audio_url": document["audio_url"],
        "declared_duration_s": document.get("declared_duration_s"),
        "probed_duration_s": document.get("probed_duration_s"),
        "audio": _audio_view(document.get("audio")),
        "parts": document.get("parts"),
        "extra": json.loads(document["extra_json"]) if document.get("extra_json") else {},
        "received_at": iso(document["received_at"]),
        "updated_at": iso(document["updated_at"]),
        "timeline": [{**entry, "at": iso(entry["at"])} for entry in document.get("timeline", [])],
        "results": document.get("results"),
        "revision": document.get("revision"),
        "roles": _roles_view(document.get("roles")),
    }


def _roles_view(roles: Document | None) -> Document | None:
    """How the speakers were told apart: `channels` (stereo), `voiceprint`, `cues`,
    `talk_share` (mono) or `person`, with a confidence."""
    if not roles:
        return None
    return {key: roles[key] for key in ("method", "confidence", "uncertain")}


def _audio_view(audio: Document | None) -> Document | None:
    if not audio:
        return None
    keys = (
        "container",
        "codec",
        "sample_rate_hz",
        "channels",
        "size_bytes",
        "sha256",
        "claimed_duration_s",
    )
    return {key: audio.get(key) for key in keys}


_TASK_PROJECTION = {"outbox": 0, "outbox_pending": 0}


async def get_task(db: AsyncDatabase[Document], task_id: str) -> Document:
    """Return a task's status view by task_id."""
    document = await calls(db).find_one({"_id": task_id}, _TASK_PROJECTION)
    if document is None:
        raise NotFound(TASK_NOT_FOUND)
    return task_view(document)


async def get_task_by_call_id(db: AsyncDatabase[Document], call_id: str) -> Document:
    """Return a task's status view by the CRM's call_id."""
    document = await calls(db).find_one({"call_id": call_id}, _TASK_PROJECTION)
    if document is None:
        raise NotFound(CALL_NOT_FOUND)
    return task_view(document)
