"""Secrets never survive into a log line."""

from __future__ import annotations

import pytest

from shared.logging import redact_text


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("POST /api/v1/calls?apiKey=LS6gz1bkpG3lZI6uXetEoLtoVtVXYuWO", "LS6gz1bk"),
        ("/x?a=1&apikey=abc123&b=2", "abc123"),
        ("api_key=zzz999", "zzz999"),
        ("amqp://guest:s3cr3t@rabbit:5672/", "s3cr3t"),
        ("mongodb://rop:hunter2@mongo:27017/rop", "hunter2"),
        ("X-API-Key: topsecret", "topsecret"),
        ("Authorization: Bearer tok.en.value", "tok.en.value"),
        ("secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "MfKQ9r8G"),
    ],
)
def test_secrets_are_redacted(text: str, secret: str) -> None:
    redacted = redact_text(text)
    assert secret not in redacted
    assert "***" in redacted


def test_other_text_is_kept() -> None:
    text = "GET /api/v1/tasks/task_0123456789ab?x=1 status=200"
    assert redact_text(text) == text
