"""From a stored recording to a transcript and talk metrics (CPU-bound: runs in a worker thread)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from services.analyzer.asr import Transcriber, utterances_of
from services.analyzer.audio import Part, decode_channels, split_into_parts
from services.analyzer.talk import (
    Interval,
    TalkMetrics,
    mono_metrics,
    speech_intervals,
    stereo_metrics,
)
from services.analyzer.transcript import SpeakerName, Utterance, Word


@dataclass
class Transcription:
    """Everything the scoring needs from the audio, with the time each stage took."""

    utterances: list[Utterance]
    metrics: TalkMetrics
    parts: list[Part]
    mono: bool
    stage_seconds: dict[str, float] = field(default_factory=dict)


@contextmanager
def _timed(seconds: dict[str, float], stage: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - started


def _shifted(words: list[Word], offset_s: float) -> list[Word]:
    return [Word(w.text, w.start_s + offset_s, w.end_s + offset_s) for w in words]


def transcribe_call(
    source: Path,
    *,
    channels: int,
    duration_s: float,
    transcriber: Transcriber,
    work_dir: Path,
    part_s: float = 2700.0,
    manager_channel: Literal["left", "right"] = "left",
) -> Transcription:
    """Split, decode each channel, find speech, recognise words; every time is absolute."""
    seconds: dict[str, float] = {}
    stereo = channels == 2
    sides: tuple[SpeakerName, ...] = ("manager", "client") if stereo else ("unknown",)
    speech: dict[SpeakerName, list[Interval]] = {side: [] for side in sides}
    words: dict[SpeakerName, list[Word]] = {side: [] for side in sides}
    with _timed(seconds, "decode"):
        parts = split_into_parts(source, duration_s=duration_s, part_s=part_s, work_dir=work_dir)
    for part in parts:
        with _timed(seconds, "decode"):
            decoded = decode_channels(part.path, channels=channels, work_dir=work_dir)
        if stereo and manager_channel == "right":
            decoded.reverse()
        for side, audio in zip(sides, decoded, strict=True):
            with _timed(seconds, "vad"):
                speech[side] += speech_intervals(audio, offset_s=part.offset_s)
            with _timed(seconds, "asr"):
                words[side] += _shifted(transcriber.transcribe(audio), part.offset_s)
        del decoded
    utterances = sorted(
        (line for side in sides for line in utterances_of(words[side], side)),
        key=lambda line: line.start_s,
    )
    metrics = (
        stereo_metrics(
            speech["manager"],
            speech["client"],
            duration_s=duration_s,
            manager_words=len(words["manager"]),
        )
        if stereo
        else mono_metrics(speech["unknown"], duration_s=duration_s)
    )
    return Transcription(utterances, metrics, parts, mono=not stereo, stage_seconds=seconds)
