"""Sample inputs for tests, benchmarks and demos: a CRM submission, a generated recording."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Any


def sample_call(**changes: Any) -> dict[str, Any]:
    """A valid JSON submission with a fresh call_id; a change to None removes the field."""
    call: dict[str, Any] = {
        "call_id": f"call_{uuid.uuid4().hex[:12]}",
        "audio_url": "https://crm.example/files/audio/call_12345.mp3",
        "duration": 900,
        "manager_id": "mgr_001",
        "manager_name": "Иванов Иван Петрович",
        "deal_id": "deal_5678",
        "deal_stage_id": "stage_qualification",
        "stage_id": "funnel_primary_calls",
    }
    call.update(changes)
    return {name: value for name, value in call.items() if value is not None}


def write_tone(path: Path, *, sample_rate_hz: int, channels: int, duration_s: float) -> Path:
    """Write a 440 Hz tone with ffmpeg; the extension picks the container."""
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency=440:sample_rate={sample_rate_hz}:duration={duration_s}",
            "-ac",
            str(channels),
            str(path),
        ],
        check=True,
    )
    return path
