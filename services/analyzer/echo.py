"""Echo between the channels of a stereo call: each side's voice leaks into the other's
channel, much quieter and a little late (line and handset echo).

A stretch of a channel is the other side's echo when the other side was speaking a
moment earlier (within the echo's delay) and this channel is much quieter than that
(`MIN_ECHO_LOSS_DB`). What cannot be told apart this way: a voice that much quieter than
the other side at the same moment is taken for echo (people talking at once are both
near full level on their own channels, so this is rare). Levels are compared at their
peaks, the other side's over the echo's delay and this side's over a syllable, so the
dips between one's own syllables are never taken for echo.

Such stretches are silenced before the VAD and the ASR hear the channel, so the leaked
copy is neither transcribed as the other speaker nor counted as their talk time. Two
people really talking at once are both loud on their own channels, so neither is
silenced: that stays an interruption.
"""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt

from services.analyzer.audio import SAMPLE_RATE_HZ, Samples

FRAME = SAMPLE_RATE_HZ // 100  # 10 ms
MAX_DELAY_FRAMES = 30  # echo arrives within 0.3 s
SYLLABLE_FRAMES = 10  # ±0.1 s
MIN_ECHO_LOSS_DB = 12.0
# The other side must be speaking, well above its own floor, for its echo to matter.
LOUD_ABOVE_FLOOR_DB = 15.0
# Echo stretches shorter than this are left alone; gaps shorter than it are bridged.
MIN_ECHO_FRAMES = 5

# Codecs gate quiet sound to digital silence; levels are floored here.
FLOOR_DB = -70.0

Levels = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]


def _levels_db(audio: Samples) -> Levels:
    frames = len(audio) // FRAME
    power = np.mean(np.square(audio[: frames * FRAME].reshape(frames, FRAME)), 1, dtype=np.float64)
    return np.asarray(np.maximum(10 * np.log10(power + 1e-10), FLOOR_DB), dtype=np.float64)


def _peak(levels: Levels, *, before: int, after: int) -> Levels:
    """Per frame, the loudest level from `before` frames earlier to `after` frames later."""
    padded = np.concatenate([np.full(before, FLOOR_DB), levels, np.full(after, FLOOR_DB)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, before + after + 1)
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
    # Echo arrives late: by a delay the line decides, and a codec's own crosstalk by none.
    source = _peak(other_db, before=MAX_DELAY_FRAMES, after=0)
    own_peak = _peak(own_db, before=SYLLABLE_FRAMES, after=SYLLABLE_FRAMES)
    other_loud = source >= float(np.percentile(other_db, 10)) + LOUD_ABOVE_FLOOR_DB
    return _smoothed(other_loud & (own_peak <= source - MIN_ECHO_LOSS_DB))


def _silenced(audio: Samples, frames: Mask) -> Samples:
    """`audio` with the given frames silenced, faded over 5 ms so no click is heard."""
    if not frames.any():
        return audio
    silenced = audio.copy()
    fade = np.linspace(1.0, 0.0, FRAME // 2, dtype=np.float32)
    for first, last in _runs(frames):
        start, end = first * FRAME, last * FRAME
        silenced[start:end] = 0.0
        before = silenced[max(0, start - len(fade)) : start]
        before *= fade[len(fade) - len(before) :]
        after = silenced[end : end + len(fade)]
        after *= fade[::-1][: len(after)]
    return silenced


def remove_echo(manager: Samples, client: Samples) -> tuple[Samples, Samples]:
    """Both channels with the other side's echo silenced."""
    return (
        _silenced(manager, echo_frames(manager, client)),
        _silenced(client, echo_frames(client, manager)),
    )
