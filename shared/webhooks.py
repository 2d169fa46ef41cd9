"""Webhook endpoints and Standard Webhooks signing, through the specification's own library.

Headers: `webhook-id` (stable across retries, for deduplication), `webhook-timestamp`
(Unix seconds) and `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`
keyed by the endpoint's `whsec_` secret.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from shared.events import CallMeta, ErrorCode, PipelineStage
from shared.results import CallLanguage, CallMetrics, Checklist, Reviewer

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24

__all__ = [
    "WEBHOOK_BODIES",
    "WebhookVerificationError",
    "new_webhook_secret",
    "signed_headers",
    "verify",
]

# A delivery is finished when it succeeded, died after its last attempt, or its endpoint
# said 410 Gone; the others (pending, retrying) are still to be sent.
DELIVERY_FINISHED = ("succeeded", "dead", "stopped")


def counts_for_task(delivery: Mapping[str, Any]) -> bool:
    """Whether the task waits for the delivery: the CRM's do, alerts' (none counted) not."""
    return bool(delivery.get("task_deliveries"))


def new_webhook_secret() -> str:
    """Generate an endpoint secret in the Standard Webhooks form `whsec_<base64>`."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signed_headers(secret: str, *, webhook_id: str, body: str, at: datetime) -> dict[str, str]:
    """The headers of one delivery attempt of `body` (the exact bytes sent, as text)."""
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, at, body),
        "content-type": "application/json",
    }


def verify(secret: str, body: bytes | str, headers: Mapping[str, str]) -> Any:
    """Check a delivery as a CRM would (±5 min, any of several signatures); return the JSON.

    Raises WebhookVerificationError.
    """
    return Webhook(secret).verify(body, dict(headers))


class WebhookBody(CallMeta):
    """What every webhook body carries: its event, the task, the CRM's facts of the call."""

    # A description of what is sent (an event refuses unknown fields; this needs not).
    model_config = ConfigDict(extra="ignore")

    event_id: str = Field(description="The `webhook-id` header: the same on every retry.")
    occurred_at: datetime
    task_id: str


class Revised(WebhookBody):
    revision: int = Field(
        description="1 for the first results, one more at every re-analysis or correction: "
        "keep the highest a call has had."
    )
    reviewed_by: Reviewer | None = Field(description="The person behind a correction.")
    language: CallLanguage | None = Field(
        None,
        description="The language the call was recognised in (null: analysed before).",
    )


class ChecklistCompleted(Revised):
    """A bound script's verdicts on a call (to the binding's webhook)."""

    type: Literal["checklist.completed"]
    checklist: Checklist
    metrics: CallMetrics


class TableRowBody(BaseModel):
    id: str
    name: str
    row: dict[str, Any] = Field(description="The table's fields by key.")


class AnalyticsCompleted(Revised):
    """The row an analytics table collected from a call (to the table's webhook)."""

    type: Literal["analytics.completed"]
    table: TableRowBody


class FailureBody(BaseModel):
    code: ErrorCode
    message: str = Field(description="The reason in Russian, as shown to people.")
    stage: PipelineStage


class CallFailedBody(WebhookBody):
    """A call could not be analysed (to the Connection settings' error webhook)."""

    type: Literal["call.failed"]
    error: FailureBody


class AlertBody(BaseModel):
    id: str = Field(description="The alert: one per rule and call (or dispute).")
    rule_id: str
    rule: str = Field(description="The rule's name.")
    condition: str = Field(description="The rule's condition, e.g. `score_below`.")
    summary: str = Field(description="What fired it, in Russian.")
    link: str = Field(description="The call's card in the web app.")


class AlertFired(WebhookBody):
    """An alert rule fired on a call (to the rule's webhook, e.g. a chat bridge)."""

    type: Literal["alert.fired"]
    alert: AlertBody


# Every webhook the system sends, by its `type`.
WEBHOOK_BODIES: dict[str, type[WebhookBody]] = {
    "checklist.completed": ChecklistCompleted,
    "analytics.completed": AnalyticsCompleted,
    "call.failed": CallFailedBody,
    "alert.fired": AlertFired,
}
