"""Secrets never survive into a log line."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping

import pytest

from shared.logging import configure_logging, get_logger, redact_text


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


class Watched(Mapping[str, str]):
    """A log value that notes whether the log's processors ever looked inside it."""

    def __init__(self) -> None:
        self.read = False

    def __getitem__(self, key: str) -> str:
        self.read = True
        return "x"

    def __iter__(self) -> Iterator[str]:
        self.read = True
        return iter(["k"])

    def __len__(self) -> int:
        return 1


def test_a_call_below_the_level_costs_no_processing() -> None:
    stream = io.StringIO()
    configure_logging("warning", "json", stream=stream)
    try:
        log = get_logger("tests.logging")
        quiet, loud = Watched(), Watched()
        log.info("below", value=quiet)
        log.warning("at_level", value=loud, url="http://crm/x?apiKey=s3cr3t")
    finally:
        configure_logging("info", "json")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["at_level"]
    assert "s3cr3t" not in lines[0]["url"]
    assert loud.read
    assert not quiet.read  # dropped before it was stamped and redacted
