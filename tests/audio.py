"""Test recordings generated with ffmpeg, cached under .data/test-audio (never committed)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from devtools.samples import Line, Spoken, write_call, write_tone

CACHE = Path(__file__).resolve().parents[1] / ".data" / "test-audio"

# A good sales call: the manager greets, checks the time, and agrees the next step.
GOOD_CALL: list[Line] = [
    ("manager", 1.0, "Good afternoon, my name is Anna from the flower company."),
    ("client", 6.0, "Hello, yes, I can talk now."),
    ("manager", 9.5, "Is it convenient for you to talk now?"),
    ("client", 14.0, "Our budget is five hundred thousand."),
    ("manager", 18.0, "I will call you back on Thursday."),
]


# A mono call: the client answers first; the manager introduces themself (cues), the
# client says two of the script's phrases and its forbidden one.
MONO_CALL: list[Line] = [
    ("client", 1.0, "Hello?"),
    ("manager", 2.5, "Good afternoon, my name is Anna, calling from the flower company."),
    ("client", 8.5, "Is it convenient to talk now? I am busy."),
    ("manager", 13.0, "We deliver fresh flowers to offices every morning."),
    ("client", 17.5, "That is not my problem, I will call you back."),
    ("manager", 22.0, "Thank you for your time, goodbye."),
]


def tone(
    container: str,
    *,
    sample_rate_hz: int,
    channels: int,
    duration_s: float = 3.0,
    encoding: str | None = None,
) -> Path:
    """A sine tone in the given container; made once, then reused."""
    name = f"tone-{sample_rate_hz}-{channels}ch-{duration_s:g}s-{encoding or 'default'}"
    path = CACHE / f"{name}.{container}"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part" + path.suffix)
        write_tone(
            partial,
            sample_rate_hz=sample_rate_hz,
            channels=channels,
            duration_s=duration_s,
            encoding=encoding,
        )
        partial.rename(path)
    return path


def call(
    lines: Sequence[Line],
    *,
    duration_s: float,
    stereo: bool = True,
    container: str = "mp3",
    sample_rate_hz: int = 16000,
    **sound: Any,
) -> Path:
    """A spoken call (espeak-ng lines at their offsets); made once per layout, then reused.

    `sound` goes to `write_call`: voices, encoding, noise, leak between channels."""
    key = repr((list(lines), duration_s, stereo, sample_rate_hz, sorted(sound.items()))).encode()
    path = CACHE / f"call-{hashlib.sha256(key).hexdigest()[:16]}.{container}"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part" + path.suffix)
        layout = write_call(
            partial,
            lines,
            duration_s=duration_s,
            stereo=stereo,
            sample_rate_hz=sample_rate_hz,
            **sound,
        )
        _layout_file(path).write_text(json.dumps([dataclasses.asdict(line) for line in layout]))
        partial.rename(path)
    return path


def _layout_file(path: Path) -> Path:
    return path.with_name(path.name + ".layout.json")


def spoken(path: Path) -> list[Spoken]:
    """Where each line of a generated call really sounds."""
    return [Spoken(**line) for line in json.loads(_layout_file(path).read_text())]
