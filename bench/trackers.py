"""`make bench-web`, its trackers part: what counting 20 trackers adds to a call's
analysis. A generated 5-minute stereo call goes through the whole analysis (decoding,
speakers, ASR with the bundled model on CPU, the sample script and table); then 20
trackers of five phrases each (some said in the call, most not) are counted on its
transcript, as the analyzer counts them on every call. Target: ≤ 2 % of the analysis.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from bench.analyze import CLIENT_LINES, MANAGER_LINES, conversation
from bench.calls import generated
from services.analyzer import evaluate
from services.analyzer.asr import WhisperTranscriber
from services.analyzer.pipeline import Listening, transcribe_call
from services.analyzer.roles import RoleHints
from services.analyzer.voice_encoder import VoiceEncoder
from services.ingest.backoffice.samples import SAMPLE_TABLE, SAMPLE_TEMPLATE
from shared.results import TemplateRef
from shared.scripts import Tracker

DURATION_S = 300.0
TRACKERS = 20
TARGET_SHARE = 0.02
NOT_SAID = [
    "too expensive for us",
    "cancel the order",
    "speak to your manager",
    "not interested at all",
    "send a complaint",
    "a better price elsewhere",
    "terrible service",
    "refund my money",
]


def trackers() -> dict[str, Tracker]:
    """Twenty trackers: each two phrases of the call's lines (said or not in this call)
    and three that nobody says, every speaker kind and some with a time window."""
    lines = MANAGER_LINES + CLIENT_LINES
    made = {}
    for index in range(TRACKERS):
        words = lines[index % len(lines)].rstrip(".?!,").split()
        said = [" ".join(words[:3]), " ".join(words[-2:])]
        unsaid = [NOT_SAID[(index + k) % len(NOT_SAID)] for k in range(3)]
        made[f"trk_{index}"] = Tracker(
            name=f"Словарь {index + 1}",
            phrases=said + unsaid,
            speaker=("any", "manager", "client")[index % 3],
            within_s=60.0 if index % 5 == 0 else None,
        )
    return made


def measure(rounds: int = 5) -> None:
    source, _ = generated("stereo-5min", conversation(DURATION_S, 5), duration_s=DURATION_S)
    listening = Listening(
        WhisperTranscriber("tiny.en", device="cpu", compute_type="int8"),
        VoiceEncoder(),
        RoleHints(),
    )
    ref: TemplateRef = {"id": "bench", "name": SAMPLE_TEMPLATE.name, "version": 1}
    with tempfile.TemporaryDirectory() as temp:
        started = time.perf_counter()
        transcription = transcribe_call(
            source, channels=2, duration_s=DURATION_S, listening=listening, work_dir=Path(temp)
        )
        evaluate.checklist("bench", ref, SAMPLE_TEMPLATE, transcription)
        evaluate.table_row("bench", SAMPLE_TABLE, transcription)
        analysis_s = time.perf_counter() - started
    counted = trackers()
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        hits = evaluate.trackers_hits(counted, transcription)
        times.append(time.perf_counter() - started)
    counting_s = statistics.median(times)
    print(
        f"\ntrackers: {TRACKERS} trackers of 5 phrases counted on a {DURATION_S / 60:.0f}-minute "
        f"call ({len(transcription.utterances)} lines, {len(hits)} trackers said)"
    )
    print(
        f"  counting {counting_s * 1000:.0f} ms against the call's analysis {analysis_s:.1f} s: "
        f"{counting_s / analysis_s:.2%} (target ≤ {TARGET_SHARE:.0%})"
    )


if __name__ == "__main__":
    measure()
