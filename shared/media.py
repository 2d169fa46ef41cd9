"""ffprobe and ffmpeg through ffmpeg-python: what a recording is, decided by its content.

ffprobe reads a file's length from its headers (an MP3's Xing/Info frame count, a WAV's
data size), which an upload cut short still carries in full. So the length that counts
is the audio ffmpeg can really decode: one decoding pass, without resampling or writing
anything (about 1.3 s for a 60-minute MP3, measured by `make bench-analyze`).
"""

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
    """What a recording is: from ffprobe, and its length from decoding it."""

    container: str
    codec: str
    sample_rate_hz: int
    channels: int
    duration_s: float  # what decodes
    claimed_duration_s: float  # what the headers say

    @property
    def share_present(self) -> float:
        """How much of the claimed length the file really holds."""
        return min(1.0, self.duration_s / self.claimed_duration_s)


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


def describe(report: dict[str, Any], *, decoded_s: float) -> AudioInfo:
    """Turn ffprobe's JSON and the decoded length into AudioInfo; anything else raises
    NotAudio."""
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
        duration_s=round(decoded_s, 3),
        claimed_duration_s=duration_s,
    )


def decoded_duration_s(path: Path) -> float:
    """Seconds of the first audio stream that really decode (damaged frames skipped)."""
    stdout, _ = (
        ffmpeg.input(str(path))
        .output("-", format="null", map="0:a:0")
        .global_args("-nostats", "-progress", "pipe:1")
        .run(capture_stdout=True, capture_stderr=True)
    )
    ends = [
        int(value)
        for key, _, value in (line.partition("=") for line in stdout.decode().splitlines())
        if key == "out_time_us" and value.strip().lstrip("-").isdigit()
    ]
    return max(0, ends[-1]) / 1e6 if ends else 0.0


async def probe_audio(path: Path) -> AudioInfo:
    """Probe a local file and decode it once for its real length (in worker threads)."""
    try:
        report = await asyncio.to_thread(ffmpeg.probe, str(path), v="error", **PROBE_LIMITS)
        decoded_s = await asyncio.to_thread(decoded_duration_s, path)
    except ffmpeg.Error as exc:
        raise NotAudio(exc.stderr.decode(errors="replace").strip()[:300]) from exc
    return describe(report, decoded_s=decoded_s)
