"""The Connection settings an admin edits: the minimum call duration, the error webhook,
whether voiceprints are kept; and the ready-made upload URLs shown with the API key."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator
from pymongo.asynchronous.database import AsyncDatabase

from services.ingest.intake.submission import HttpLink, require_allowed_link
from shared import connection, voiceprints
from shared.connection import ConnectionSettings, WebhookEndpoint
from shared.mongo import Document
from shared.url_policy import UrlPolicy
from shared.webhooks import new_webhook_secret


class ConnectionUpdate(BaseModel):
    """What an admin may change on the Connection page (never the API key)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_call_duration_s: float | None = Field(None, ge=0, le=86_400, allow_inf_nan=False)
    error_webhook_url: HttpLink | None = None
    voiceprints_enabled: StrictBool | None = Field(
        None, description="Off deletes every voiceprint and every call's voice embeddings."
    )
    blind_review_percent: float | None = Field(None, ge=0, le=100, allow_inf_nan=False)

    @field_validator("min_call_duration_s", "blind_review_percent", mode="before")
    @classmethod
    def _not_a_flag(cls, value: Any) -> Any:
        # `false` would be read as 0 seconds.
        if isinstance(value, bool):
            raise ValueError("нужно число")
        return value


class ConnectionView(BaseModel):
    """The Connection page: ready-made URLs with the key filled in, key, minimum, error
    webhook, voiceprints."""

    upload_url: str = Field(description="Where the CRM posts forms, with the key.")
    json_url: str = Field(description="Where the CRM posts JSON, with the key.")
    api_key: str
    min_call_duration_s: float
    error_webhook: WebhookEndpoint | None
    voiceprints_enabled: bool
    blind_review_percent: float


def connection_view(settings: ConnectionSettings, *, base_url: str) -> Document:
    """The Connection settings as the API answers them."""
    return ConnectionView(
        upload_url=f"{base_url}/api/v1/calls/audio-upload?apiKey={settings.api_key}",
        json_url=f"{base_url}/api/v1/calls?apiKey={settings.api_key}",
        api_key=settings.api_key,
        min_call_duration_s=settings.min_call_duration_s,
        error_webhook=settings.error_webhook,
        voiceprints_enabled=settings.voiceprints_enabled,
        blind_review_percent=settings.blind_review_percent,
    ).model_dump()


async def update_connection(
    db: AsyncDatabase[Document],
    current: ConnectionSettings,
    update: ConnectionUpdate,
    *,
    policy: UrlPolicy,
) -> ConnectionSettings:
    """Apply the fields present in the update; a new error-webhook URL gets a new secret;
    switching voiceprints off forgets them all."""
    changes: Document = {}
    fields = update.model_fields_set
    if "min_call_duration_s" in fields and update.min_call_duration_s is not None:
        changes["min_call_duration_s"] = update.min_call_duration_s
    if "blind_review_percent" in fields and update.blind_review_percent is not None:
        changes["blind_review_percent"] = update.blind_review_percent
    if "voiceprints_enabled" in fields and update.voiceprints_enabled is not None:
        changes["voiceprints_enabled"] = update.voiceprints_enabled
        if not update.voiceprints_enabled:
            await voiceprints.forget_all(db)
    if "error_webhook_url" in fields:
        url = update.error_webhook_url
        if not url:
            changes["error_webhook"] = None
        elif current.error_webhook is None or current.error_webhook.url != url:
            require_allowed_link(policy, url, "error_webhook_url")
            changes["error_webhook"] = WebhookEndpoint(
                url=url, secret=new_webhook_secret()
            ).model_dump()
    return await connection.update_connection_settings(db, changes)
