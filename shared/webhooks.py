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
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24

__all__ = ["WebhookVerificationError", "new_webhook_secret", "signed_headers", "verify"]

# A delivery is finished when it succeeded, died after its last attempt, or its endpoint
# said 410 Gone; the others (pending, retrying) are still to be sent.
DELIVERY_FINISHED = ("succeeded", "dead", "stopped")


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
