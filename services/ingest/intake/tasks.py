"""The CRM intake, free of web types: accept a call once, report its task."""

from __future__ import annotations

import json
import math
import secrets
from dataclasses import dataclass
from typing import Annotated, Any, Literal, NotRequired

from pydantic import Field, WithJsonSchema
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError
from typing_extensions import TypedDict

from services.ingest.apidoc import IsoTime
from services.ingest.intake.submission import CallSubmission, require_allowed_link
from shared import connection
from shared.connection import ConnectionSettings
from shared.errors import DuplicateCall, NotFound
from shared.events import (
    CallReceived,
    CallSkipped,
    Envelope,
    ErrorCode,
    Event,
    PipelineStage,
    call_meta,
    utcnow,
)
from shared.group_commit import GroupWriter
from shared.mongo import CALLS, Document, calls
from shared.outbox import OutboxRelay, outbox_fields
from shared.results import Results
from shared.tasks import IN_PROGRESS, RoleMethod, TaskStatus, first_entry
from shared.url_policy import UrlPolicy

ACCEPTED_MESSAGE = "Звонок успешно получен и поставлен в очередь на анализ"
TASK_NOT_FOUND = "Задача не найдена"
CALL_NOT_FOUND = "Звонок не найден"
BASE_ESTIMATE_MIN = (5, 15)

TaskId = Annotated[str, Field(pattern=r"^task_[0-9a-f]{12}$")]


class Accepted(TypedDict):
    """A call accepted for analysis."""

    status: Literal["success"]
    message: Annotated[str, WithJsonSchema({"const": ACCEPTED_MESSAGE})]
    task_id: TaskId
    estimated_processing_time: Annotated[str, Field(pattern=r"^\d+-\d+ минут$")]


class Skipped(TypedDict):
    """A call accepted but not analysed: shorter than the minimum duration."""

    status: Literal["skipped"]
    message: str
    task_id: TaskId


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
    body: Accepted | Skipped


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
        body: Accepted | Skipped = {"status": "skipped", "message": message, "task_id": task_id}
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


class TaskError(TypedDict):
    """Why a call failed, and at which step."""

    code: ErrorCode
    message: str
    pipeline_stage: PipelineStage


class SkipReason(TypedDict):
    code: Literal["too_short"]
    message: str


class AudioView(TypedDict):
    """What the downloader probed of the stored file."""

    container: str | None
    codec: str | None
    sample_rate_hz: int | None
    channels: int | None
    size_bytes: int | None
    sha256: str | None
    claimed_duration_s: float | None


class TimelineEntry(TypedDict):
    status: str  # a TaskStatus, or a TaskEvent: a person's request
    at: IsoTime
    by: NotRequired[str]  # who asked


class TaskRoles(TypedDict):
    """How manager and client were told apart, once analysed."""

    method: RoleMethod
    confidence: Annotated[float, Field(ge=0, le=1)]
    uncertain: bool


class TaskFields(TypedDict):
    """A call's task as the CRM and people see it alike."""

    task_id: TaskId
    call_id: str
    status: TaskStatus
    error: TaskError | None
    skip_reason: SkipReason | None
    deal_id: str
    manager_id: str
    manager_name: str | None
    deal_stage_id: str | None
    stage_id: str | None
    stage: str | None
    audio_url: str
    declared_duration_s: float | None
    probed_duration_s: float | None
    audio: AudioView | None
    parts: list[Document] | None
    extra: Document
    received_at: IsoTime
    updated_at: IsoTime
    timeline: list[TimelineEntry]
    results: Annotated[
        Results | None, Field(description="What the analysis found; the webhooks carry it")
    ]
    revision: Annotated[
        int | None,
        Field(
            description="1 for the first results, one more at every re-analysis or "
            "correction (the webhooks carry it too)"
        ),
    ]


class TaskView(TaskFields):
    """The status API's answer."""

    roles: TaskRoles | None


def task_fields(document: Document) -> TaskFields:
    """What the status API and the call card show of a task (no outbox, ISO times)."""
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
        "timeline": [_timeline_entry(entry) for entry in document.get("timeline", [])],
        "results": document.get("results"),
        "revision": document.get("revision"),
    }


def task_view(document: Document) -> TaskView:
    """The task as the status API shows it."""
    roles = document.get("roles")
    return {
        **task_fields(document),
        "roles": {
            "method": roles["method"],
            "confidence": roles["confidence"],
            "uncertain": roles["uncertain"],
        }
        if roles
        else None,
    }


def _timeline_entry(entry: Document) -> TimelineEntry:
    shown: TimelineEntry = {"status": entry["status"], "at": iso(entry["at"])}
    if "by" in entry:
        shown["by"] = entry["by"]
    return shown


def _audio_view(audio: Document | None) -> AudioView | None:
    if not audio:
        return None
    return {
        "container": audio.get("container"),
        "codec": audio.get("codec"),
        "sample_rate_hz": audio.get("sample_rate_hz"),
        "channels": audio.get("channels"),
        "size_bytes": audio.get("size_bytes"),
        "sha256": audio.get("sha256"),
        "claimed_duration_s": audio.get("claimed_duration_s"),
    }


_TASK_PROJECTION = {"outbox": 0, "outbox_pending": 0}


async def get_task(db: AsyncDatabase[Document], task_id: str) -> TaskView:
    """Return a task's status view by task_id."""
    document = await calls(db).find_one({"_id": task_id}, _TASK_PROJECTION)
    if document is None:
        raise NotFound(TASK_NOT_FOUND)
    return task_view(document)


async def get_task_by_call_id(db: AsyncDatabase[Document], call_id: str) -> TaskView:
    """Return a task's status view by the CRM's call_id."""
    document = await calls(db).find_one({"call_id": call_id}, _TASK_PROJECTION)
    if document is None:
        raise NotFound(CALL_NOT_FOUND)
    return task_view(document)
