"""Echo between the channels of a stereo call: each side's voice leaks into the other's
channel, much quieter and a little late (line and handset echo).

A stretch of a channel is the other side's echo when the other side was speaking a
moment earlier (within the echo's delay), this channel is much quieter than that
(`MIN_ECHO_LOSS_DB`), and no louder than the call's echo path lets through (measured
per call and direction). Such stretches are silenced before the VAD and the ASR
hear the channel, so the leaked copy is neither transcribed as the other speaker nor
counted as their talk time. Two people really talking at once are both loud on their own
channels, so neither is silenced: that stays an interruption.
"""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt

from services.analyzer.audio import SAMPLE_RATE_HZ, Samples

FRAME = SAMPLE_RATE_HZ // 100  # 10 ms
MAX_DELAY_FRAMES = 30  # echo arrives within 0.3 s
MIN_ECHO_LOSS_DB = 12.0
# The other side must be speaking, well above its own floor, for its echo to matter.
LOUD_ABOVE_FLOOR_DB = 15.0
# The echo path's loss is the low end (this percentile) of how much quieter the quiet
# stretches are; echo is never much louder than that path lets through, so a stretch
# this much louder still is the channel's own (soft) voice.
PATH_LOSS_PERCENTILE = 10
ECHO_LEVEL_TOLERANCE_DB = 6.0
# Echo stretches shorter than this are left alone; gaps shorter than it are bridged.
MIN_ECHO_FRAMES = 5

# Codecs gate quiet sound to digital silence; levels are floored here.
FLOOR_DB = -70.0

Levels = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]


def _levels_db(audio: Samples) -> Levels:
    frames = len(audio) // FRAME
    power = np.mean(np.square(audio[: frames * FRAME].reshape(frames, FRAME), dtype=np.float64), 1)
    return np.asarray(np.maximum(10 * np.log10(power + 1e-10), FLOOR_DB), dtype=np.float64)


def _recent_peak(levels: Levels) -> Levels:
    """Per frame, the loudest of the last `MAX_DELAY_FRAMES` frames (echo arrives late,
    by a delay the line decides and a codec's own crosstalk by none)."""
    padded = np.concatenate([np.full(MAX_DELAY_FRAMES, FLOOR_DB), levels])
    windows = np.lib.stride_tricks.sliding_window_view(padded, MAX_DELAY_FRAMES + 1)
    return np.asarray(windows.max(axis=1), dtype=np.float64)


def _runs(mask: Mask) -> list[tuple[int, int]]:
    """[start, end) of every run of True."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _smoothed(mask: Mask) -> Mask:
    """Gaps shorter than MIN_ECHO_FRAMES bridged, then runs shorter than it dropped."""
    bridged = mask.copy()
    runs = _runs(mask)
    for (_, end), (start, _) in itertools.pairwise(runs):
        if start - end < MIN_ECHO_FRAMES:
            bridged[end:start] = True
    result = np.zeros_like(mask)
    for start, end in _runs(bridged):
        if end - start >= MIN_ECHO_FRAMES:
            result[start:end] = True
    return result


def echo_frames(own: Samples, other: Samples) -> Mask:
    """Which 10 ms frames of `own` carry only the other side's echo."""
    own_db, other_db = _levels_db(own), _levels_db(other)
    count = min(len(own_db), len(other_db))
    own_db, other_db = own_db[:count], other_db[:count]
    if count < MIN_ECHO_FRAMES:
        return np.zeros(count, dtype=bool)
    source = _recent_peak(other_db)
    other_loud = source >= float(np.percentile(other_db, 10)) + LOUD_ABOVE_FLOOR_DB
    quiet = other_loud & (own_db <= source - MIN_ECHO_LOSS_DB)
    audible = quiet & (own_db > FLOOR_DB)  # not gated to silence by the codec
    if not audible.any():
        return np.zeros(count, dtype=bool)
    loss_db = float(np.percentile(source[audible] - own_db[audible], PATH_LOSS_PERCENTILE))
    return _smoothed(quiet & (own_db <= source - loss_db + ECHO_LEVEL_TOLERANCE_DB))


def _silenced(audio: Samples, frames: Mask) -> Samples:
    """`audio` with the given frames silenced, faded over 5 ms so no click is heard."""
    if not frames.any():
        return audio
    gain = np.ones(len(audio), dtype=np.float32)
    gain[: len(frames) * FRAME] = np.repeat((~frames).astype(np.float32), FRAME)
    fade = FRAME // 2
    running = np.concatenate([np.zeros(fade), np.cumsum(gain, dtype=np.float64)])
    smoothed = (running[fade:] - running[:-fade]) / fade  # a moving average, in O(n)
    smoothed[: fade - 1] = gain[: fade - 1]
    return np.asarray(audio * smoothed, dtype=np.float32)


def remove_echo(manager: Samples, client: Samples) -> tuple[Samples, Samples]:
    """Both channels with the other side's echo silenced."""
    return (
        _silenced(manager, echo_frames(manager, client)),
        _silenced(client, echo_frames(client, manager)),
    )
