"""Test recordings generated with ffmpeg, cached under .data/test-audio (never committed)."""

from __future__ import annotations

import subprocess
from pathlib import Path

CACHE = Path(__file__).resolve().parents[1] / ".data" / "test-audio"


def tone(container: str, *, sample_rate_hz: int, channels: int, duration_s: float = 3.0) -> Path:
    """A sine tone in the given container; made once, then reused."""
    path = CACHE / f"tone-{sample_rate_hz}-{channels}ch-{duration_s:g}s.{container}"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part" + path.suffix)
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
                str(partial),
            ],
            check=True,
        )
        partial.rename(path)
    return path
