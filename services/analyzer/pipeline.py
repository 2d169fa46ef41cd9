"""From a stored recording to a transcript and talk metrics (CPU-bound: runs in a worker thread)."""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from services.analyzer.asr import Transcriber, utterances_of
from services.analyzer.audio import SAMPLE_RATE_HZ, Part, Samples, decode_channels, split_into_parts
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


# ASR hears speech regions with their natural short pauses; only long silences are cut.
ASR_JOIN_GAP_S = 2.0
ASR_PAD_S = 0.2
# Joined regions are kept apart by a little silence, so the model hears a pause between
# them instead of one run-on sentence (and word times do not straddle the cut).
ASR_SEPARATOR_S = 1.0


def _asr_regions(speech: list[Interval], duration_s: float) -> list[Interval]:
    regions: list[Interval] = []
    for start_s, end_s in speech:
        start_s, end_s = max(0.0, start_s - ASR_PAD_S), min(duration_s, end_s + ASR_PAD_S)
        if regions and start_s - regions[-1][1] < ASR_JOIN_GAP_S:
            regions[-1] = (regions[-1][0], end_s)
        else:
            regions.append((start_s, end_s))
    return regions


def _speech_only(audio: Samples, speech: list[Interval]) -> tuple[Samples, list[Interval]]:
    """Join the speech of a stream; also return (start in joined, start in stream) per piece."""
    separator = np.zeros(int(ASR_SEPARATOR_S * SAMPLE_RATE_HZ), dtype=np.float32)
    pieces, starts, joined_s = [], [], 0.0
    for start_s, end_s in _asr_regions(speech, len(audio) / SAMPLE_RATE_HZ):
        piece = audio[int(start_s * SAMPLE_RATE_HZ) : int(end_s * SAMPLE_RATE_HZ)]
        pieces += [piece, separator]
        starts.append((joined_s, start_s))
        joined_s += (len(piece) + len(separator)) / SAMPLE_RATE_HZ
    joined = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
    return joined, starts


def _in_stream(time_s: float, starts: list[Interval]) -> float:
    """Map a time in the joined speech back to the stream it was cut from."""
    index = max(bisect.bisect_right([joined for joined, _ in starts], time_s) - 1, 0)
    joined_start_s, stream_start_s = starts[index]
    return stream_start_s + time_s - joined_start_s


def recognise(transcriber: Transcriber, audio: Samples, speech: list[Interval]) -> list[Word]:
    """Words of a stream, recognising only its speech; times are from the stream's start.

    The silence the VAD found is cut out before ASR (the model does not run its own VAD
    a second time), and every word time is mapped back.
    """
    joined, starts = _speech_only(audio, speech)
    if not len(joined):
        return []
    return [
        Word(word.text, _in_stream(word.start_s, starts), _in_stream(word.end_s, starts))
        for word in transcriber.transcribe(joined)
    ]


def _shifted(intervals: list[Interval], offset_s: float) -> list[Interval]:
    return [(start_s + offset_s, end_s + offset_s) for start_s, end_s in intervals]


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
        with _timed(seconds, "vad"), ThreadPoolExecutor(len(decoded)) as pool:
            # Silero runs on one thread; the channels go in parallel.
            part_speech = list(pool.map(speech_intervals, decoded))
        for side, audio, found in zip(sides, decoded, part_speech, strict=True):
            speech[side] += _shifted(found, part.offset_s)
            with _timed(seconds, "asr"):
                words[side] += [
                    Word(w.text, w.start_s + part.offset_s, w.end_s + part.offset_s)
                    for w in recognise(transcriber, audio, found)
                ]
        del decoded
    utterances = sorted(
        (line for side in sides for line in utterances_of(words[side], side, speech[side])),
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
