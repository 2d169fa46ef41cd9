"""ffprobe and ffmpeg through ffmpeg-python: what a recording is, decided by its content."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ffmpeg

# ffprobe names of the containers the seed accepts: MP3, WAV, OGG.
CONTAINERS = {"mp3": "mp3", "wav": "wav", "ogg": "ogg"}
# Bound what ffprobe reads to identify the format; the duration still comes from the whole file.
PROBE_LIMITS = {"probesize": 10_000_000, "analyzeduration": 10_000_000}


class NotAudio(Exception):
    """The file is not audio of an accepted container, or its length cannot be determined."""


@dataclass(frozen=True)
class AudioInfo:
    """What ffprobe found in a recording."""

    container: str
    codec: str
    sample_rate_hz: int
    channels: int
    duration_s: float


def _container(format_name: str) -> str | None:
    for name in format_name.split(","):
        if name in CONTAINERS:
            return CONTAINERS[name]
    return None


def _duration(stream: dict[str, Any], fmt: dict[str, Any]) -> float | None:
    for raw in (stream.get("duration"), fmt.get("duration")):
        if raw is None:
            continue
        try:
            value = float(raw)
        except (TypeError, ValueError):
            continue
        if math.isfinite(value) and value > 0:
            return value
    return None


def describe(report: dict[str, Any]) -> AudioInfo:
    """Turn ffprobe's JSON into AudioInfo; anything else raises NotAudio."""
    fmt = report.get("format", {})
    container = _container(fmt.get("format_name", ""))
    audio = [s for s in report.get("streams", []) if s.get("codec_type") == "audio"]
    if container is None or not audio:
        raise NotAudio(f"format {fmt.get('format_name')!r} with {len(audio)} audio streams")
    stream = audio[0]
    duration_s = _duration(stream, fmt)
    if duration_s is None:
        raise NotAudio("duration cannot be determined")
    try:
        sample_rate_hz, channels = int(stream["sample_rate"]), int(stream["channels"])
    except (KeyError, TypeError, ValueError) as exc:
        raise NotAudio("no sample rate or channel count") from exc
    return AudioInfo(
        container=container,
        codec=str(stream.get("codec_name", "unknown")),
        sample_rate_hz=sample_rate_hz,
        channels=channels,
        duration_s=duration_s,
    )


async def probe_audio(path: Path) -> AudioInfo:
    """Probe a local file (ffprobe runs in a worker thread)."""
    try:
        report = await asyncio.to_thread(ffmpeg.probe, str(path), v="error", **PROBE_LIMITS)
    except ffmpeg.Error as exc:
        raise NotAudio(exc.stderr.decode(errors="replace").strip()[:300]) from exc
    return describe(report)
