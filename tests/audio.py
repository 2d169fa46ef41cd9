"""Test recordings generated with ffmpeg, cached under .data/test-audio (never committed)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from devtools.samples import Line, write_call, write_tone

CACHE = Path(__file__).resolve().parents[1] / ".data" / "test-audio"

# A good sales call: the manager greets, checks the time, and agrees the next step.
GOOD_CALL: list[Line] = [
    ("manager", 1.0, "Good afternoon, my name is Anna from the flower company."),
    ("client", 6.0, "Hello, yes, I can talk now."),
    ("manager", 9.5, "Is it convenient for you to talk now?"),
    ("client", 14.0, "Our budget is five hundred thousand."),
    ("manager", 18.0, "I will call you back on Thursday."),
]


def tone(container: str, *, sample_rate_hz: int, channels: int, duration_s: float = 3.0) -> Path:
    """A sine tone in the given container; made once, then reused."""
    path = CACHE / f"tone-{sample_rate_hz}-{channels}ch-{duration_s:g}s.{container}"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part" + path.suffix)
        write_tone(partial, sample_rate_hz=sample_rate_hz, channels=channels, duration_s=duration_s)
        partial.rename(path)
    return path


def call(
    lines: Sequence[Line],
    *,
    duration_s: float,
    stereo: bool = True,
    container: str = "mp3",
    sample_rate_hz: int = 16000,
) -> Path:
    """A spoken call (espeak-ng lines at their offsets); made once per layout, then reused."""
    key = repr((list(lines), duration_s, stereo, sample_rate_hz)).encode()
    path = CACHE / f"call-{hashlib.sha256(key).hexdigest()[:16]}.{container}"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part" + path.suffix)
        write_call(
            partial, lines, duration_s=duration_s, stereo=stereo, sample_rate_hz=sample_rate_hz
        )
        partial.rename(path)
    return path
