"""`make bench-analyze`: analysis speed of a 10-minute stereo call, and the cost of splitting.

1. A generated 10-minute stereo call (espeak-ng lines alternating between the manager
   on the left and the client on the right) through the whole analysis with the
   bundled model on CPU (int8): seconds of processing per second of audio, overall
   and per stage. Targets: ≤ 0.15 s/s overall; everything except ASR ≤ 10 %.
2. Splitting a generated 90-minute MP3 into 45-minute parts, against a plain
   `ffmpeg -i in.mp3 -c copy out.mp3` of the same file. Target: ≤ 2× the copy.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from devtools.samples import Line, write_call, write_tone
from services.analyzer import evaluate
from services.analyzer.asr import WhisperTranscriber
from services.analyzer.audio import Part, split_into_parts
from services.analyzer.pipeline import transcribe_call
from services.ingest.samples import SAMPLE_TABLE, SAMPLE_TEMPLATE

CACHE = Path(".data/bench")
MANAGER_LINES = [
    "Good afternoon, my name is Anna from the flower company.",
    "Is it convenient for you to talk now?",
    "What are you looking for this season?",
    "We offer fresh flowers with delivery every morning.",
    "What budget do you have in mind for the office?",
    "I will call you back on Thursday with the offer.",
]
CLIENT_LINES = [
    "Hello, yes, I have a minute.",
    "We need flowers for our reception every week.",
    "Our budget is about five hundred thousand.",
    "We also talk to a competitor, to be honest.",
    "Thursday works for me, thank you.",
]


def ten_minute_call(path: Path, duration_s: float) -> Path:
    lines: list[Line] = []
    start_s, turn = 1.0, 0
    while start_s < duration_s - 8:
        if turn % 2 == 0:
            lines.append(("manager", start_s, MANAGER_LINES[(turn // 2) % len(MANAGER_LINES)]))
        else:
            lines.append(("client", start_s, CLIENT_LINES[(turn // 2) % len(CLIENT_LINES)]))
        start_s += 5.5
        turn += 1
    return write_call(path, lines, duration_s=duration_s)


def ninety_minute_mp3(path: Path) -> Path:
    return write_tone(path, sample_rate_hz=8000, channels=1, duration_s=5400)


def bench_analysis(duration_s: float) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    source = CACHE / f"call-{duration_s:.0f}s.mp3"
    if not source.exists():
        ten_minute_call(source, duration_s)
    transcriber = WhisperTranscriber("tiny.en", device="cpu", compute_type="int8", language="en")
    with tempfile.TemporaryDirectory() as temp:
        started = time.perf_counter()
        transcription = transcribe_call(
            source, channels=2, duration_s=duration_s, transcriber=transcriber, work_dir=Path(temp)
        )
        scoring_started = time.perf_counter()
        evaluate.checklist("bench", "bench", SAMPLE_TEMPLATE, transcription)
        evaluate.table_row("bench", SAMPLE_TABLE, transcription)
        finished = time.perf_counter()
    stages = {**transcription.stage_seconds, "scoring": finished - scoring_started}
    total = finished - started
    print(
        f"\nanalysis of a {duration_s / 60:.0f}-minute stereo call ({len(transcription.utterances)}"
        " lines), tiny.en int8 on CPU"
    )
    print(f"{'stage':10} {'seconds':>8} {'s per audio s':>14} {'share':>7}")
    for stage in ("decode", "vad", "asr", "scoring"):
        seconds = stages.get(stage, 0.0)
        print(f"{stage:10} {seconds:8.2f} {seconds / duration_s:14.4f} {seconds / total:7.1%}")
    print(f"{'total':10} {total:8.2f} {total / duration_s:14.4f}")
    print(f"\nwhole analysis: {total / duration_s:.3f} s per audio second (target ≤ 0.15)")
    print(f"everything except ASR: {1 - stages['asr'] / total:.1%} of the total (target ≤ 10 %)")


def _best_of(repeats: int, run: Callable[[], object]) -> float:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        timings.append(time.perf_counter() - started)
    return min(timings)


def bench_split(repeats: int = 3) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    source = CACHE / "ninety-minutes.mp3"
    if not source.exists():
        ninety_minute_mp3(source)
    with tempfile.TemporaryDirectory() as temp:
        work = Path(temp)
        copy_command = [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-i",
            str(source),
            "-c",
            "copy",
            str(work / "copy.mp3"),
        ]
        copy_s = _best_of(repeats, lambda: subprocess.run(copy_command, check=True))
        parts: list[Part] = []
        split_s = _best_of(
            repeats,
            lambda: parts.extend(
                split_into_parts(source, duration_s=5400, part_s=2700, work_dir=work)
            ),
        )
    print(
        f"\nsplit a 90-minute MP3 into {len(parts) // repeats} parts: {split_s:.3f} s; "
        f"plain copy: {copy_s:.3f} s (best of {repeats}); ratio {split_s / copy_s:.2f} "
        "(target ≤ 2)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args()
    bench_analysis(args.minutes * 60)
    bench_split()


if __name__ == "__main__":
    main()
