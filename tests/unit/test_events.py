"""The event envelope: round trips, and unknown types or versions are refused."""

from __future__ import annotations

import pytest

from shared.errors import UnknownEvent
from shared.events import CallReceived, Envelope, parse_envelope


def received() -> CallReceived:
    return CallReceived(
        call_id="c", deal_id="d", manager_id="m", audio_url="https://h/a.mp3", declared_duration_s=1
    )


def test_round_trip() -> None:
    envelope = Envelope.wrap(received(), task_id="task_0123456789ab")
    parsed, event = parse_envelope(envelope.model_dump_json().encode())
    assert parsed == envelope
    assert event == received()
    assert envelope.event_id.startswith("evt_")


def test_events_are_frozen() -> None:
    event = received()
    with pytest.raises(ValueError, match="frozen"):
        event.call_id = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    "change", [{"version": 2}, {"type": "call.exploded"}, {"data": {"call_id": "only"}}]
)
def test_unknown_or_invalid_events_are_refused(change: dict[str, object]) -> None:
    envelope = Envelope.wrap(received(), task_id="task_0123456789ab").model_copy(update=change)
    with pytest.raises(UnknownEvent):
        parse_envelope(envelope.model_dump_json().encode())


def test_garbage_is_refused() -> None:
    with pytest.raises(UnknownEvent):
        parse_envelope(b"not json")
