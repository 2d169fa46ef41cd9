"""What the status API shows of a task."""

from __future__ import annotations

from datetime import UTC, datetime

from services.ingest.intake.tasks import task_view

AT = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
TASK = {
    "_id": "task_0123456789ab",
    "call_id": "c",
    "deal_id": "d",
    "manager_id": "m",
    "audio_url": "https://h/a.mp3",
    "received_at": AT,
    "updated_at": AT,
}


def test_view_shows_probe_results_and_hides_internals() -> None:
    view = task_view(
        {
            **TASK,
            "status": "analyzing",
            "timeline": [{"status": "queued", "at": AT}],
            "probed_duration_s": 312.5,
            "audio": {
                "container": "mp3",
                "codec": "mp3",
                "sample_rate_hz": 8000,
                "channels": 2,
                "size_bytes": 10,
                "sha256": "ab",
                "final_url": "https://h/a.mp3",
            },
            "outbox": [],
            "download_result": {"event_id": "evt"},
            "extra_json": '{"crm": "amo"}',
        }
    )
    assert view["task_id"] == "task_0123456789ab"
    assert view["audio"]["channels"] == 2
    assert "final_url" not in view["audio"]
    assert view["probed_duration_s"] == 312.5
    assert view["extra"] == {"crm": "amo"}
    assert view["timeline"] == [{"status": "queued", "at": "2026-11-27T12:00:00+00:00"}]
    assert not {"outbox", "download_result", "extra_json", "_id"} & set(view)


def test_view_says_how_the_roles_were_decided_but_not_who_decided_or_the_voices() -> None:
    view = task_view(
        {
            **TASK,
            "status": "done",
            "revision": 2,
            "roles": {
                "method": "person",
                "confidence": 1.0,
                "uncertain": False,
                "by": "lead@example.ru",
                "at": AT,
            },
            "voices": {"manager": {"embedding": b"\0" * 1024, "speech_s": 30.0}},
            "speech": {"manager": [[0.0, 1.0]], "client": []},
        }
    )
    assert view["revision"] == 2
    assert view["roles"] == {"method": "person", "confidence": 1.0, "uncertain": False}
    assert not {"voices", "speech"} & set(view)
