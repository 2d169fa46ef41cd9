"""From generated calls to transcripts and talk metrics: real ffmpeg, faster-whisper and
speaker embeddings, on clean stereo, mono mixes and stereo with echo."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.samples import Line, Voices
from services.analyzer.asr import WhisperTranscriber
from services.analyzer.pipeline import Listening, Transcription, transcribe_call
from services.analyzer.roles import RoleHints
from services.analyzer.voice_encoder import VoiceEncoder
from tests.audio import GOOD_CALL, MONO_CALL, call, spoken

pytestmark = pytest.mark.timeout(300)

CUES = RoleHints(
    cue_phrases=("my name is", "calling from"),
    script_phrases=("flower company", "convenient to talk", "call you back"),
)


@pytest.fixture
def listening(transcriber: WhisperTranscriber, voice_encoder: VoiceEncoder) -> Listening:
    return Listening(transcriber, voice_encoder, CUES)


def find(result: Transcription, words: str) -> tuple[str, float]:
    for line in result.utterances:
        if words in line.text.lower():
            return line.speaker, line.start_s
    raise AssertionError(f"{words!r} not in {[u.text for u in result.utterances]}")


def speaker_at(result: Transcription, time_s: float) -> str:
    """Who says the line nearest to a time."""
    nearest = min(result.utterances, key=lambda u: max(u.start_s - time_s, time_s - u.end_s, 0.0))
    return nearest.speaker


def test_stereo_call_has_speakers_times_and_metrics(listening: Listening, tmp_path: Path) -> None:
    source = call(GOOD_CALL, duration_s=24)
    result = transcribe_call(
        source, channels=2, duration_s=24, listening=listening, work_dir=tmp_path
    )
    assert result.roles.method == "channels"
    for speaker, start_s, text in GOOD_CALL:
        said_by, at_s = find(result, " ".join(text.lower().split()[:2]).rstrip(","))
        assert said_by == speaker
        assert at_s == pytest.approx(start_s, abs=1.5)
    metrics = result.metrics
    # The layout: manager lines ≈ 3.4 + 2.4 + 2.2 s, client ≈ 1.9 + 2.4 s of speech.
    assert metrics.talk_ratio == pytest.approx(0.66, abs=0.10)
    assert metrics.silence_s == pytest.approx(24 - 12.3, abs=3.0)
    assert metrics.interruptions == 0
    assert set(result.stage_seconds) == {"decode", "echo", "vad", "asr"}
    assert result.voices == {}  # voices are embedded only when voiceprints are learnt


def test_right_channel_can_be_the_manager(
    transcriber: WhisperTranscriber, voice_encoder: VoiceEncoder, tmp_path: Path
) -> None:
    result = transcribe_call(
        call(GOOD_CALL, duration_s=24),
        channels=2,
        duration_s=24,
        listening=Listening(transcriber, voice_encoder, manager_channel="right"),
        work_dir=tmp_path,
    )
    assert find(result, "good afternoon")[0] == "client"


def _layout_ratio(source: Path) -> float:
    lines = spoken(source)
    manager = sum(line.end_s - line.start_s for line in lines if line.speaker == "manager")
    client = sum(line.end_s - line.start_s for line in lines if line.speaker == "client")
    return manager / (manager + client)


# Two clearly different voices per call, never the same pair twice, over the codecs and
# rates CRMs send; half of them with pink noise at 20 dB SNR.
MONO_SOUNDS = [
    pytest.param("wav", 8000, Voices("en-us+m3", "en-gb+f2"), "ulaw", 20.0, id="ulaw-m3-f2"),
    pytest.param("wav", 8000, Voices("en-gb+m3", "en-us+f1"), "alaw", None, id="alaw-m3-f1"),
    pytest.param("wav", 8000, Voices("en-us+m2", "en-gb-scotland+m5"), "gsm", None, id="gsm-m2-m5"),
    pytest.param("ogg", 16000, Voices("en-us+f3", "en-gb+m6"), "opus", 20.0, id="opus-f3-m6"),
    pytest.param(
        "mp3", 8000, Voices("en-gb-x-rp+m7", "en-us+f4"), "mp3-32k", 20.0, id="mp3-32k-m7-f4"
    ),
    pytest.param("mp3", 16000, Voices("en-us+m6", "en-029+f1"), None, None, id="mp3-m6-f1"),
]


@pytest.mark.parametrize(("container", "rate", "voices", "encoding", "noise"), MONO_SOUNDS)
def test_mono_call_is_split_between_manager_and_client(
    listening: Listening,
    tmp_path: Path,
    container: str,
    rate: int,
    voices: Voices,
    encoding: str | None,
    noise: float | None,
) -> None:
    source = call(
        MONO_CALL,
        duration_s=26,
        stereo=False,
        container=container,
        sample_rate_hz=rate,
        voices=voices,
        encoding=encoding,
        noise_snr_db=noise,
    )
    result = transcribe_call(
        source, channels=1, duration_s=26, listening=listening, work_dir=tmp_path
    )
    # The client answers first; the manager introduces themself: the cues decide.
    assert result.roles.method == "cues"
    assert not result.roles.uncertain
    for line in spoken(source):
        if line.end_s - line.start_s > 1.5:  # a lone "Hello?" may go either way
            assert speaker_at(result, (line.start_s + line.end_s) / 2) == line.speaker, line
    assert result.metrics.talk_ratio == pytest.approx(_layout_ratio(source), abs=0.1)
    assert result.metrics.interruptions == 0
    assert set(result.voices) == {"manager", "client"}


def test_long_call_is_split_and_timestamps_stay_absolute(
    listening: Listening, tmp_path: Path
) -> None:
    late_s = 46 * 60 + 5.0
    lines: list[Line] = [
        ("manager", 2.0, "Hello, this is the flower company calling."),
        ("manager", late_s, "Thank you for your time, goodbye."),
    ]
    duration_s = 47 * 60.0
    source = call(lines, duration_s=duration_s, stereo=False, sample_rate_hz=8000)
    result = transcribe_call(
        source, channels=1, duration_s=duration_s, listening=listening, work_dir=tmp_path
    )
    assert [part.index for part in result.parts] == [0, 1]
    assert result.parts[1].offset_s == pytest.approx(duration_s / 2, abs=1)
    assert find(result, "flower company") == ("manager", pytest.approx(2.0, abs=1.5))
    assert find(result, "thank you") == ("manager", pytest.approx(late_s, abs=1.5))


def test_noise_and_silence_yield_no_words(listening: Listening, tmp_path: Path) -> None:
    # No line at all: pink noise at about -20 dBFS on both channels, then nothing else.
    source = call([], duration_s=20, noise_snr_db=0.0, sample_rate_hz=8000, encoding="ulaw",
                  container="wav")  # fmt: skip
    result = transcribe_call(
        source, channels=2, duration_s=20, listening=listening, work_dir=tmp_path
    )
    assert result.utterances == []
    assert result.metrics.talk_ratio is None
