"""Audio preparation with ffmpeg-python: long calls split into parts, channels decoded to 16 kHz.

Splitting copies the compressed streams (`-f segment -c copy`), so it costs about as
much as copying the file; each part is then decoded on its own, so memory is bounded
by the part length, not the call length. Part offsets come from the segment list,
so every timestamp can be made absolute.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import ffmpeg
import numpy as np
import numpy.typing as npt

SAMPLE_RATE_HZ = 16000
# Frame boundaries never fall exactly on the cut: allow this much over a part's length.
SPLIT_SLACK_S = 0.5
Samples = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Part:
    """A piece of a call: where it starts in the call, and its file."""

    index: int
    offset_s: float
    path: Path


def split_into_parts(
    source: Path, *, duration_s: float, part_s: float, work_dir: Path
) -> list[Part]:
    """Cut a call longer than `part_s` into equal parts of about `part_s` at most (stream copy).

    Equal parts, rather than full ones and a remainder, leave no sliver at the end; a part
    may exceed `part_s` by the rounding of its last audio frame.
    """
    if duration_s <= part_s + SPLIT_SLACK_S:
        return [Part(0, 0.0, source)]
    count = math.ceil((duration_s - SPLIT_SLACK_S) / part_s)
    pattern = work_dir / f"part%03d{source.suffix or '.audio'}"
    segment_list = work_dir / "parts.csv"
    (
        ffmpeg.input(str(source))
        .output(
            str(pattern),
            f="segment",
            segment_time=duration_s / count + SPLIT_SLACK_S,
            segment_list=str(segment_list),
            segment_list_type="csv",
            reset_timestamps=1,
            c="copy",
            map="0:a:0",
        )
        .run(quiet=True, overwrite_output=True)
    )
    with segment_list.open(newline="") as rows:
        return [
            Part(index, float(start_s), work_dir / name)
            for index, (name, start_s, _end_s) in enumerate(csv.reader(rows))
        ]


def decode_channels(source: Path, *, channels: int, work_dir: Path) -> list[Samples]:
    """Decode to 16 kHz mono float32, one array per channel of a stereo file, else one."""
    stream = ffmpeg.input(str(source)).audio
    outputs = (
        [
            stream.filter_multi_output("channelsplit", channel_layout="stereo").stream(i)
            for i in range(2)
        ]
        if channels == 2
        else [stream]
    )
    paths = [work_dir / f"{source.stem}.ch{i}.pcm" for i in range(len(outputs))]
    ffmpeg.merge_outputs(
        *(
            output.output(str(path), ac=1, ar=SAMPLE_RATE_HZ, f="s16le", acodec="pcm_s16le")
            for output, path in zip(outputs, paths, strict=True)
        )
    ).run(quiet=True, overwrite_output=True)
    decoded = []
    for path in paths:
        pcm = np.fromfile(path, dtype=np.int16)
        path.unlink()
        decoded.append(pcm.astype(np.float32) / 32768.0)
    return decoded
