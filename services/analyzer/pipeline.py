"""From a stored recording to a transcript and talk metrics (CPU-bound: runs in a worker thread).

Stereo: the manager on one channel, the client on the other; each channel loses the
other side's echo, then gets its speech found and recognised. Mono: the one channel's
speech is recognised, split between two voices by speaker embeddings, and the roles
(which voice is the manager) are decided from the manager's voiceprint, cues in the
transcript, or talk share. Either way the result is one timeline of utterances by
speaker, the speech of each side, and the talk metrics.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from services.analyzer.asr import Transcriber, utterances_of
from services.analyzer.audio import SAMPLE_RATE_HZ, Part, Samples, decode_channels, split_into_parts
from services.analyzer.echo import remove_echo
from services.analyzer.language import StreamLanguage, asked_language, call_language
from services.analyzer.roles import STEREO, RoleHints, Roles, decide_roles
from services.analyzer.speakers import SpeechEmbeddings, Voice, diarize, embed_speech
from services.analyzer.talk import Interval, TalkMetrics, speech_intervals, talk_metrics
from services.analyzer.transcript import SpeakerName, Utterance, Word
from services.analyzer.voice_encoder import VoiceEncoder
from shared.results import CallLanguage, LanguageSetting

SIDES: tuple[SpeakerName, SpeakerName] = ("manager", "client")


@dataclass
class Transcription:
    """Everything the scoring needs from the audio, with the time each stage took.

    `voices` holds each side's voice embedding where it was computed (mono calls, and
    stereo calls when voiceprints are learnt).
    """

    utterances: list[Utterance]
    metrics: TalkMetrics
    parts: list[Part]
    roles: Roles
    speech: dict[SpeakerName, list[Interval]]
    language: CallLanguage | None  # None: a call analysed before languages were recorded
    voices: dict[SpeakerName, Voice] = field(default_factory=dict)
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


@dataclass(frozen=True)
class _Piece:
    """A region of a stream's speech in the joined audio the ASR hears."""

    joined_start_s: float
    stream_start_s: float
    duration_s: float


def _speech_only(audio: Samples, speech: list[Interval]) -> tuple[Samples, list[_Piece]]:
    """Join the speech of a stream, each region followed by a little silence."""
    separator = np.zeros(int(ASR_SEPARATOR_S * SAMPLE_RATE_HZ), dtype=np.float32)
    chunks: list[Samples] = []
    pieces: list[_Piece] = []
    joined_s = 0.0
    for start_s, end_s in _asr_regions(speech, len(audio) / SAMPLE_RATE_HZ):
        chunk = audio[int(start_s * SAMPLE_RATE_HZ) : int(end_s * SAMPLE_RATE_HZ)]
        chunks += [chunk, separator]
        pieces.append(_Piece(joined_s, start_s, len(chunk) / SAMPLE_RATE_HZ))
        joined_s += (len(chunk) + len(separator)) / SAMPLE_RATE_HZ
    joined = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    return joined, pieces


def _in_stream(word: Word, pieces: list[_Piece], offset_s: float) -> Word:
    """A word timed in the joined speech, timed in the stream it was cut from (plus
    `offset_s`). Whisper often starts a word in the silence before it and ends one in
    the silence after it: a start in the silence between two regions is the next
    region's start, an end there is its region's end."""
    starts = [piece.joined_start_s for piece in pieces]

    def mapped(time_s: float, *, start: bool) -> float:
        index = max(bisect.bisect_right(starts, time_s) - 1, 0)
        piece = pieces[index]
        into_s = time_s - piece.joined_start_s
        if into_s <= piece.duration_s:
            return piece.stream_start_s + into_s
        if start and index + 1 < len(pieces):
            return pieces[index + 1].stream_start_s
        return piece.stream_start_s + piece.duration_s

    start_s = mapped(word.start_s, start=True)
    end_s = max(mapped(word.end_s, start=False), start_s)
    return Word(word.text, start_s + offset_s, end_s + offset_s)


def recognise(
    transcriber: Transcriber,
    audio: Samples,
    speech: list[Interval],
    *,
    setting: LanguageSetting | StreamLanguage,
    offset_s: float = 0.0,
    vocabulary: Sequence[str] = (),
) -> tuple[list[Word], StreamLanguage | None]:
    """Words of a stream, recognising only its speech; times are from the stream's start
    plus `offset_s` (the part's start in the call). `setting` is the call's language
    setting at the stream's first speech (the language is then identified and decided),
    the stream's language after it; the language is returned (None: no speech yet).

    The silence the VAD found is cut out before ASR (the model does not run its own VAD
    a second time), and every word time is mapped back.
    """
    joined, pieces = _speech_only(audio, speech)
    if not len(joined):
        return [], setting if isinstance(setting, StreamLanguage) else None
    if isinstance(setting, StreamLanguage):
        language = setting
        transcribed = transcriber.transcribe(joined, language=language.used, vocabulary=vocabulary)
    else:
        identified = transcriber.identify(joined)
        transcribed = transcriber.transcribe(
            joined, language=asked_language(setting, identified), vocabulary=vocabulary
        )
        language = StreamLanguage(transcribed.language, identified)
    return [_in_stream(word, pieces, offset_s) for word in transcribed.words], language


def _shifted(intervals: list[Interval], offset_s: float) -> list[Interval]:
    return [(start_s + offset_s, end_s + offset_s) for start_s, end_s in intervals]


def timeline(
    words: dict[SpeakerName, list[Word]], speech: dict[SpeakerName, list[Interval]]
) -> list[Utterance]:
    """Each side's words as lines (a line ends at its speaker's pause), in time order."""
    return sorted(
        (line for side in SIDES for line in utterances_of(words[side], side, speech[side])),
        key=lambda line: line.start_s,
    )


@dataclass(frozen=True)
class Listening:
    """How a call is heard: the models, and what the roles may be decided from."""

    transcriber: Transcriber
    encoder: VoiceEncoder
    hints: RoleHints = field(default_factory=RoleHints)
    # What the call's scripts and tables listen for: the ASR is biased towards it.
    vocabulary: tuple[str, ...] = ()
    manager_channel: Literal["left", "right"] = "left"
    # Stereo calls embed each side's voice only when voiceprints are learnt from them.
    embed_stereo_voices: bool = False
    # «Язык звонков»: the language calls are recognised in, or identified per call.
    language: LanguageSetting = "ru"


def transcribe_call(
    source: Path,
    *,
    channels: int,
    duration_s: float,
    listening: Listening,
    work_dir: Path,
    part_s: float = 2700.0,
) -> Transcription:
    """Split, decode, find speech and who speaks, recognise words; every time is absolute."""
    seconds: dict[str, float] = {}
    stereo = channels == 2
    streams: tuple[str, ...] = SIDES if stereo else ("mixed",)
    speech: dict[str, list[Interval]] = {stream: [] for stream in streams}
    words: dict[str, list[Word]] = {stream: [] for stream in streams}
    embedded: dict[str, list[SpeechEmbeddings]] = {stream: [] for stream in streams}
    languages: dict[str, StreamLanguage] = {}
    embed = not stereo or listening.embed_stereo_voices
    with _timed(seconds, "decode"):
        parts = split_into_parts(source, duration_s=duration_s, part_s=part_s, work_dir=work_dir)
    for part in parts:
        with _timed(seconds, "decode"):
            decoded = decode_channels(part.path, channels=channels, work_dir=work_dir)
        if stereo:
            if listening.manager_channel == "right":
                decoded.reverse()
            with _timed(seconds, "echo"):
                decoded = list(remove_echo(decoded[0], decoded[1]))
        with ThreadPoolExecutor(len(decoded)) as pool:
            # Silero and the ASR run the channels in parallel: each a thread of its own
            # costs less than the threads of one channel at a time.
            with _timed(seconds, "vad"):
                part_speech = list(pool.map(speech_intervals, decoded))
            with _timed(seconds, "asr"):
                recognising = [
                    pool.submit(
                        recognise,
                        listening.transcriber,
                        audio,
                        found,
                        setting=languages.get(stream, listening.language),
                        offset_s=part.offset_s,
                        vocabulary=listening.vocabulary,
                    )
                    for stream, audio, found in zip(streams, decoded, part_speech, strict=True)
                ]
                recognised = [future.result() for future in recognising]
        for stream, audio, found, (said, language) in zip(
            streams, decoded, part_speech, recognised, strict=True
        ):
            speech[stream] += _shifted(found, part.offset_s)
            words[stream] += said
            if language is not None:
                languages[stream] = language
            if embed:
                with _timed(seconds, "speakers"):
                    embedded[stream].append(
                        embed_speech(listening.encoder, audio, found, offset_s=part.offset_s)
                    )
        del decoded
    if stereo:
        heard = _Heard(
            words={side: words[side] for side in SIDES},
            speech={side: speech[side] for side in SIDES},
            roles=STEREO,
            voices={
                side: voice
                for side in SIDES
                if (voice := SpeechEmbeddings.joined(embedded[side]).voice()) is not None
            },
        )
    else:
        with _timed(seconds, "speakers"):
            heard = _mono(
                SpeechEmbeddings.joined(embedded["mixed"]), words["mixed"], listening.hints
            )
    metrics = talk_metrics(
        heard.speech["manager"],
        heard.speech["client"],
        duration_s=duration_s,
        manager_words=len(heard.words["manager"]),
        interruptions=heard.interruptions,
    )
    return Transcription(
        timeline(heard.words, heard.speech),
        metrics,
        parts,
        roles=heard.roles,
        speech=heard.speech,
        language=call_language(languages, speech, listening.language),
        voices=heard.voices,
        stage_seconds=seconds,
    )


@dataclass(frozen=True)
class _Heard:
    """What each side said and where they spoke, and how the sides were told apart."""

    words: dict[SpeakerName, list[Word]]
    speech: dict[SpeakerName, list[Interval]]
    roles: Roles
    voices: dict[SpeakerName, Voice]
    interruptions: int | None = None  # None: counted where the sides' speech overlaps


def _mono(embedded: SpeechEmbeddings, words: list[Word], hints: RoleHints) -> _Heard:
    """Split one channel between two voices, then name them manager and client."""
    diarization = diarize(embedded)
    voice_of_word = [diarization.voice_at((w.start_s + w.end_s) / 2) for w in words]
    said = [
        [word for word, voice in zip(words, voice_of_word, strict=True) if voice == index]
        for index in range(len(diarization.voices))
    ]
    roles = decide_roles(diarization.voices, said, hints)
    side: dict[int, SpeakerName] = {
        index: "manager" if index == roles.manager else "client"
        for index in range(len(diarization.voices))
    }
    return _Heard(
        words={
            name: [w for w, voice in zip(words, voice_of_word, strict=True) if side[voice] == name]
            for name in SIDES
        },
        speech={
            name: [
                interval
                for index, name_of in side.items()
                if name_of == name
                for interval in diarization.speech(index)
            ]
            for name in SIDES
        },
        roles=roles,
        voices={side[index]: voice for index, voice in enumerate(diarization.voices)},
        interruptions=diarization.changes_inside_speech(),
    )
