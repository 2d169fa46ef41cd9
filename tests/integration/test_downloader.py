"""The downloader against real SecantusDB/GridFS, RabbitMQ, ffprobe and a local file host."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from gridfs import AsyncGridFSBucket

from services.downloader.bootstrap import bootstrap
from services.downloader.handlers import (
    Downloader,
    download_call,
    fail_poisoned,
    sweep_expired_audio,
)
from shared.events import AudioStored, CallFailed, CallSkipped, Envelope, utcnow
from shared.mongo import Document
from shared.settings import Settings
from tests.audio import tone
from tests.conftest import EventTap
from tests.fileserver import FileServer, redirect, status
from tests.helpers import FAST_DOWNLOADS, new_task, wait_for


@pytest.fixture
def downloader_settings(settings: Settings) -> Settings:
    return settings.model_copy(update=FAST_DOWNLOADS)


@pytest.fixture
async def deps(downloader_settings: Settings) -> AsyncIterator[Downloader]:
    async with bootstrap(downloader_settings) as built:
        yield built


async def run(deps: Downloader, audio_url: str) -> Document:
    envelope, event = await new_task(deps.db, audio_url)
    await download_call(envelope, event, deps=deps)
    task = await deps.db.calls.find_one({"_id": envelope.task_id})
    assert task is not None
    return task


async def stored_files(deps: Downloader, task_id: str) -> tuple[int, int]:
    files = await deps.db["audio.files"].count_documents({"_id": task_id})
    chunks = await deps.db["audio.chunks"].count_documents({"files_id": task_id})
    return files, chunks


@pytest.mark.parametrize("container", ["mp3", "wav", "ogg"])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("sample_rate_hz", [8000, 16000, 44100])
async def test_audio_is_stored_and_probed(
    deps: Downloader,
    files: FileServer,
    tap: EventTap,
    container: str,
    channels: int,
    sample_rate_hz: int,
) -> None:
    source = tone(container, sample_rate_hz=sample_rate_hz, channels=channels)
    task = await run(deps, files.file(f"/calls/a.{container}", source))

    assert task["status"] == "analyzing", task.get("error")
    audio = task["audio"]
    assert audio["container"] == container
    assert audio["sample_rate_hz"] == sample_rate_hz
    assert audio["channels"] == channels
    assert task["probed_duration_s"] == pytest.approx(3.0, abs=0.25)
    assert audio["size_bytes"] == source.stat().st_size
    assert audio["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    stream = await AsyncGridFSBucket(deps.db, bucket_name="audio").open_download_stream(task["_id"])
    assert await stream.read() == source.read_bytes()
    assert [entry["status"] for entry in task["timeline"]] == ["queued", "downloading", "analyzing"]

    async def published() -> list[Any]:
        return [e for _, e in tap.events() if isinstance(e, AudioStored)]

    (event,) = await wait_for(published)
    assert event.file_id == task["_id"]
    assert (event.container, event.channels, event.sample_rate_hz) == (
        container,
        channels,
        sample_rate_hz,
    )


async def failure(task: Document) -> tuple[str, str]:
    assert task["status"] == "failed"
    assert task.get("audio") in (None, {}) or "audio" not in task
    return task["error"]["code"], task["error"]["message"]


async def test_404_is_final_after_one_attempt(deps: Downloader, files: FileServer) -> None:
    task = await run(deps, f"{files.base_url}/missing.mp3")
    code, message = await failure(task)
    assert code == "download_failed"
    assert message.startswith("Файл скачать не может")
    assert "404" in message
    assert len(files.hits_of("/missing.mp3")) == 1


async def test_500s_are_retried_and_the_file_stored_once(
    deps: Downloader, files: FileServer
) -> None:
    source = tone("mp3", sample_rate_hz=16000, channels=1)
    ok = files.file("/ok.mp3", source)

    async def serve_ok(request: web.Request) -> web.StreamResponse:
        return await files.routes["/ok.mp3"](request)

    url = files.sequence("/flaky.mp3", [status(500), status(500), serve_ok])
    assert ok
    task = await run(deps, url)
    assert task["status"] == "analyzing"
    assert task["audio"]["attempts"] == 3
    assert len(files.hits_of("/flaky.mp3")) == 3
    files_count, chunks = await stored_files(deps, task["_id"])
    assert files_count == 1
    assert chunks == -(-source.stat().st_size // (255 * 1024))


async def test_429_retry_after_is_honoured(deps: Downloader, files: FileServer) -> None:
    source = tone("wav", sample_rate_hz=8000, channels=1)
    files.file("/ok.wav", source, "audio/wav")

    async def serve_ok(request: web.Request) -> web.StreamResponse:
        return await files.routes["/ok.wav"](request)

    url = files.sequence("/busy.wav", [status(429, {"Retry-After": "1"}), serve_ok])
    task = await run(deps, url)
    assert task["status"] == "analyzing"
    first, second = files.hits_of("/busy.wav")
    assert second.at - first.at >= 0.9


async def test_slow_drip_hits_the_read_timeout(deps: Downloader, files: FileServer) -> None:
    url = files.stream("/drip.mp3", total_bytes=10_000, chunk_bytes=10, pause_s=1.0)
    task = await run(deps, url)
    code, message = await failure(task)
    assert code == "download_failed"
    assert "время ожидания" in message
    assert len(files.hits_of("/drip.mp3")) == 3  # every attempt timed out


async def test_redirects_within_the_limit_are_followed(deps: Downloader, files: FileServer) -> None:
    files.file("/final.ogg", tone("ogg", sample_rate_hz=16000, channels=1), "audio/ogg")
    for hop in range(5):
        target = "/final.ogg" if hop == 4 else f"/hop{hop + 1}"
        files.routes[f"/hop{hop}"] = redirect(target)
    task = await run(deps, f"{files.base_url}/hop0")
    assert task["status"] == "analyzing"
    assert task["audio"]["final_url"].endswith("/final.ogg")


async def test_one_redirect_too_many_fails(deps: Downloader, files: FileServer) -> None:
    for hop in range(6):
        files.routes[f"/loop{hop}"] = redirect(f"/loop{hop + 1}")
    files.file("/loop6", tone("ogg", sample_rate_hz=16000, channels=1))
    task = await run(deps, f"{files.base_url}/loop0")
    code, message = await failure(task)
    assert code == "download_failed"
    assert "перенаправлений" in message
    assert files.hits_of("/loop6") == []


@pytest.mark.parametrize(
    "target",
    ["http://169.254.169.254/latest/meta-data/", "http://[::ffff:169.254.169.254]/", "ftp://x/a"],
)
async def test_redirect_to_a_forbidden_address_is_refused(
    deps: Downloader, files: FileServer, target: str
) -> None:
    files.routes["/bounce"] = redirect(target)
    task = await run(deps, f"{files.base_url}/bounce")
    code, message = await failure(task)
    assert code == "download_failed"
    assert message.startswith("Файл скачать не может")


async def test_loopback_is_refused_before_connecting_when_disallowed(
    downloader_settings: Settings, files: FileServer
) -> None:
    strict = downloader_settings.model_copy(update={"fetch_allow_loopback": False})
    source = tone("mp3", sample_rate_hz=16000, channels=1)
    url = files.file("/inside.mp3", source)
    async with bootstrap(strict) as deps:
        for candidate in (url, url.replace("127.0.0.1", "localhost")):
            task = await run(deps, candidate)
            code, message = await failure(task)
            assert code == "download_failed"
            assert "loopback" in message
    assert files.hits == []


async def test_redirect_to_loopback_is_refused_when_loopback_is_denied(
    downloader_settings: Settings, files: FileServer
) -> None:
    # The first hop is allowed; the redirect leads to a denied loopback address.
    guarded = downloader_settings.model_copy(update={"fetch_deny_cidrs": ("127.0.0.2/32",)})
    port = files.base_url.rsplit(":", 1)[1]
    files.routes["/to-inside"] = redirect(f"http://127.0.0.2:{port}/secret")
    async with bootstrap(guarded) as deps:
        task = await run(deps, f"{files.base_url}/to-inside")
    code, _ = await failure(task)
    assert code == "download_failed"
    assert files.hits_of("/secret") == []


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("page.mp3", b"<!doctype html><html><body>404</body></html>"),
        ("empty.mp3", b""),
        ("truncated.mp3", None),
    ],
)
async def test_not_audio(
    deps: Downloader, files: FileServer, name: str, data: bytes | None
) -> None:
    if data is None:
        data = tone("mp3", sample_rate_hz=16000, channels=1).read_bytes()[:200]
    task = await run(deps, files.body(f"/{name}", data, "audio/mpeg"))
    code, message = await failure(task)
    assert code == "not_audio"
    assert message == "Файл не является аудио и мы не смогли определить его длину"
    assert await stored_files(deps, task["_id"]) == (0, 0)


def _head(container: str, encoding: str, *, share: float = 1.0, size_bytes: int = 0) -> bytes:
    """The first bytes (a share, or a count) of a 60 s recording: an upload that broke off."""
    rate = 8000 if encoding == "ulaw" else 16000
    data = tone(container, sample_rate_hz=rate, channels=1, duration_s=60, encoding=encoding)
    whole = data.read_bytes()
    return whole[: size_bytes or int(len(whole) * share)]


CUT_SHORT = "файл повреждён или обрезан"


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("vbr-700-bytes.mp3", lambda: _head("mp3", "mp3-vbr", size_bytes=700)),
        ("vbr-45.mp3", lambda: _head("mp3", "mp3-vbr", share=0.45)),
        ("cbr-45.mp3", lambda: _head("mp3", "mp3-32k", share=0.45)),
        ("header-says-60-s.wav", lambda: _head("wav", "ulaw", share=0.45)),
    ],
)
async def test_a_file_cut_short_is_not_scored(
    deps: Downloader, files: FileServer, tap: EventTap, name: str, data: Any
) -> None:
    task = await run(deps, files.body(f"/{name}", data(), "audio/mpeg"))
    code, message = await failure(task)
    assert code == "not_audio"
    assert message.startswith("Файл не является аудио и мы не смогли определить его длину: ")
    assert CUT_SHORT in message
    assert "из 60 с" in message
    assert await stored_files(deps, task["_id"]) == (0, 0)

    async def announced() -> list[Any]:
        return [e for _, e in tap.events() if isinstance(e, CallFailed)]

    (event,) = await wait_for(announced)
    assert event.code == "not_audio"
    assert CUT_SHORT in event.message


@pytest.mark.parametrize(
    ("name", "data", "real_s"),
    [
        # An Ogg file has no length in a header: its last page tells, so a cut one is
        # simply shorter (the page cut in half does not decode).
        ("ogg-45.ogg", lambda: _head("ogg", "opus", share=0.45), 27.0),
        ("wav-95.wav", lambda: _head("wav", "ulaw", share=0.95), 57.0),
    ],
)
async def test_a_file_only_slightly_short_is_analysed_at_its_real_length(
    deps: Downloader, files: FileServer, name: str, data: Any, real_s: float
) -> None:
    task = await run(deps, files.body(f"/{name}", data(), "audio/ogg"))
    assert task["status"] == "analyzing", task.get("error")
    assert task["probed_duration_s"] == pytest.approx(real_s, abs=1.0)
    assert task["probed_duration_s"] <= task["audio"]["claimed_duration_s"]


@pytest.mark.parametrize("encoding", ["mp3-vbr", "mp3-32k"])
async def test_a_whole_mp3_is_its_full_length(
    deps: Downloader, files: FileServer, encoding: str
) -> None:
    source = tone("mp3", sample_rate_hz=16000, channels=1, duration_s=60, encoding=encoding)
    task = await run(deps, files.file("/whole.mp3", source))
    assert task["status"] == "analyzing", task.get("error")
    assert task["probed_duration_s"] == pytest.approx(60.0, abs=0.1)
    assert task["audio"]["claimed_duration_s"] == pytest.approx(60.0, abs=0.2)


async def test_4_khz_is_low_quality(deps: Downloader, files: FileServer) -> None:
    task = await run(deps, files.file("/low.wav", tone("wav", sample_rate_hz=4000, channels=1)))
    code, message = await failure(task)
    assert code == "low_quality"
    assert "8 кГц" in message
    assert await stored_files(deps, task["_id"]) == (0, 0)


async def test_longer_than_the_hard_limit_is_too_long(
    downloader_settings: Settings, files: FileServer
) -> None:
    limited = downloader_settings.model_copy(update={"max_call_duration_s": 2.0})
    async with bootstrap(limited) as deps:
        task = await run(
            deps, files.file("/long.mp3", tone("mp3", sample_rate_hz=16000, channels=1))
        )
        code, _ = await failure(task)
        assert code == "too_long"
        assert await stored_files(deps, task["_id"]) == (0, 0)


async def test_shorter_than_the_minimum_is_skipped(
    deps: Downloader, files: FileServer, tap: EventTap
) -> None:
    await deps.db.settings.update_one({"_id": "connection"}, {"$set": {"min_call_duration_s": 5}})
    task = await run(deps, files.file("/short.mp3", tone("mp3", sample_rate_hz=16000, channels=1)))
    assert task["status"] == "skipped"
    assert task["skip_reason"]["code"] == "too_short"
    assert task["probed_duration_s"] == pytest.approx(3.0, abs=0.25)
    assert await stored_files(deps, task["_id"]) == (0, 0)

    async def skipped() -> list[Any]:
        return [e for _, e in tap.events() if isinstance(e, CallSkipped)]

    await wait_for(skipped)


async def test_body_over_the_limit_is_aborted_at_the_limit(
    downloader_settings: Settings, files: FileServer
) -> None:
    limited = downloader_settings.model_copy(update={"download_max_bytes": 1_000_000})
    url = files.stream("/huge.mp3", total_bytes=200_000_000, chunk_bytes=256 * 1024)
    async with bootstrap(limited) as deps:
        task = await run(deps, url)
        code, message = await failure(task)
        assert await stored_files(deps, task["_id"]) == (0, 0)
    assert code == "download_failed"
    assert "больше 1000000 байт" in message
    # The reader stopped at the limit: the host wrote little beyond it (socket buffers).
    assert files.bytes_sent["/huge.mp3"] < 30_000_000
    assert len(files.hits_of("/huge.mp3")) == 1


async def test_redelivery_publishes_the_recorded_outcome_without_downloading_again(
    deps: Downloader, files: FileServer, tap: EventTap
) -> None:
    url = files.file("/once.mp3", tone("mp3", sample_rate_hz=16000, channels=1))
    envelope, event = await new_task(deps.db, url)
    await download_call(envelope, event, deps=deps)
    await download_call(envelope, event, deps=deps)
    assert len(files.hits_of("/once.mp3")) == 1

    async def twice() -> list[tuple[Envelope, Any]]:
        found = [(e, ev) for e, ev in tap.events() if isinstance(ev, AudioStored)]
        return found if len(found) == 2 else []

    (first, _), (second, _) = await wait_for(twice)
    assert first == second
    assert await stored_files(deps, envelope.task_id) == (1, 1)


async def test_failures_are_published(deps: Downloader, files: FileServer, tap: EventTap) -> None:
    task = await run(deps, f"{files.base_url}/gone.mp3")

    async def failed() -> list[Any]:
        return [e for _, e in tap.events() if isinstance(e, CallFailed)]

    (event,) = await wait_for(failed)
    assert event.code == "download_failed"
    assert event.call_id == task["call_id"]
    assert event.pipeline_stage == "download"


async def test_retention_sweep_deletes_expired_audio(deps: Downloader, files: FileServer) -> None:
    old = await run(deps, files.file("/old.mp3", tone("mp3", sample_rate_hz=16000, channels=1)))
    new = await run(deps, files.file("/new.wav", tone("wav", sample_rate_hz=16000, channels=1)))
    await deps.db["audio.files"].update_one(
        {"_id": old["_id"]}, {"$set": {"uploadDate": utcnow() - timedelta(days=91)}}
    )
    assert await sweep_expired_audio(deps.db, retention_days=90) == 1
    assert await stored_files(deps, old["_id"]) == (0, 0)
    assert (await stored_files(deps, new["_id"]))[0] == 1
    swept = await deps.db.calls.find_one({"_id": old["_id"]})
    assert swept is not None
    assert swept["audio"]["deleted_at"] is not None


@pytest.mark.parametrize("link", ["http://127.0.0.1:1\\@169.254.169.254/", "http://0/a.mp3"])
async def test_a_link_the_http_client_cannot_use_fails_at_once(
    deps: Downloader, files: FileServer, link: str
) -> None:
    """Accepted by an older gateway, or reached by a redirect: a final `download_failed`,
    never a crash that leaves the call `downloading`, never retried as if transient."""
    for url in (link, f"{files.base_url}/bounce"):
        files.routes["/bounce"] = redirect(link)
        task = await run(deps, url)
        code, message = await failure(task)
        assert code == "download_failed"
        assert message.startswith("Файл скачать не может")
        assert "попыток" not in message


async def test_a_dead_lettered_message_fails_its_task_and_says_so(
    deps: Downloader, tap: EventTap
) -> None:
    envelope, _ = await new_task(deps.db, "https://crm.example/a.mp3")
    await fail_poisoned(deps, envelope.task_id, "ошибка обработки: ValueError")
    task = await deps.db.calls.find_one({"_id": envelope.task_id})
    assert task is not None
    assert task["status"] == "failed"
    assert task["error"]["code"] == "download_failed"

    async def failed() -> list[Any]:
        return [e for _, e in tap.events() if isinstance(e, CallFailed)]

    (event,) = await wait_for(failed)
    assert event.code == "download_failed"
    await fail_poisoned(deps, envelope.task_id, "again")  # a second time changes nothing
    assert (await deps.db.calls.find_one({"_id": envelope.task_id}))["error"] == task["error"]
