"""Sample inputs for tests, benchmarks and demos: a CRM submission, a generated recording."""

from __future__ import annotations

import subprocess
import tempfile
import uuid
import wave
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np


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


Line = tuple[Literal["manager", "client"], float, str]


def _speak(text: str, sample_rate_hz: int) -> np.ndarray[Any, np.dtype[np.int16]]:
    """English speech from espeak-ng, resampled by ffmpeg, as int16 samples."""
    with tempfile.TemporaryDirectory() as temp:
        spoken, pcm = Path(temp) / "line.wav", Path(temp) / "line.pcm"
        subprocess.run(
            ["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(spoken), text],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                "ffmpeg",
                "-nostdin",
                "-v",
                "error",
                "-y",
                "-i",
                str(spoken),
                "-ac",
                "1",
                "-ar",
                str(sample_rate_hz),
                "-f",
                "s16le",
                str(pcm),
            ],
            check=True,
        )
        return np.fromfile(pcm, dtype=np.int16)


def write_call(
    path: Path,
    lines: Sequence[Line],
    *,
    duration_s: float,
    stereo: bool = True,
    sample_rate_hz: int = 16000,
) -> Path:
    """A call with each line spoken at its start time: the manager on the left channel and
    the client on the right (stereo), or both mixed (mono). The extension picks the
    container; silence everywhere else."""
    tracks = np.zeros((2 if stereo else 1, int(duration_s * sample_rate_hz)), dtype=np.int32)
    for speaker, start_s, text in lines:
        voice = _speak(text, sample_rate_hz)
        channel = 0 if speaker == "manager" or not stereo else 1
        start = int(start_s * sample_rate_hz)
        end = min(start + len(voice), tracks.shape[1])
        tracks[channel, start:end] += voice[: end - start]
    interleaved = np.clip(tracks, -32768, 32767).astype(np.int16).T.copy()
    with tempfile.TemporaryDirectory() as temp:
        wav = Path(temp) / "call.wav"
        with wave.open(str(wav), "wb") as out:
            out.setnchannels(tracks.shape[0])
            out.setsampwidth(2)
            out.setframerate(sample_rate_hz)
            out.writeframes(interleaved.tobytes())
        subprocess.run(
            ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(wav), str(path)], check=True
        )
    return path


def analysed_call(
    index: int,
    *,
    manager_id: str = "mgr_1",
    passed: int = 1,
    applicable: int = 2,
    days_ago: float = 0.0,
    talk_ratio: float = 0.5,
    table_id: str | None = None,
) -> dict[str, Any]:
    """A task as the pipeline leaves it once analysed and delivered (for list and card views:
    tests and benchmarks)."""
    at = datetime.now(UTC) - timedelta(days=days_ago)
    stages = [
        {
            "name": f"Этап {n + 1}",
            "applicable": True,
            "passed": n < passed,
            "evaluated": True,
            "completion": 100.0 if n < passed else 0.0,
            "evidence": [
                {"text": "добрый день", "start_s": 1.0, "end_s": 2.0, "speaker": "manager"}
            ]
            if n < passed
            else [],
            "recommendation": None if n < passed else "Назовите компанию",
        }
        for n in range(applicable)
    ]
    score = {"passed": passed, "applicable": applicable, "percent": 100 * passed / applicable}
    return {
        "_id": f"task_{index:012d}",
        "call_id": f"call_{index}",
        "deal_id": f"deal_{index}",
        "manager_id": manager_id,
        "manager_name": f"Менеджер {manager_id}",
        "stage_id": "funnel_1",
        "deal_stage_id": "qual",
        "stage": "Продажи",
        "audio_url": f"http://127.0.0.1:9/{index}.wav",
        "status": "done",
        "received_at": at,
        "updated_at": at,
        "timeline": [{"status": "queued", "at": at}, {"status": "done", "at": at}],
        "score": {**score, "perfect": passed == applicable},
        "results": {
            "checklists": [
                {
                    "binding_id": "bnd_1",
                    "template": {"id": "tpl_1", "name": "Первичный звонок"},
                    "score": score,
                    "stages": stages,
                }
            ],
            "tables": [{"table_id": table_id, "name": "Сделки", "row": {"budget": 1000 * index}}]
            if table_id
            else [],
            "metrics": {"duration_s": 60.0, "talk_ratio": talk_ratio},
        },
        "transcript": [
            {
                "speaker": "manager",
                "start_s": 1.0,
                "end_s": 2.0,
                "text": "добрый день",
                "words": [],
            },
            {
                "speaker": "client",
                "start_s": 2.5,
                "end_s": 4.0,
                "text": "здравствуйте",
                "words": [],
            },
        ],
    }
