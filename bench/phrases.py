"""Hearing the script's words on telephone audio: part of `make bench-analyze`.

A generated set of 8 kHz calls (G.711 μ-law and A-law, GSM, 32 kbit/s MP3; two in three
with pink noise at 20 dB SNR; clearly different voice pairs). In half of them the
manager says each of the script's eight phrases, between lines of unrelated talk; in the
other half the manager says near misses instead (the same ideas in other words). Four
of the calls run five minutes, the phrases far apart.

Each decoding variant transcribes the whole set in the same run; printed: phrase recall
(spoken phrases the matcher finds, said by the manager), false hits (phrases found in
calls where they were not said) and the ASR's seconds.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.calls import generated
from devtools.samples import Line, Speaker, Voices
from services.analyzer.asr import Decoding, Identified, Transcribed, WhisperTranscriber
from services.analyzer.audio import Samples
from services.analyzer.phrases import find_phrase, tokenize
from services.analyzer.pipeline import Listening, transcribe_call
from services.analyzer.roles import RoleHints
from services.analyzer.voice_encoder import VoiceEncoder
from shared.results import LanguageCode
from shared.settings import Settings

SCRIPT = {
    "flower company": "Good afternoon, my name is Anna from the flower company.",
    "convenient to talk": "Is it convenient to talk for a minute?",
    "what budget do you have": "What budget do you have for the office?",
    "schedule a meeting": "Let us schedule a meeting for next week.",
    "makes the decision": "Who makes the decision in your team?",
    "send you the offer": "I will send you the offer by email today.",
    "call you back": "I will call you back on Thursday morning.",
    "any other questions": "Do you have any other questions for me?",
}
NEAR_MISSES = [
    "Good afternoon, my name is Anna, I work with flowers.",
    "Is now a good moment for you?",
    "How much are you planning to spend on the office?",
    "We could meet sometime next week if you like.",
    "Who else is involved on your side?",
    "I will email you our prices today.",
    "I will phone again on Thursday morning.",
    "Is there anything else you want to know?",
]
MANAGER_TALK = [
    "We deliver fresh roses and tulips to offices across the city.",
    "Our florists prepare every bouquet early in the morning.",
    "Many of our clients order flowers for their reception desk.",
    "The delivery is free for orders above ten thousand.",
    "We also take care of plants in pots and change the water.",
    "Seasonal flowers last longer and cost a little less.",
    "Our drivers arrive before nine so the office looks fresh.",
    "You can change the order at any time by phone or email.",
    "Last year we worked with three banks and two hotels.",
    "We can add a small card with your company logo.",
]
CLIENT_TALK = [
    "Yes, I am listening.",
    "We have a reception on the ground floor.",
    "Right now we buy flowers from a small shop nearby.",
    "Our director likes white roses.",
    "The office is open from nine to six.",
    "We had problems with wilted flowers before.",
    "That sounds interesting.",
    "How long does the delivery take?",
    "We are about forty people here.",
    "Do you deliver on weekends?",
]
VOICES = [
    Voices("en-us+m3", "en-gb+f2"),
    Voices("en-gb+m5", "en-us+f1"),
    Voices("en-us+m2", "en-gb-scotland+f3"),
    Voices("en-gb-x-rp+m7", "en-us+f4"),
    Voices("en-029+m4", "en-us+f2"),
    Voices("en-us+m6", "en-gb+f1"),
    Voices("en-us-nyc+m1", "en-gb+f4"),
    Voices("en-gb-scotland+m2", "en-us+f3"),
]
CODECS = [
    ("ulaw", "wav", True),
    ("alaw", "wav", True),
    ("gsm", "wav", False),
    ("mp3-32k", "mp3", True),
]


@dataclass(frozen=True)
class Call:
    """One generated call of the set."""

    index: int
    with_phrases: bool
    voices: Voices
    encoding: str
    container: str
    stereo: bool
    noise_snr_db: float | None
    talk_between: int  # lines of unrelated talk between two script lines, each side

    @property
    def long(self) -> bool:
        return self.talk_between > 1


def telephone_set() -> list[Call]:
    """24 calls of about 2 minutes, and 4 of about 5 minutes."""
    calls = []
    for index in range(28):
        encoding, container, stereo = CODECS[index % len(CODECS)]
        calls.append(
            Call(
                index=index,
                with_phrases=index % 2 == 0 if index >= 24 else index < 12,
                voices=VOICES[index % len(VOICES)],
                encoding=encoding,
                container=container,
                stereo=stereo,
                noise_snr_db=None if index % 3 == 0 else 20.0,
                talk_between=5 if index >= 24 else 1,
            )
        )
    return calls


def layout(call: Call) -> tuple[list[Line], float]:
    """The call's lines (timed by how long espeak-ng speaks them) and its length."""
    rng = random.Random(call.index)
    manager_talk, client_talk = MANAGER_TALK[:], CLIENT_TALK[:]
    rng.shuffle(manager_talk)
    rng.shuffle(client_talk)
    lines: list[Line] = []
    start_s = 1.0

    def say(speaker: Speaker, text: str) -> None:
        nonlocal start_s
        lines.append((speaker, start_s, text))
        start_s += 0.72 + 0.29 * len(text.split()) + rng.uniform(0.4, 1.0)

    say("client", "Hello?")
    talk = 0
    for script_line in SCRIPT.values() if call.with_phrases else NEAR_MISSES:
        say("manager", script_line)
        say("client", client_talk[talk % len(client_talk)])
        for _ in range(call.talk_between):
            talk += 1
            say("manager", manager_talk[talk % len(manager_talk)])
            say("client", client_talk[talk % len(client_talk)])
    return lines, start_s + 2.0


class TimedTranscriber:
    """A WhisperTranscriber that adds up the CPU seconds it spends (steadier than the
    clock on a shared machine)."""

    def __init__(self, transcriber: WhisperTranscriber) -> None:
        self.transcriber = transcriber
        self.seconds = 0.0

    def identify(self, audio: Samples) -> Identified | None:
        started = time.process_time()
        try:
            return self.transcriber.identify(audio)
        finally:
            self.seconds += time.process_time() - started

    def transcribe(
        self, audio: Samples, *, language: LanguageCode | None, vocabulary: Sequence[str] = ()
    ) -> Transcribed:
        started = time.process_time()
        try:
            return self.transcriber.transcribe(audio, language=language, vocabulary=vocabulary)
        finally:
            self.seconds += time.process_time() - started


# What the bench compares; "defaults" is what `shared/settings.py` ships.
VARIANTS = {
    "before (fallback, no bias)": Decoding(temperature_fallback=True, no_repeat_ngram_size=0),
    "defaults": Decoding(),
    "defaults + fallback": Decoding(temperature_fallback=True),
    "defaults + bias": Decoding(bias=True),
    "defaults + bias + fallback": Decoding(bias=True, temperature_fallback=True),
    "defaults + condition": Decoding(condition_on_previous_text=True),
}


@dataclass
class _Tally:
    listening: Listening
    timed: TimedTranscriber
    found: int = 0
    found_exactly: int = 0  # word by word, without the whole-phrase tolerance
    said: int = 0
    found_long: int = 0
    said_long: int = 0
    false_hits: int = 0
    not_said: int = 0


def bench_phrases(encoder: VoiceEncoder) -> None:
    """Print recall, false hits and ASR time per variant over the telephone set; the
    variants take turns call by call, so a slower stretch of the machine hits all alike."""
    calls = telephone_set()
    sources = {call.index: _source(call) for call in calls}
    cues = Settings().role_cues
    phrases = tuple(SCRIPT)
    tallies = {}
    for name, decoding in VARIANTS.items():
        timed = TimedTranscriber(
            WhisperTranscriber("tiny.en", device="cpu", compute_type="int8", decoding=decoding)
        )
        hints = RoleHints(cue_phrases=cues, script_phrases=phrases)
        tallies[name] = _Tally(Listening(timed, encoder, hints, vocabulary=phrases + cues), timed)
    for call in calls:
        source, duration_s = sources[call.index]
        for tally in tallies.values():
            with tempfile.TemporaryDirectory() as temp:
                result = transcribe_call(
                    source,
                    channels=2 if call.stereo else 1,
                    duration_s=duration_s,
                    listening=tally.listening,
                    work_dir=Path(temp),
                )
            tokens = tokenize(result.utterances)
            hits = sum(find_phrase(p, tokens, speaker="manager") is not None for p in phrases)
            exact = sum(
                find_phrase(p, tokens, speaker="manager", whole=False) is not None for p in phrases
            )
            if call.with_phrases:
                tally.found, tally.said = tally.found + hits, tally.said + len(phrases)
                tally.found_exactly += exact
                if call.long:
                    tally.found_long += hits
                    tally.said_long += len(phrases)
            else:
                tally.false_hits, tally.not_said = (
                    tally.false_hits + hits,
                    tally.not_said + len(phrases),
                )
    print(
        f"\n6. the script's phrases on {len(calls)} telephone-band calls "
        f"({sum(c.with_phrases for c in calls)} say them, the others say near misses; "
        f"{sum(c.long for c in calls)} run 5 minutes)"
    )
    print(
        f"{'decoding':28} {'recall':>7} {'exact':>6} {'long':>6} {'false':>6} "
        f"{'ASR cpu s':>9} {'vs before':>9}"
    )
    before_s = next(iter(tallies.values())).timed.seconds
    for name, tally in tallies.items():
        print(
            f"{name:28} {tally.found / tally.said:7.1%} {tally.found_exactly / tally.said:6.1%} "
            f"{tally.found_long / tally.said_long:6.0%} "
            f"{tally.false_hits / tally.not_said:6.1%} {tally.timed.seconds:9.1f} "
            f"{tally.timed.seconds / before_s - 1:+9.0%}"
        )
    print(
        "exact: found word by word, without the matcher's whole-phrase tolerance\n"
        "targets: recall ≥ 95 %, false hits ≤ 1 %, ASR at most 10 % slower than without bias"
    )


def _source(call: Call) -> tuple[Path, float]:
    lines, duration_s = layout(call)
    path, _ = generated(
        f"phrases-{call.index}",
        lines,
        container=call.container,
        duration_s=duration_s,
        stereo=call.stereo,
        sample_rate_hz=8000,
        voices=call.voices,
        encoding=call.encoding,
        noise_snr_db=call.noise_snr_db,
    )
    return path, duration_s
