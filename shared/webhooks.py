"""Webhook endpoints: the per-endpoint secrets of Standard Webhooks."""

from __future__ import annotations

import base64
import secrets

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24


def new_webhook_secret() -> str:
    """Generate an endpoint secret in the Standard Webhooks form `whsec_<base64>`."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()
