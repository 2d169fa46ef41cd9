"""Speech recognition behind a small interface: faster-whisper (CTranslate2) on CPU or GPU,
or an OpenAI-compatible transcription endpoint."""

from __future__ import annotations

import io
import itertools
import os
import re
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import openai
from faster_whisper import WhisperModel

from services.analyzer.audio import SAMPLE_RATE_HZ, Samples
from services.analyzer.hallucinations import is_hallucination
from services.analyzer.shipped_models import model_folder
from services.analyzer.transcript import SpeakerName, Utterance, Word
from shared.results import LANGUAGES, LanguageCode
from shared.settings import default_model_cache_dir

# Whisper segments can span long silences: a pause this long between words starts a new line.
UTTERANCE_PAUSE_S = 1.0
VAD_PAUSE_S = 0.5
# What an OpenAI-compatible endpoint takes as a prompt (224 tokens of Whisper's).
MAX_PROMPT_CHARS = 600
# Whisper identifies a language from its first window of audio.
IDENTIFY_S = 30.0
# How OpenAI-compatible endpoints name the languages they heard.
LANGUAGE_NAMES: dict[str, LanguageCode] = {"russian": "ru", "english": "en", "ru": "ru", "en": "en"}


@dataclass(frozen=True)
class Identified:
    """The likelier of the languages calls are recognised in, as the model heard it."""

    language: LanguageCode
    probability: float


@dataclass(frozen=True)
class Transcribed:
    """Words timed from the start of the samples, and the language they were heard in."""

    words: list[Word]
    language: LanguageCode


class Transcriber(Protocol):
    """Turns 16 kHz mono speech into words timed from the start of those samples."""

    def identify(self, audio: Samples) -> Identified | None:
        """Which of the calls' languages the speech is in (from its first 30 s); None
        where the model hears one language only or cannot tell apart from transcribing."""
        ...

    def transcribe(
        self, audio: Samples, *, language: LanguageCode | None, vocabulary: Sequence[str] = ()
    ) -> Transcribed:
        """Recognise the speech in `language` (None: the back end identifies it);
        `vocabulary` holds what the call's scripts and tables listen for (a bias, not a
        constraint)."""
        ...


@dataclass(frozen=True)
class Decoding:
    """How faster-whisper decodes, as measured best on telephone-band calls by
    `make bench-analyze` (docs/analysis.md, Telephone audio, has the numbers)."""

    # Measured with the multilingual base on the Russian and English telephone sets: a
    # beam of 5 finds the most phrases in both (Russian 100 % against greedy's 97.3 % in
    # one run, 96.4 % on another CPU), for 25-29 % more ASR time.
    beam_size: int = 5
    # The call's phrases as faster-whisper hotwords, in every 30 s window. With the base
    # model it hears fewer of the phrases said (Russian 90 %, English 83 %) and script
    # phrases nobody said (English 2.7 % false hits): off.
    bias: bool = False
    # Decoding a doubtful window again at higher temperatures: the same words here, once
    # repeated 3-grams are forbidden (which stops the loops it cured).
    temperature_fallback: bool = False
    no_repeat_ngram_size: int = 3
    # Conditioning on the previous window lets one mistake drift on (Russian WER 28 % →
    # 32 %).
    condition_on_previous_text: bool = False
    # A segment the model finds probably silent (and unsure of) is skipped, as Whisper
    # does; a segment compressing this well is a repetition loop and is dropped.
    no_speech_threshold: float = 0.6
    log_prob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4
    # Hotwords share the decoder's prompt with the text: kept to this many tokens.
    max_vocabulary_tokens: int = 96


TEMPERATURE_FALLBACK = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)

CYRILLIC = re.compile(r"[а-яё]", re.IGNORECASE)


def in_language(vocabulary: Sequence[str], language: LanguageCode | None) -> list[str]:
    """The distinct phrases written in the language's alphabet (all of them when the
    language is to be identified): Russian cue phrases would only confuse an English call."""
    phrases = dict.fromkeys(phrase.strip() for phrase in vocabulary if phrase.strip())
    if language is None:
        return list(phrases)
    cyrillic = language == "ru"
    return [phrase for phrase in phrases if bool(CYRILLIC.search(phrase)) == cyrillic]


def available_cores() -> int:
    """The cores this process may use: OMP_NUM_THREADS (an analyzer pod sets it to the
    cores it requests), else the CPUs it may run on."""
    configured = os.environ.get("OMP_NUM_THREADS", "")
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    return len(os.sched_getaffinity(0))


# The streams of a call recognised at once (the channels of a stereo call).
STREAMS = 2


class WhisperTranscriber:
    """faster-whisper, loaded once per process; `model` is a shipped model's name or a
    CTranslate2 folder (`shipped_models.py`). Two streams may be recognised at once (the
    channels of a stereo call), each with the process's cores: measured on 2 cores, the
    two channels of a 3-minute call at once took 0.78-0.93 of the time of one channel
    after the other, and a mono call keeps both cores."""

    def __init__(
        self,
        model: str,
        *,
        cache_dir: Path | None = None,
        device: str = "auto",
        compute_type: str = "int8",
        decoding: Decoding = Decoding(),
    ) -> None:
        folder = model_folder(model, cache_dir=cache_dir or default_model_cache_dir())
        self._model = WhisperModel(
            str(folder),
            device=device,
            compute_type=compute_type,
            cpu_threads=available_cores(),
            num_workers=STREAMS,
        )
        self._decoding = decoding

    @property
    def multilingual(self) -> bool:
        return bool(self._model.model.is_multilingual)

    def hotwords(self, vocabulary: Sequence[str], language: LanguageCode) -> str | None:
        """The vocabulary in the call's language as hotwords, phrases in order until the
        token budget is spent."""
        if not self._decoding.bias:
            return None
        kept: list[str] = []
        tokens = 0
        for phrase in in_language(vocabulary, language):
            tokens += len(self._model.hf_tokenizer.encode(" " + phrase + ",").ids)
            if tokens > self._decoding.max_vocabulary_tokens:
                break
            kept.append(phrase)
        return ", ".join(kept) or None

    def identify(self, audio: Samples) -> Identified | None:
        """Whisper's language identification on the first window, narrowed to the
        languages calls are recognised in (a Russian call at 8 kHz may sound a little
        Ukrainian or Bulgarian to it, never more English than Russian)."""
        if not self.multilingual or not len(audio):
            return None
        _, _, heard = self._model.detect_language(audio[: int(IDENTIFY_S * SAMPLE_RATE_HZ)])
        probability = dict(heard)
        language = max(LANGUAGES, key=lambda code: probability.get(code, 0.0))
        return Identified(language, round(float(probability.get(language, 0.0)), 3))

    def transcribe(
        self, audio: Samples, *, language: LanguageCode | None, vocabulary: Sequence[str] = ()
    ) -> Transcribed:
        """Recognise words with timestamps in audio that is (mostly) speech; segments the
        model marks as unlikely speech, loops and known hallucinations are dropped. An
        English-only model hears English whatever it is asked."""
        if not self.multilingual:
            language = "en"
        elif language is None:
            identified = self.identify(audio)
            language = identified.language if identified else LANGUAGES[0]
        decoding = self._decoding
        segments, _info = self._model.transcribe(
            audio,
            language=language,
            beam_size=decoding.beam_size,
            word_timestamps=True,
            vad_filter=False,  # the pipeline already cut out the silence
            condition_on_previous_text=decoding.condition_on_previous_text,
            temperature=TEMPERATURE_FALLBACK if decoding.temperature_fallback else 0.0,
            no_repeat_ngram_size=decoding.no_repeat_ngram_size,
            no_speech_threshold=decoding.no_speech_threshold,
            log_prob_threshold=decoding.log_prob_threshold,
            compression_ratio_threshold=decoding.compression_ratio_threshold,
            hotwords=self.hotwords(vocabulary, language),
        )
        words = [
            Word(word.word.strip(), float(word.start), float(word.end))
            for segment in segments
            if segment.compression_ratio <= decoding.compression_ratio_threshold
            and not is_hallucination(segment.text)
            for word in segment.words or []
            if word.word.strip()
        ]
        return Transcribed(words, language)


class RemoteTranscriber:
    """An OpenAI-compatible `/v1/audio/transcriptions` endpoint with word timestamps.

    Runs in the analysis worker thread, so it uses the blocking client. The endpoint
    identifies a call's language only while transcribing it.
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 600.0,
    ) -> None:
        self._client = openai.OpenAI(
            base_url=base_url, api_key=api_key or "unused", timeout=timeout_s, max_retries=2
        )
        self._model = model

    def identify(self, audio: Samples) -> Identified | None:
        return None

    def transcribe(
        self, audio: Samples, *, language: LanguageCode | None, vocabulary: Sequence[str] = ()
    ) -> Transcribed:
        """Upload the speech as 16 kHz WAV, the vocabulary as the prompt; map the words."""
        prompt = ", ".join(in_language(vocabulary, language))
        result = self._client.audio.transcriptions.create(
            file=("speech.wav", _wav_bytes(audio), "audio/wav"),
            model=self._model,
            response_format="verbose_json",
            timestamp_granularities=["word"],
            language=language or openai.omit,
            prompt=prompt[:MAX_PROMPT_CHARS] or openai.omit,
        )
        heard = LANGUAGE_NAMES.get(str(getattr(result, "language", "")).lower())
        words = [
            Word(word.word.strip(), float(word.start), float(word.end))
            for word in getattr(result, "words", None) or []
            if word.word.strip()
        ]
        return Transcribed(words, language or heard or LANGUAGES[0])


def _wav_bytes(audio: Samples) -> bytes:
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16).tobytes()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE_HZ)
        out.writeframes(pcm)
    return buffer.getvalue()


def utterances_of(
    words: list[Word], speaker: SpeakerName, speech: Sequence[tuple[float, float]] = ()
) -> list[Utterance]:
    """Group one speaker's words into lines, starting a new one at every pause.

    A pause is a gap between words, or a silence the VAD heard between their starts:
    Whisper often stretches a word's end over the silence after it.
    """
    silences = [
        (end_s + next_start_s) / 2
        for (_, end_s), (next_start_s, _) in itertools.pairwise(speech)
        if next_start_s - end_s >= VAD_PAUSE_S
    ]
    lines: list[list[Word]] = []
    for word in words:
        previous = lines[-1][-1] if lines else None
        if (
            previous is not None
            and word.start_s - previous.end_s <= UTTERANCE_PAUSE_S
            and not any(previous.start_s < middle < word.start_s for middle in silences)
        ):
            lines[-1].append(word)
        else:
            lines.append([word])
    return [
        Utterance(
            speaker=speaker,
            start_s=line[0].start_s,
            end_s=line[-1].end_s,
            text=" ".join(word.text for word in line),
            words=tuple(line),
        )
        for line in lines
    ]
