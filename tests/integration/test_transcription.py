"""From generated calls to transcripts and talk metrics: real ffmpeg, real faster-whisper."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.samples import Line
from services.analyzer.asr import WhisperTranscriber
from services.analyzer.pipeline import Transcription, transcribe_call
from tests.audio import GOOD_CALL, call

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def transcriber() -> WhisperTranscriber:
    return WhisperTranscriber("tiny.en", device="cpu", compute_type="int8", language="en")


def find(result: Transcription, words: str) -> tuple[str, float]:
    for line in result.utterances:
        if words in line.text.lower():
            return line.speaker, line.start_s
    raise AssertionError(f"{words!r} not in {[u.text for u in result.utterances]}")


def test_stereo_call_has_speakers_times_and_metrics(
    transcriber: WhisperTranscriber, tmp_path: Path
) -> None:
    source = call(GOOD_CALL, duration_s=24)
    result = transcribe_call(
        source, channels=2, duration_s=24, transcriber=transcriber, work_dir=tmp_path
    )
    assert not result.mono
    for speaker, start_s, text in GOOD_CALL:
        said_by, at_s = find(result, " ".join(text.lower().split()[:2]).rstrip(","))
        assert said_by == speaker
        assert at_s == pytest.approx(start_s, abs=1.5)
    metrics = result.metrics
    assert metrics.talk_time_manager_s is not None
    assert metrics.talk_time_client_s is not None
    # The layout: manager lines ≈ 3.4 + 2.4 + 2.2 s, client ≈ 1.9 + 2.4 s of speech.
    assert metrics.talk_ratio == pytest.approx(0.66, abs=0.10)
    assert metrics.silence_s == pytest.approx(24 - 12.3, abs=3.0)
    assert metrics.interruptions == 0
    assert set(result.stage_seconds) == {"decode", "vad", "asr"}


def test_right_channel_can_be_the_manager(transcriber: WhisperTranscriber, tmp_path: Path) -> None:
    result = transcribe_call(
        call(GOOD_CALL, duration_s=24),
        channels=2,
        duration_s=24,
        transcriber=transcriber,
        work_dir=tmp_path,
        manager_channel="right",
    )
    assert find(result, "good afternoon")[0] == "client"


def test_mono_call_has_unknown_speaker_and_no_ratio(
    transcriber: WhisperTranscriber, tmp_path: Path
) -> None:
    source = call(GOOD_CALL, duration_s=24, stereo=False)
    result = transcribe_call(
        source, channels=1, duration_s=24, transcriber=transcriber, work_dir=tmp_path
    )
    assert result.mono
    assert {line.speaker for line in result.utterances} == {"unknown"}
    assert result.metrics.talk_ratio is None
    assert find(result, "budget")[1] == pytest.approx(14.0, abs=1.5)


def test_long_call_is_split_and_timestamps_stay_absolute(
    transcriber: WhisperTranscriber, tmp_path: Path
) -> None:
    late_s = 46 * 60 + 5.0
    lines: list[Line] = [
        ("manager", 2.0, "Hello, this is the flower company calling."),
        ("manager", late_s, "Thank you for your time, goodbye."),
    ]
    duration_s = 47 * 60.0
    source = call(lines, duration_s=duration_s, stereo=False, sample_rate_hz=8000)
    result = transcribe_call(
        source, channels=1, duration_s=duration_s, transcriber=transcriber, work_dir=tmp_path
    )
    assert [part.index for part in result.parts] == [0, 1]
    assert result.parts[1].offset_s == pytest.approx(duration_s / 2, abs=1)
    assert find(result, "flower company")[1] == pytest.approx(2.0, abs=1.5)
    assert find(result, "thank you")[1] == pytest.approx(late_s, abs=1.5)
