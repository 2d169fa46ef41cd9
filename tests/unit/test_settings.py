"""Configuration is validated at start with readable messages."""

from __future__ import annotations

import pytest

from services.ingest.intake.tasks import estimate_minutes, new_task_id
from shared.settings import load_settings


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("ROP_HTTP_PORT", "99999", "ROP_HTTP_PORT"),
        ("ROP_MONGO_URL", "mongodb://127.0.0.1:27017", "must name the database"),
        ("ROP_AMQP_URL", "http://rabbit", "amqp://"),
        ("ROP_LOG_LEVEL", "loud", "ROP_LOG_LEVEL"),
        ("ROP_FETCH_ALLOW_LOOPBACK", "maybe", "ROP_FETCH_ALLOW_LOOPBACK"),
        ("ROP_TIMEZONE", "Mars/Base", "unknown time zone"),
    ],
)
def test_bad_values_stop_with_a_message(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as caught:
        load_settings()
    assert "Invalid configuration" in str(caught.value.code)
    assert fragment in str(caught.value.code)


def test_an_llm_endpoint_needs_a_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROP_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.delenv("ROP_LLM_MODEL", raising=False)
    with pytest.raises(SystemExit) as caught:
        load_settings()
    assert "ROP_LLM_MODEL must name the model" in str(caught.value.code)


def test_defaults_match_the_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ROP_MONGO_URL", "ROP_HTTP_PORT", "ROP_FETCH_ALLOW_LOOPBACK", "ROP_LOG_FORMAT"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.mongo_url == "mongodb://127.0.0.1:27017/rop"
    assert (settings.http_host, settings.http_port) == ("127.0.0.1", 8080)
    assert settings.fetch_allow_loopback is False
    assert (settings.log_level, settings.log_format) == ("info", "json")


def test_task_ids_have_the_contract_format() -> None:
    ids = {new_task_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 17 and i.startswith("task_") and int(i[5:], 16) >= 0 for i in ids)
    assert all(i[5:] == i[5:].lower() for i in ids)


@pytest.mark.parametrize(
    ("backlog", "per_minute", "expected"),
    [(0, 4, "5-15 минут"), (1, 4, "6-16 минут"), (40, 4, "15-25 минут")],
)
def test_estimate_grows_with_the_backlog(backlog: int, per_minute: float, expected: str) -> None:
    assert estimate_minutes(backlog, per_minute) == expected
