"""The event contract between services: versioned envelopes around past-tense facts.

An event's routing key is its `TYPE`. A consumer that meets a type or version it
does not know raises `UnknownEvent` so the message goes to the dead-letter queue
instead of being guessed at.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import UnknownEvent

# The closed sets of a failure: its code (SPEC §2) and the stage it happened in.
ErrorCode = Literal[
    "download_failed",
    "not_audio",
    "low_quality",
    "too_long",
    "analysis_failed",
    "delivery_failed",
]
PipelineStage = Literal["download", "analysis", "delivery"]


def utcnow() -> datetime:
    """Return the current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class Event(BaseModel):
    """A fact that happened to a call; subclasses set `TYPE` and `VERSION`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    TYPE: ClassVar[str]
    VERSION: ClassVar[int] = 1


class CallMeta(Event):
    """What the CRM told about the call: echoed in every webhook."""

    call_id: str = Field(description="The CRM's unique call id.")
    deal_id: str = Field(description="The CRM deal the call belongs to.")
    manager_id: str = Field(description="The CRM manager who made the call.")
    manager_name: str | None = Field(None, description="The manager's name as the CRM sent it.")
    deal_stage_id: str | None = Field(None, description="The CRM deal stage.")
    stage_id: str | None = Field(None, description="The CRM funnel.")
    stage: str | None = Field(None, description="The CRM funnel's name.")


def call_meta(source: BaseModel | Mapping[str, Any]) -> dict[str, Any]:
    """The CallMeta fields of a model or a stored task that carries them."""
    if isinstance(source, BaseModel):
        return source.model_dump(include=set(CallMeta.model_fields))
    return {name: source.get(name) for name in CallMeta.model_fields}


class CallReceived(CallMeta):
    """The CRM submitted a call and it was accepted for processing."""

    TYPE: ClassVar[str] = "call.received"

    audio_url: str = Field(description="Where the downloader fetches the recording.")
    declared_duration_s: float | None = Field(
        None, description="Duration the CRM declared; the probed length is authoritative."
    )


class CallSkipped(CallMeta):
    """The call was accepted but will not be analysed (e.g. shorter than the minimum)."""

    TYPE: ClassVar[str] = "call.skipped"

    reason: Literal["too_short"] = Field(description="Why: shorter than the minimum duration.")
    message: str = Field(description="The reason in Russian, as shown to people.")


class AudioStored(CallMeta):
    """The recording is in GridFS and probed: it is audio the analyzer can read."""

    TYPE: ClassVar[str] = "call.audio_stored"

    file_id: str = Field(description="GridFS id of the file in the `audio` bucket.")
    container: str = Field(description="Probed container: mp3, wav or ogg.")
    codec: str = Field(description="Probed codec of the audio stream.")
    sample_rate_hz: int = Field(description="Probed sample rate.")
    channels: int = Field(description="Probed channel count (2: telephony stereo).")
    duration_s: float = Field(description="Probed duration; authoritative.")
    size_bytes: int = Field(description="Size of the stored file.")
    sha256: str = Field(description="SHA-256 of the stored file, hex.")


class CallAnalyzed(CallMeta):
    """Transcript, metrics, checklists and table rows are stored on the task."""

    TYPE: ClassVar[str] = "call.analyzed"

    duration_s: float = Field(description="Probed duration of the call.")
    checklists: int = Field(description="How many script bindings applied (webhooks to send).")
    tables: int = Field(description="How many analytics tables applied (webhooks to send).")


class CallReviewed(CallMeta):
    """A person corrected stage verdicts: the results of these bindings are a new revision."""

    TYPE: ClassVar[str] = "call.reviewed"

    binding_ids: list[str] = Field(description="The bindings whose checklists changed.")
    revision: int = Field(ge=1, description="The results' revision after the correction.")


class CallFailed(CallMeta):
    """Processing stopped for good; the reason goes to the CRM's error webhook."""

    TYPE: ClassVar[str] = "call.failed"

    code: ErrorCode = Field(description="The spec's code of the failure.")
    message: str = Field(description="The reason in Russian, as shown to people.")
    pipeline_stage: PipelineStage = Field(description="Where processing failed.")


class CallDisputed(CallMeta):
    """A manager disputed the verdict of a stage of their call."""

    TYPE: ClassVar[str] = "call.disputed"

    dispute_id: str = Field(description="The dispute.")
    script: str = Field(description="The script's name.")
    script_stage: str = Field(description="The disputed stage of the script.")
    comment: str = Field(description="What the manager wrote.")


class DeliveryDue(Event):
    """A webhook delivery should be attempted now (sent straight to the notifier's queue)."""

    TYPE: ClassVar[str] = "delivery.due"

    delivery_id: str = Field(description="The delivery; also its stable `webhook-id`.")


EVENT_TYPES: dict[str, type[Event]] = {
    cls.TYPE: cls
    for cls in (
        CallReceived,
        CallSkipped,
        AudioStored,
        CallAnalyzed,
        CallReviewed,
        CallFailed,
        CallDisputed,
        DeliveryDue,
    )
}


class Envelope(BaseModel):
    """What travels on the broker: identity, type, version and time around the event."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str = Field(description="Unique id; stable across redeliveries.")
    type: str = Field(description="The event type, also the routing key.")
    version: int = Field(ge=1, description="Version of the event's schema.")
    occurred_at: datetime = Field(description="When the fact happened (UTC).")
    task_id: str = Field(description="The task the event belongs to.")
    data: dict[str, Any] = Field(description="The event itself, validated by its type.")

    @classmethod
    def wrap(cls, event: Event, *, task_id: str, occurred_at: datetime | None = None) -> Envelope:
        """Put an event in a new envelope with a fresh id."""
        return cls(
            event_id=f"evt_{uuid.uuid4().hex}",
            type=event.TYPE,
            version=event.VERSION,
            occurred_at=occurred_at or utcnow(),
            task_id=task_id,
            data=event.model_dump(mode="json"),
        )

    def event(self) -> Event:
        """Validate and return the event inside; unknown types and versions raise UnknownEvent."""
        event_cls = EVENT_TYPES.get(self.type)
        if event_cls is None or self.version != event_cls.VERSION:
            raise UnknownEvent(details=[{"type": self.type, "version": self.version}])
        return event_cls.model_validate(self.data)


def parse_envelope(body: bytes) -> tuple[Envelope, Event]:
    """Decode a message body; anything malformed raises UnknownEvent."""
    try:
        envelope = Envelope.model_validate_json(body)
        return envelope, envelope.event()
    except ValidationError as exc:
        raise UnknownEvent(details=[{"error": str(exc)}]) from exc
