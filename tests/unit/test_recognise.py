"""How a stream's speech goes to the ASR and its words come back: only the speech is
heard, every word is timed in the stream, and the stream's language is decided once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pytest

from services.analyzer.asr import Identified, Transcribed
from services.analyzer.audio import SAMPLE_RATE_HZ, Samples
from services.analyzer.language import StreamLanguage, call_language
from services.analyzer.pipeline import ASR_SEPARATOR_S, recognise
from services.analyzer.transcript import Word
from shared.results import LanguageCode

# Two regions of speech, far apart: the ASR hears them joined, a second of silence between.
SPEECH = [(2.0, 4.0), (10.0, 12.0)]
SECOND_REGION_JOINED_S = 4.0 - 2.0 + 2 * 0.2 + ASR_SEPARATOR_S  # its padding included


@dataclass
class Scripted:
    """A transcriber that hears what it is told to, in the language it identifies."""

    words: list[Word]
    identified: Identified | None = None
    asked: list[LanguageCode | None] = field(default_factory=list)

    def identify(self, audio: Samples) -> Identified | None:
        return self.identified

    def transcribe(
        self, audio: Samples, *, language: LanguageCode | None, vocabulary: Sequence[str] = ()
    ) -> Transcribed:
        self.asked.append(language)
        return Transcribed(self.words, language or "ru")


def _stream() -> Samples:
    return np.ones(14 * SAMPLE_RATE_HZ, dtype=np.float32)


def test_a_word_started_in_the_silence_before_its_region_starts_with_the_region() -> None:
    joined_s = SECOND_REGION_JOINED_S
    transcriber = Scripted(
        [
            Word("Вам", joined_s - 0.6, joined_s + 0.3),  # its start put in the silence
            Word("удобно", joined_s + 0.4, joined_s + 0.9),
            Word("говорить", joined_s + 1.0, joined_s + 2.9),  # its end in the silence after
        ]
    )

    words, _ = recognise(transcriber, _stream(), SPEECH, setting="ru", offset_s=100.0)

    first, second, last = words
    assert first.start_s == pytest.approx(100 + 10.0 - 0.2)  # the region's padded start
    assert first.end_s == pytest.approx(100 + 10.0 - 0.2 + 0.3)
    assert second.start_s == pytest.approx(100 + 10.0 - 0.2 + 0.4)
    assert last.end_s == pytest.approx(100 + 12.0 + 0.2)  # the region's padded end


def test_the_language_is_identified_once_and_the_setting_decides() -> None:
    english = Identified("en", 0.97)
    auto = Scripted([Word("hello", 0.5, 0.9)], english)
    fixed = Scripted([Word("хелло", 0.5, 0.9)], english)

    _, heard = recognise(auto, _stream(), SPEECH, setting="auto")
    _, kept = recognise(fixed, _stream(), SPEECH, setting="ru")
    assert heard is not None
    assert kept is not None
    assert (heard.used, heard.mismatch) == ("en", False)
    assert (kept.used, kept.mismatch) == ("ru", True)  # it sounded English
    assert (auto.asked, fixed.asked) == (["en"], ["ru"])

    # A later part of the call keeps the stream's language, identified no more.
    auto.identified = None
    _, later = recognise(auto, _stream(), SPEECH, setting=heard)
    assert later == heard
    assert auto.asked == ["en", "en"]


def test_a_stream_with_no_speech_has_no_language_yet() -> None:
    transcriber = Scripted([])
    assert recognise(transcriber, _stream(), [], setting="auto") == ([], None)
    assert transcriber.asked == []


def test_the_call_reports_the_stream_that_sounded_wrong_else_the_talkative_one() -> None:
    russian = StreamLanguage("ru", Identified("ru", 0.99))
    sounded_english = StreamLanguage("ru", Identified("en", 0.8))
    unsure = StreamLanguage("ru", Identified("en", 0.4))
    speech = {"manager": [(0.0, 30.0)], "client": [(30.0, 35.0)]}

    assert call_language({"manager": russian, "client": sounded_english}, speech, "ru") == {
        "code": "ru",
        "setting": "ru",
        "detected": "en",
        "probability": 0.8,
        "mismatch": True,
    }
    calm = call_language({"manager": russian, "client": unsure}, speech, "ru")
    assert (calm["detected"], calm["mismatch"]) == ("ru", False)
    assert call_language({}, {}, "auto")["code"] == "ru"  # nothing said: the default
