"""The Connection settings an admin edits: the minimum call duration, the calls' language,
the error webhook, whether voiceprints are kept, the mail server of alerts; and the
ready-made upload URLs shown with the API key."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, field_validator
from pymongo.asynchronous.database import AsyncDatabase

from services.ingest.intake.submission import HttpLink, invalid_fields, require_allowed_link
from shared import connection, voiceprints
from shared.alerts import Email
from shared.connection import ConnectionSettings, SmtpSettings, WebhookEndpoint
from shared.errors import InvalidRequest
from shared.mongo import Document
from shared.results import LanguageSetting
from shared.url_policy import UrlPolicy, UrlRefused
from shared.webhooks import new_webhook_secret

SMTP_FIELDS = (
    "smtp_host",
    "smtp_port",
    "smtp_security",
    "smtp_username",
    "smtp_password",
    "smtp_sender",
)
SMTP_INCOMPLETE = "Для почты нужны сервер (smtp_host) и адрес отправителя (smtp_sender)"
_HOST_NAME = re.compile(r"^(?!-)[\w-]{1,63}(?<!-)(\.(?!-)[\w-]{1,63}(?<!-))*\.?$")


def _mail_host(value: str) -> str:
    """A server's name or IP address (IPv6 in brackets or not); empty: no mail server."""
    if value:
        try:
            ipaddress.ip_address(value.removeprefix("[").removesuffix("]"))
        except ValueError:
            if not _HOST_NAME.match(value):
                raise ValueError(
                    "нужно имя сервера (smtp.company.ru) или IP-адрес, без пробелов и ссылок"
                ) from None
    return value


MailHost = Annotated[str, Field(max_length=255), AfterValidator(_mail_host)]


class ConnectionUpdate(BaseModel):
    """What an admin may change on the Connection page (never the API key)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_call_duration_s: float | None = Field(None, ge=0, le=86_400, allow_inf_nan=False)
    call_language: LanguageSetting | None = Field(
        None, description="ru, en, or auto: identified per call; applies to calls analysed next."
    )
    error_webhook_url: HttpLink | None = None
    voiceprints_enabled: StrictBool | None = Field(
        None, description="Off deletes every voiceprint and every call's voice embeddings."
    )
    blind_review_percent: float | None = Field(None, ge=0, le=100, allow_inf_nan=False)
    smtp_host: MailHost | None = Field(
        None, description="The mail server of alerts, under the URL policy; empty: no email."
    )
    smtp_port: int | None = Field(None, ge=1, le=65535)
    smtp_security: Literal["starttls", "ssl", "none"] | None = None
    smtp_username: str | None = Field(None, max_length=255)
    smtp_password: str | None = Field(
        None, max_length=255, description="Write-only; absent or empty keeps the saved one."
    )
    smtp_sender: Email | None = Field(None, description="The From address of alerts.")
    digest_hour: int | None = Field(None, ge=0, le=23)

    @field_validator("min_call_duration_s", "blind_review_percent", "digest_hour", mode="before")
    @classmethod
    def _not_a_flag(cls, value: Any) -> Any:
        # `false` would be read as 0 seconds.
        if isinstance(value, bool):
            raise ValueError("нужно число")
        return value


class ConnectionView(BaseModel):
    """The Connection page: ready-made URLs with the key filled in, key, minimum, the
    calls' language, error webhook, voiceprints."""

    upload_url: str = Field(description="Where the CRM posts forms, with the key.")
    json_url: str = Field(description="Where the CRM posts JSON, with the key.")
    api_key: str
    min_call_duration_s: float
    call_language: LanguageSetting
    error_webhook: WebhookEndpoint | None
    voiceprints_enabled: bool
    blind_review_percent: float
    smtp: SmtpView | None = Field(description="The mail server of alerts; null: not set.")
    digest_hour: int


class SmtpView(BaseModel):
    """The mail server as shown: that a password is set, never the password."""

    host: str
    port: int
    security: str
    username: str
    sender: str
    password_set: bool


def connection_view(settings: ConnectionSettings, *, base_url: str) -> Document:
    """The Connection settings as the API answers them."""
    return ConnectionView(
        upload_url=f"{base_url}/api/v1/calls/audio-upload?apiKey={settings.api_key}",
        json_url=f"{base_url}/api/v1/calls?apiKey={settings.api_key}",
        api_key=settings.api_key,
        min_call_duration_s=settings.min_call_duration_s,
        call_language=settings.call_language,
        error_webhook=settings.error_webhook,
        voiceprints_enabled=settings.voiceprints_enabled,
        blind_review_percent=settings.blind_review_percent,
        smtp=settings.smtp
        and SmtpView(
            **settings.smtp.model_dump(exclude={"password"}),
            password_set=bool(settings.smtp.password),
        ),
        digest_hour=settings.digest_hour,
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
    if "call_language" in fields and update.call_language is not None:
        changes["call_language"] = update.call_language
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
    if "digest_hour" in fields and update.digest_hour is not None:
        changes["digest_hour"] = update.digest_hour
    smtp = _smtp(current.smtp, update, policy)
    if smtp is not current.smtp:
        changes["smtp"] = smtp and smtp.model_dump()
    return await connection.update_connection_settings(db, changes)


def _smtp(
    current: SmtpSettings | None, update: ConnectionUpdate, policy: UrlPolicy
) -> SmtpSettings | None:
    """The mail server after the update: an empty host removes it; the other fields
    change what is there; a password only when one is given; what the URL policy
    refuses is refused."""
    given = {
        name.removeprefix("smtp_"): value
        for name, value in update.model_dump(include=set(SMTP_FIELDS)).items()
        if name in update.model_fields_set and value is not None
    }
    if not given:
        return current
    if given.get("host") == "":
        return None
    if not given.get("password"):
        given.pop("password", None)
    merged = {**(current.model_dump() if current else {}), **given}
    if "host" not in merged or "sender" not in merged:
        field = "smtp_host" if "host" not in merged else "smtp_sender"
        raise InvalidRequest(
            SMTP_INCOMPLETE, details=[{"field": field, "message": SMTP_INCOMPLETE}]
        )
    smtp = SmtpSettings.model_validate(merged)
    _check_mail_server(policy, smtp)
    return smtp


def _check_mail_server(policy: UrlPolicy, smtp: SmtpSettings) -> None:
    """The mail server is an outbound address like any other: the URL policy refuses
    it when it is saved, as the notifier does when it connects."""
    try:
        policy.check_port(smtp.port)
    except UrlRefused as exc:
        raise invalid_fields([{"field": "smtp_port", "message": exc.message}]) from exc
    try:
        policy.check_host(smtp.host)
    except UrlRefused as exc:
        raise invalid_fields([{"field": "smtp_host", "message": exc.message}]) from exc
