"""Test recordings generated with ffmpeg, cached under .data/test-audio (never committed)."""

from __future__ import annotations

from pathlib import Path

from devtools.samples import write_tone

CACHE = Path(__file__).resolve().parents[1] / ".data" / "test-audio"


def tone(container: str, *, sample_rate_hz: int, channels: int, duration_s: float = 3.0) -> Path:
    """A sine tone in the given container; made once, then reused."""
    path = CACHE / f"tone-{sample_rate_hz}-{channels}ch-{duration_s:g}s.{container}"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part" + path.suffix)
        write_tone(partial, sample_rate_hz=sample_rate_hz, channels=channels, duration_s=duration_s)
        partial.rename(path)
    return path
