"""Voice activity (Silero VAD, shipped with faster-whisper) and the talk metrics of a call."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from faster_whisper.vad import VadOptions, get_speech_timestamps

from services.analyzer.audio import SAMPLE_RATE_HZ, Samples

Interval = tuple[float, float]
# Pauses shorter than this inside one side's speech still count as one turn.
TURN_GAP_S = 1.5
# Padding keeps word edges for the ASR, which only hears what the VAD kept.
VAD = VadOptions(threshold=0.5, min_silence_duration_ms=300, speech_pad_ms=200)


# A cheap energy gate skips what is certainly silence before Silero looks at the rest:
# a telephony channel is silent while the other side talks, often half of the call.
GATE_FRAME = 512
GATE_PAD_FRAMES = 16  # ≈ 0.5 s kept around anything loud enough
GATE_FLOOR_DB = -50.0


def _loud_regions(audio: Samples) -> list[tuple[int, int]]:
    """Sample ranges whose energy is above the noise floor (padded and merged)."""
    frames = len(audio) // GATE_FRAME
    if frames == 0:
        return [(0, len(audio))] if len(audio) else []
    power = np.mean(np.square(audio[: frames * GATE_FRAME].reshape(frames, GATE_FRAME)), axis=1)
    db = 10 * np.log10(power + 1e-12)
    threshold = max(GATE_FLOOR_DB, float(np.percentile(db, 10)) + 10.0)
    loud = np.flatnonzero(db > threshold)
    regions: list[tuple[int, int]] = []
    for frame in loud.tolist():
        start, end = max(0, frame - GATE_PAD_FRAMES), min(frames, frame + GATE_PAD_FRAMES + 1)
        if regions and start <= regions[-1][1]:
            regions[-1] = (regions[-1][0], end)
        else:
            regions.append((start, end))
    return [(start * GATE_FRAME, min(len(audio), end * GATE_FRAME)) for start, end in regions]


def speech_intervals(audio: Samples) -> list[Interval]:
    """Where someone speaks in a mono 16 kHz stream, in seconds from its start."""
    intervals: list[Interval] = []
    for start, end in _loud_regions(audio):
        intervals += [
            ((start + chunk["start"]) / SAMPLE_RATE_HZ, (start + chunk["end"]) / SAMPLE_RATE_HZ)
            for chunk in get_speech_timestamps(audio[start:end], VAD)
        ]
    return intervals


def _total(intervals: Sequence[Interval]) -> float:
    return sum(end - start for start, end in intervals)


def _union(intervals: Sequence[Interval]) -> list[Interval]:
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _speaks_between(intervals: Sequence[Interval], start: float, end: float) -> bool:
    return any(s < end and e > start for s, e in intervals)


def _turns(own: Sequence[Interval], other: Sequence[Interval]) -> list[Interval]:
    """Join one side's speech across short pauses in which the other side is silent."""
    turns: list[Interval] = []
    for start, end in sorted(own):
        if (
            turns
            and start - turns[-1][1] <= TURN_GAP_S
            and not _speaks_between(other, turns[-1][1], start)
        ):
            turns[-1] = (turns[-1][0], max(turns[-1][1], end))
        else:
            turns.append((start, end))
    return turns


def _interruptions(own: Sequence[Interval], other: Sequence[Interval]) -> int:
    """Times one side started talking while the other was talking."""
    return sum(1 for start, _ in own if any(s < start < e for s, e in other))


@dataclass(frozen=True)
class TalkMetrics:
    """SPEC §7 metrics of a call."""

    duration_s: float
    talk_time_manager_s: float
    talk_time_client_s: float
    talk_ratio: float | None
    longest_monologue_s: float
    silence_s: float
    interruptions: int
    words_per_minute_manager: float | None


def talk_metrics(
    manager: Sequence[Interval],
    client: Sequence[Interval],
    *,
    duration_s: float,
    manager_words: int,
    interruptions: int | None = None,
) -> TalkMetrics:
    """Metrics from where each side speaks. Interruptions are counted where one side
    starts while the other speaks, unless given (a mono call's speech never overlaps)."""
    manager_s, client_s = _total(_union(manager)), _total(_union(client))
    talk_s = manager_s + client_s
    turns = _turns(manager, client)
    if interruptions is None:
        interruptions = _interruptions(manager, client) + _interruptions(client, manager)
    return TalkMetrics(
        duration_s=round(duration_s, 2),
        talk_time_manager_s=round(manager_s, 2),
        talk_time_client_s=round(client_s, 2),
        talk_ratio=round(manager_s / talk_s, 3) if talk_s else None,
        longest_monologue_s=round(max((e - s for s, e in turns), default=0.0), 2),
        silence_s=round(max(0.0, duration_s - _total(_union([*manager, *client]))), 2),
        interruptions=interruptions,
        words_per_minute_manager=round(manager_words / (manager_s / 60)) if manager_s else None,
    )
