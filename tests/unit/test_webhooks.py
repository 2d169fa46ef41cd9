"""Standard Webhooks signing: a known-answer vector computed by hand, and verification."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest

from shared.webhooks import WebhookVerificationError, new_webhook_secret, signed_headers, verify

KEY = bytes(range(24))
SECRET = "whsec_" + base64.b64encode(KEY).decode()
AT = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
BODY = json.dumps({"type": "checklist.completed", "call_id": "call_1"}, ensure_ascii=False)


def test_signature_matches_a_vector_computed_by_hand() -> None:
    headers = signed_headers(SECRET, webhook_id="msg_1", body=BODY, at=AT)
    signed = f"msg_1.{int(AT.timestamp())}.{BODY}".encode()
    expected = base64.b64encode(hmac.new(KEY, signed, hashlib.sha256).digest()).decode()
    assert headers == {
        "webhook-id": "msg_1",
        "webhook-timestamp": "1795780800",
        "webhook-signature": f"v1,{expected}",
        "content-type": "application/json",
    }


def _now_headers(**changes: str) -> dict[str, str]:
    headers = signed_headers(SECRET, webhook_id="msg_1", body=BODY, at=datetime.now(UTC))
    return {**headers, **changes}


def test_good_delivery_verifies() -> None:
    assert verify(SECRET, BODY.encode(), _now_headers())["call_id"] == "call_1"


def test_tampered_body_or_id_fails() -> None:
    with pytest.raises(WebhookVerificationError):
        verify(SECRET, BODY.replace("call_1", "call_2"), _now_headers())
    with pytest.raises(WebhookVerificationError):
        verify(SECRET, BODY, _now_headers(**{"webhook-id": "msg_2"}))
    with pytest.raises(WebhookVerificationError):
        verify(new_webhook_secret(), BODY, _now_headers())


@pytest.mark.parametrize("shift", [timedelta(minutes=-6), timedelta(minutes=6)])
def test_expired_and_future_timestamps_fail(shift: timedelta) -> None:
    at = datetime.now(UTC) + shift
    headers = signed_headers(SECRET, webhook_id="msg_1", body=BODY, at=at)
    with pytest.raises(WebhookVerificationError, match="too"):
        verify(SECRET, BODY, headers)


def test_any_of_several_signatures_is_enough() -> None:
    headers = _now_headers()
    rotated = (
        f"v1,{base64.b64encode(b'old-secret-signature').decode()} {headers['webhook-signature']}"
    )
    assert verify(SECRET, BODY, {**headers, "webhook-signature": rotated})["type"]


def test_secrets_are_random_whsec() -> None:
    first, second = new_webhook_secret(), new_webhook_secret()
    assert first != second
    assert first.startswith("whsec_")
    assert len(base64.b64decode(first.removeprefix("whsec_"))) == 24
