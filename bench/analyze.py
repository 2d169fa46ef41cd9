"""`make bench-analyze`: analysis speed, who-spoke-when on mono calls, echo, splitting, and
hearing the script's words in Russian and English.

1. A generated 10-minute Russian stereo call (Festival's Russian voice and its twin,
   lines alternating between the manager on the left and the client on the right)
   through the whole analysis with the default model (the shipped multilingual Whisper
   base) on CPU (int8): seconds of processing per second of audio, overall and per
   stage, and the process's peak memory. Targets: ≤ 0.06 s/s overall; everything except
   ASR ≤ 10 %.
2. The same conversation as a 10-minute mono mix (8 kHz G.711): the speakers stage
   (embeddings, clustering, roles) in seconds per audio second, against the ASR's own.
   Target: ≤ 0.02 s/s and no more than the ASR.
3. A set of generated mono calls (two clearly different espeak-ng voices each, never the
   same pair, several codecs, half with pink noise at 20 dB SNR): the share of speech
   time given to the right speaker (manager or client, roles included), heard by tiny.en.
   Target: ≥ 95 %. Then Russian mono calls of one voice (messages left on a machine,
   Festival's Russian voice at eight pitches): how many are heard as one voice. Target: all.
4. Stereo calls whose sides leak into each other at -24 dB (three codecs): the talk
   ratio's error against the same call without the leak, before and after the echo is
   removed.
5. Splitting a generated 90-minute MP3 into 45-minute parts, against a plain
   `ffmpeg -i in.mp3 -c copy out.mp3` of the same file. Target: ≤ 2× the copy.
6. The script's phrases on a Russian and an English set of telephone-band calls
   (`bench/phrases.py`): word error rate, recall, false hits, stage verdicts and ASR time
   per model and decoding variant, in the same run. Targets: WER ≤ 12 % (Russian),
   recall ≥ 95 %, false hits ≤ 1 %, every verdict right.
7. The downloader's decoding pass that tells a file's real length, on a 60-minute MP3
   (the 10-minute call six times), against that call's analysis.
"""

from __future__ import annotations

import argparse
import random
import resource
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.calls import CACHE, generated
from bench.phrases import ENGLISH, RUSSIAN, bench_phrases
from devtools.samples import Line, Speaker, Spoken, Voices, one_after_another, write_tone
from services.analyzer import evaluate
from services.analyzer.asr import WhisperTranscriber
from services.analyzer.audio import Part, decode_channels, split_into_parts
from services.analyzer.echo import remove_echo
from services.analyzer.pipeline import Listening, Transcription, transcribe_call
from services.analyzer.roles import RoleHints
from services.analyzer.talk import speech_intervals, talk_metrics
from services.analyzer.voice_encoder import VoiceEncoder
from services.ingest.backoffice.samples import SAMPLE_TABLE, SAMPLE_TEMPLATE
from shared.media import decoded_duration_s
from shared.results import TemplateRef
from shared.settings import Settings

GREETING = "Good afternoon, my name is Anna, calling from the flower company."
MANAGER_LINES = [
    "Is it convenient for you to talk now?",
    "What are you looking for this season?",
    "We offer fresh flowers with delivery every morning.",
    "What budget do you have in mind for the office?",
    "I will call you back on Thursday with the offer.",
    "How many offices do you have in the city?",
    "Let me send you our catalogue by email today.",
    "Our florists can design a bouquet for every room.",
    "Do you prefer roses or something more seasonal?",
    "The first week of delivery is free of charge.",
    "Who else takes part in this decision on your side?",
    "We work with three banks and a large hotel nearby.",
    "Could you tell me when your current contract ends?",
    "I understand, price matters a lot these days.",
    "We can also take care of plants in pots.",
    "Shall I book a short meeting at your office next week?",
    "Our prices start at two thousand per bouquet.",
    "Thank you, that is very helpful to know.",
    "I can prepare two options with different prices.",
]
CLIENT_LINES = [
    "Yes, I have a minute.",
    "We need flowers for our reception every week.",
    "Our budget is about five hundred thousand.",
    "We also talk to a competitor, to be honest.",
    "Thursday works for me, thank you.",
    "Three offices, all of them downtown.",
    "Sure, send it over.",
    "Right now we buy flowers from a small shop.",
    "My director makes the final decision.",
    "Roses are fine, but not only red ones.",
    "The contract ends in March, I think.",
    "How long does the delivery usually take?",
    "That sounds a bit expensive for us.",
    "Can you call me after lunch instead?",
    "We had problems with wilted flowers before.",
    "I need to discuss it with my colleagues.",
    "Do you also deliver on weekends?",
    "Okay, let us try it for one month.",
    "Please write down my email address.",
]
# (voices, sample rate, encoding, noise SNR): every pair clearly different, never repeated.
MONO_SET = [
    (Voices("en-us+m1", "en-gb+f2"), 8000, "ulaw", None),
    (Voices("en-gb+m3", "en-us+f1"), 8000, "alaw", 20.0),
    (Voices("en-us+m2", "en-gb-scotland+m5"), 8000, "gsm", None),
    (Voices("en-us+f3", "en-gb+m6"), 16000, "opus", 20.0),
    (Voices("en-gb-x-rp+m7", "en-us+f4"), 8000, "mp3-32k", 20.0),
    (Voices("en-029+m4", "en-us+f2"), 16000, None, None),
    (Voices("en-us+m5", "en-gb-x-rp+f3"), 8000, "gsm", 20.0),
    (Voices("en-gb+f4", "en-us+m3"), 8000, "mp3-32k", None),
    (Voices("en-gb-scotland+f2", "en-us+m7"), 16000, None, 20.0),
    (Voices("en-us+m6", "en-029+f1"), 8000, "alaw", 20.0),
    (Voices("en-us+f1", "en-gb-scotland+m2"), 8000, "opus", 20.0),
    (Voices("en-us+m4", "en-gb+m1"), 8000, "ulaw", 20.0),
]
ECHO_SET = [("mp3", None, 16000), ("wav", "ulaw", 8000), ("ogg", "opus", 16000)]
SUFFIX = {"ulaw": "wav", "alaw": "wav", "gsm": "wav", "opus": "ogg"}


def _spoken_s(text: str) -> float:
    """How long espeak-ng takes to say a line at 150 words per minute (measured on the
    lines above: 0.72 s plus 0.29 s a word, its own leading and trailing silence included)."""
    return 0.72 + 0.29 * len(text.split())


def conversation(duration_s: float, seed: int) -> list[Line]:
    """The client answers, the manager introduces themself, then they take turns: most
    after a pause, one in four with none (the next voice starts as the last one ends)."""
    rng = random.Random(seed)
    manager, client = MANAGER_LINES[:], CLIENT_LINES[:]
    rng.shuffle(manager)
    rng.shuffle(client)
    lines: list[Line] = [("client", 1.0, "Hello?"), ("manager", 2.5, GREETING)]
    speaker: Speaker
    start_s = 2.5 + _spoken_s(GREETING) + 0.6
    turn = 0
    while start_s < duration_s - 8:
        speaker, pool = ("client", client) if turn % 2 == 0 else ("manager", manager)
        text = pool[(turn // 2) % len(pool)]
        lines.append((speaker, start_s, text))
        pause_s = rng.uniform(-0.3, -0.1) if rng.random() < 0.25 else rng.uniform(0.3, 1.0)
        start_s += _spoken_s(text) + pause_s
        turn += 1
    return lines


# The Russian conversation's voices: Festival's Russian voice, a little lower, and its twin.
RUSSIAN_VOICES = Voices("festival:ru@0.97", "festival:ru@1.25")


def russian_conversation(duration_s: float, seed: int) -> list[Line]:
    """A Russian call (`bench/phrases.py`'s talk and script lines) of about `duration_s`,
    spoken by RUSSIAN_VOICES: the client answers, then they take turns, most after a
    pause, one in four with none."""
    rng = random.Random(seed)
    manager = [*RUSSIAN.script.values(), *RUSSIAN.manager_talk]
    client = RUSSIAN.client_talk[:]
    rng.shuffle(manager)
    rng.shuffle(client)
    said: list[tuple[Speaker, str]] = [("client", RUSSIAN.answer)]
    while len(said) < duration_s / 2:  # more than fit: a line lasts longer than 2 s
        turn = len(said)
        speaker: Speaker = "manager" if turn % 2 else "client"
        pool = manager if turn % 2 else client
        said.append((speaker, pool[(turn // 2) % len(pool)]))
    lines, _ = one_after_another(
        said,
        RUSSIAN_VOICES,
        pause_s=lambda: rng.uniform(-0.3, -0.1) if rng.random() < 0.25 else rng.uniform(0.3, 1.0),
    )
    return [line for line in lines if line[1] < duration_s - 4]


def _listening(transcriber: WhisperTranscriber, encoder: VoiceEncoder) -> Listening:
    cues = Settings().role_cues
    return Listening(transcriber, encoder, RoleHints(cue_phrases=cues))


def bench_stereo(listening: Listening, duration_s: float) -> Path:
    source, _ = generated(
        "stereo-ru",
        russian_conversation(duration_s, 1),
        duration_s=duration_s,
        voices=RUSSIAN_VOICES,
    )
    with tempfile.TemporaryDirectory() as temp:
        started = time.perf_counter()
        transcription = transcribe_call(
            source, channels=2, duration_s=duration_s, listening=listening, work_dir=Path(temp)
        )
        scoring_started = time.perf_counter()
        ref: TemplateRef = {"id": "bench", "name": SAMPLE_TEMPLATE.name, "version": 1}
        evaluate.checklist("bench", ref, SAMPLE_TEMPLATE, transcription)
        evaluate.table_row("bench", SAMPLE_TABLE, transcription)
        finished = time.perf_counter()
    stages = {**transcription.stage_seconds, "scoring": finished - scoring_started}
    total = finished - started
    print(
        f"\n1. analysis of a {duration_s / 60:.0f}-minute Russian stereo call "
        f"({len(transcription.utterances)} lines), the multilingual base int8 on CPU"
    )
    _stage_table(stages, total, duration_s)
    print(f"whole analysis: {total / duration_s:.3f} s per audio second (target ≤ 0.06)")
    print(f"everything except ASR: {1 - stages['asr'] / total:.1%} of the total (target ≤ 10 %)")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of the process (models loaded, this call analysed): {peak_mb:.0f} MB")
    return source


def bench_real_length(listening: Listening, ten_minutes: Path) -> None:
    """The downloader's decoding pass on a 60-minute MP3, against that call's analysis."""
    hour = CACHE / "hour-ru.mp3"
    if not hour.exists():
        listing = CACHE / "hour-ru.txt"
        listing.write_text(f"file '{ten_minutes.resolve()}'\n" * 6)
        subprocess.run(
            [
                *("ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "concat", "-safe", "0"),
                *("-i", str(listing), "-c", "copy", str(hour)),
            ],
            check=True,
        )
    started = time.perf_counter()
    length_s = decoded_duration_s(hour)
    decode_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as temp:
        started = time.perf_counter()
        transcribe_call(
            hour, channels=2, duration_s=length_s, listening=listening, work_dir=Path(temp)
        )
        analysis_s = time.perf_counter() - started
    print(
        f"\n7. knowing the real length of a {length_s / 60:.0f}-minute stereo MP3: "
        f"{decode_s:.2f} s of decoding, {decode_s / analysis_s:.1%} of that call's "
        f"{analysis_s:.0f} s analysis"
    )


def _stage_table(stages: dict[str, float], total: float, duration_s: float) -> None:
    print(f"{'stage':10} {'seconds':>8} {'s per audio s':>14} {'share':>7}")
    for stage, seconds in stages.items():
        print(f"{stage:10} {seconds:8.2f} {seconds / duration_s:14.4f} {seconds / total:7.1%}")
    print(f"{'total':10} {total:8.2f} {total / duration_s:14.4f}")


def bench_mono(listening: Listening, duration_s: float) -> None:
    source, _ = generated(
        "mono-ru",
        russian_conversation(duration_s, 1),
        container="wav",
        duration_s=duration_s,
        stereo=False,
        sample_rate_hz=8000,
        voices=RUSSIAN_VOICES,
        encoding="ulaw",
    )
    with tempfile.TemporaryDirectory() as temp:
        started = time.perf_counter()
        transcription = transcribe_call(
            source, channels=1, duration_s=duration_s, listening=listening, work_dir=Path(temp)
        )
        total = time.perf_counter() - started
    stages = transcription.stage_seconds
    print(f"\n2. a {duration_s / 60:.0f}-minute mono call (8 kHz G.711 μ-law), same conversation")
    _stage_table(stages, total, duration_s)
    print(
        f"speakers (embeddings, clustering, roles): {stages['speakers'] / duration_s:.4f} s per "
        f"audio second = {stages['speakers'] / stages['asr']:.2f}× the ASR's "
        f"{stages['asr'] / duration_s:.4f} (target ≤ 0.02 and ≤ 1×); roles by "
        f"{transcription.roles.method}, confidence {transcription.roles.confidence:.2f}"
    )


def _attribution(transcription: Transcription, layout: list[Spoken]) -> tuple[float, float]:
    """Seconds of speech (heard by the VAD, spoken by one person) given to the right side,
    and all such seconds; on a 10 ms grid."""
    end_s = max(line.end_s for line in layout)
    grid = np.arange(0.0, end_s, 0.01)
    truth = np.full(len(grid), "", dtype=object)
    for line in layout:
        inside = (grid >= line.start_s) & (grid < line.end_s)
        truth[inside] = np.where(truth[inside] == "", line.speaker, "both")
    heard = np.full(len(grid), "", dtype=object)
    for side, intervals in transcription.speech.items():
        for start_s, end_s in intervals:
            heard[(grid >= start_s) & (grid < end_s)] = side
    counted = np.isin(truth, ["manager", "client"]) & (heard != "")
    return float(np.sum(counted & (truth == heard))) * 0.01, float(np.sum(counted)) * 0.01


def bench_mono_set(listening: Listening) -> None:
    print(f"\n3. who spoke when on {len(MONO_SET)} generated mono calls (roles included)")
    print(f"{'voices':34} {'codec':8} {'noise':>5} {'roles':>10} {'right':>7}")
    right_s = total_s = 0.0
    for index, (voices, rate, encoding, noise) in enumerate(MONO_SET):
        duration_s = 60.0 + 15 * (index % 5)
        source, layout = generated(
            f"mono-set-{index}",
            conversation(duration_s, 100 + index),
            container=SUFFIX.get(encoding or "", "mp3"),
            duration_s=duration_s,
            stereo=False,
            sample_rate_hz=rate,
            voices=voices,
            encoding=encoding,
            noise_snr_db=noise,
        )
        with tempfile.TemporaryDirectory() as temp:
            transcription = transcribe_call(
                source, channels=1, duration_s=duration_s, listening=listening, work_dir=Path(temp)
            )
        right, counted = _attribution(transcription, layout)
        right_s, total_s = right_s + right, total_s + counted
        print(
            f"{voices.manager + ' / ' + voices.client:34} {encoding or 'mp3':8} "
            f"{noise or 0:5.0f} {transcription.roles.method:>10} {right / counted:7.1%}"
        )
    print(f"speech time given to the right speaker: {right_s / total_s:.1%} (target ≥ 95 %)")


# Messages left on a machine: (voice, codec).
ONE_VOICE_SET = [
    (f"festival:ru@{shift}", "ulaw" if index % 2 else "gsm")
    for index, shift in enumerate((0.9, 0.95, 1.0, 1.05, 1.1, 1.2, 1.27, 1.32))
]


def bench_one_voice(listening: Listening) -> None:
    """Mono calls where only the manager speaks: how many are heard as one voice."""
    one = 0
    for index, (voice, encoding) in enumerate(ONE_VOICE_SET):
        said: list[tuple[Speaker, str]] = [
            ("manager", line) for line in [*RUSSIAN.script.values(), *RUSSIAN.manager_talk]
        ][index % 4 : index % 4 + 4 + index % 5]
        voices = Voices(voice, voice)
        lines, duration_s = one_after_another(said, voices)
        source, _ = generated(
            f"one-voice-{index}",
            lines,
            container="wav",
            duration_s=duration_s,
            stereo=False,
            sample_rate_hz=8000,
            voices=voices,
            encoding=encoding,
        )
        with tempfile.TemporaryDirectory() as temp:
            transcription = transcribe_call(
                source, channels=1, duration_s=duration_s, listening=listening, work_dir=Path(temp)
            )
        one += not transcription.speech["client"]
    print(
        f"mono calls of one voice (Festival's Russian at {len(ONE_VOICE_SET)} pitches, "
        f"4 to 8 lines): {one} of {len(ONE_VOICE_SET)} heard as one voice (target: all)"
    )


def _ratio(source: Path, *, without_echo: bool) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as temp:
        manager, client = decode_channels(source, channels=2, work_dir=Path(temp))
    if without_echo:
        manager, client = remove_echo(manager, client)
    metrics = talk_metrics(
        speech_intervals(manager),
        speech_intervals(client),
        duration_s=len(manager) / 16000,
        manager_words=0,
    )
    return metrics.talk_ratio or 0.0, metrics.interruptions


def bench_echo() -> None:
    print("\n4. stereo calls leaking each side into the other at -24 dB (40 ms late)")
    print(f"{'codec':6} {'clean':>6} {'leaky':>6} {'error':>6} {'removed':>8} {'error':>6}")
    errors_before, errors_after = [], []
    lines = conversation(90.0, 7)
    for container, encoding, rate in ECHO_SET:
        sound: dict[str, Any] = {
            "duration_s": 90.0,
            "sample_rate_hz": rate,
            "voices": Voices("en-us+m3", "en-gb+f2"),
            "encoding": encoding,
        }
        clean, _ = generated("echo-clean", lines, container=container, **sound)
        leaky, _ = generated("echo-24", lines, container=container, **sound, leak_db=-24.0)
        reference, interruptions_clean = _ratio(clean, without_echo=False)
        before, interruptions_before = _ratio(leaky, without_echo=False)
        after, interruptions_after = _ratio(leaky, without_echo=True)
        errors_before.append(abs(before - reference))
        errors_after.append(abs(after - reference))
        print(
            f"{encoding or 'mp3':6} {reference:6.3f} {before:6.3f} {before - reference:+6.3f} "
            f"{after:8.3f} {after - reference:+6.3f}   interruptions "
            f"{interruptions_before} → {interruptions_after} (without the leak: "
            f"{interruptions_clean})"
        )
    print(
        f"talk-ratio error, mean: {np.mean(errors_before):.3f} with the echo, "
        f"{np.mean(errors_after):.3f} once it is removed"
    )


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
        write_tone(source, sample_rate_hz=8000, channels=1, duration_s=5400)
    with tempfile.TemporaryDirectory() as temp:
        work = Path(temp)
        copy_command = [
            *("ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(source)),
            *("-c", "copy", str(work / "copy.mp3")),
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
        f"\n5. split a 90-minute MP3 into {len(parts) // repeats} parts: {split_s:.3f} s; "
        f"plain copy: {copy_s:.3f} s (best of {repeats}); ratio {split_s / copy_s:.2f} "
        "(target ≤ 2)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument(
        "--quick", action="store_true", help="the phrases sets with the default decoding only"
    )
    args = parser.parse_args()
    encoder = VoiceEncoder()
    default = Settings().asr_model
    listening = _listening(WhisperTranscriber(default, device="cpu", compute_type="int8"), encoder)
    ten_minutes = bench_stereo(listening, args.minutes * 60)
    bench_mono(listening, args.minutes * 60)
    english = _listening(WhisperTranscriber("tiny.en", device="cpu", compute_type="int8"), encoder)
    bench_mono_set(english)
    bench_one_voice(listening)
    bench_echo()
    bench_split()
    bench_phrases(encoder, RUSSIAN, quick=args.quick)
    bench_phrases(encoder, ENGLISH, quick=args.quick)
    bench_real_length(listening, ten_minutes)


if __name__ == "__main__":
    main()
