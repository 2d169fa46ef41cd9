"""The connection settings of SPEC §4: API key, minimum call duration, error webhook,
whether managers' voiceprints are kept, the share of calls picked for blind review, and
the mail server and digest hour of alerts.

Stored as one document; the API key is made once, on the first start of any
service, and never changes afterwards.
"""

from __future__ import annotations

import secrets
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pymongo.asynchronous.database import AsyncDatabase

from shared.mongo import SETTINGS, Document
from shared.results import LanguageSetting

CONNECTION_ID = "connection"
API_KEY_BYTES = 24


class WebhookEndpoint(BaseModel):
    """Where a kind of webhook goes, and the secret its payloads are signed with."""

    model_config = ConfigDict(frozen=True)

    url: str
    secret: str


class SmtpSettings(BaseModel):
    """The mail server alerts are sent through; the password is never shown or logged."""

    model_config = ConfigDict(frozen=True)

    host: str
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str = ""
    password: str = Field("", repr=False)
    sender: str = Field(description="The From address.")


class ConnectionSettings(BaseModel):
    """What the admin sees on the Connection page."""

    model_config = ConfigDict(frozen=True)

    api_key: str
    min_call_duration_s: float = Field(0.0, ge=0)
    call_language: LanguageSetting = Field(
        "ru",
        description="The language calls are recognised in (ru, en), or auto: identified "
        "per call from its first speech",
    )
    error_webhook: WebhookEndpoint | None = None
    voiceprints_enabled: bool = Field(
        True, description="Learn managers' voiceprints to tell who is who on mono calls."
    )
    blind_review_percent: float = Field(
        5.0,
        ge=0,
        le=100,
        description="Share of each manager's analysed calls a week, at least one, picked for "
        "blind review (0: none)",
    )
    smtp: SmtpSettings | None = None
    digest_hour: int = Field(
        18, ge=0, le=23, description="When daily alert digests go, in the configured zone."
    )


def new_api_key() -> str:
    """Generate an API key: 32 URL-safe characters, like the seed's example."""
    return secrets.token_urlsafe(API_KEY_BYTES)


async def ensure_connection_settings(
    db: AsyncDatabase[Document], *, initial_api_key: str | None
) -> ConnectionSettings:
    """Create the settings on first start (race-free across replicas) and return them."""
    defaults = ConnectionSettings(api_key=initial_api_key or new_api_key())
    await db[SETTINGS].update_one(
        {"_id": CONNECTION_ID},
        {"$setOnInsert": defaults.model_dump()},
        upsert=True,
    )
    return await load_connection_settings(db)


async def load_connection_settings(db: AsyncDatabase[Document]) -> ConnectionSettings:
    """Read the current settings; they must have been ensured before."""
    document = await db[SETTINGS].find_one({"_id": CONNECTION_ID}, {"_id": 0})
    if document is None:
        raise LookupError("connection settings are not initialised")
    return ConnectionSettings.model_validate(document)


async def update_connection_settings(
    db: AsyncDatabase[Document], changes: Document
) -> ConnectionSettings:
    """Apply a partial update (never the API key) and return the new settings."""
    if changes:
        await db[SETTINGS].update_one({"_id": CONNECTION_ID}, {"$set": changes})
    return await load_connection_settings(db)
