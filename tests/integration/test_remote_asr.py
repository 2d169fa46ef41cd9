"""The remote transcription back end against a fake OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import io
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from devtools.samples import Line
from services.analyzer.asr import RemoteTranscriber
from services.analyzer.pipeline import Listening, transcribe_call
from services.analyzer.voice_encoder import VoiceEncoder
from tests.audio import call
from tests.fakes import FakeTranscriptions

LINES: list[Line] = [("manager", 3.0, "Good afternoon, this is the flower company.")]


@pytest.fixture
async def remote() -> AsyncIterator[tuple[FakeTranscriptions, str]]:
    fake = FakeTranscriptions()
    app = web.Application(client_max_size=50 * 1024 * 1024)
    app.router.add_post("/v1/audio/transcriptions", fake.transcribe)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield fake, str(server.make_url("/v1"))
    await server.close()


async def test_only_speech_is_uploaded_and_words_come_back_in_call_time(
    remote: tuple[FakeTranscriptions, str], voice_encoder: VoiceEncoder, tmp_path: Path
) -> None:
    fake, url = remote
    # The fake answers in the uploaded audio's time: speech starts near its beginning.
    fake.words = [
        {"word": " Good", "start": 0.3, "end": 0.6},
        {"word": " afternoon", "start": 0.6, "end": 1.2},
    ]
    transcriber = RemoteTranscriber(url, model="whisper-1", api_key="k")
    result = await asyncio.to_thread(
        transcribe_call,
        call(LINES, duration_s=12, stereo=False),
        channels=1,
        duration_s=12,
        listening=Listening(transcriber, voice_encoder),
        work_dir=tmp_path,
    )

    (upload,) = fake.uploads
    assert upload["model"] == "whisper-1"
    assert upload["response_format"] == "verbose_json"
    assert upload["granularities"] == ["word"]
    with wave.open(io.BytesIO(upload["audio"])) as audio:
        assert (audio.getframerate(), audio.getnchannels()) == (16000, 1)
        uploaded_s = audio.getnframes() / 16000
    assert uploaded_s < 12 - 4  # the silence around the line was not sent
    (line,) = result.utterances
    assert line.text == "Good afternoon"
    assert line.start_s == pytest.approx(3.0, abs=1.0)  # mapped back to the call
