"""What the downloader does with a `CallReceived`: store the audio, probe it, decide.

Idempotent: the outcome event is recorded on the task before it is published, so a
redelivered message only publishes the recorded event again (same event_id). A
crashed attempt's partial upload uses the task's own file id and is removed before
the next one starts, so no orphan chunks remain.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import IO, Any, Literal

import aiohttp
from pymongo.asynchronous.database import AsyncDatabase

from services.downloader.fetch import DownloadFailed, FetchLimits, fetch, reason
from services.downloader.gridfs_writer import GridFsWriter
from shared.amqp import Broker
from shared.connection import load_connection_settings
from shared.events import (
    AudioStored,
    CallFailed,
    CallReceived,
    CallSkipped,
    Envelope,
    ErrorCode,
    Event,
    call_meta,
    utcnow,
)
from shared.logging import get_logger
from shared.media import AudioInfo, NotAudio, probe_audio
from shared.metrics import WorkerMetrics
from shared.mongo import AUDIO_BUCKET, AUDIO_CHUNKS, AUDIO_FILES, Document, calls
from shared.outbox import PUBLISH_NOW_GRACE_S, outbox_append, publish_now
from shared.tasks import TaskStatus, may_enter, moved
from shared.url_policy import UrlPolicy

log = get_logger(__name__)

MIN_SAMPLE_RATE_HZ = 8000
NOT_AUDIO = "Файл не является аудио и мы не смогли определить его длину"


@dataclass(frozen=True)
class Downloader:
    """What the handler needs, built by bootstrap."""

    db: AsyncDatabase[Document]
    session: aiohttp.ClientSession
    broker: Broker
    policy: UrlPolicy
    limits: FetchLimits
    max_call_duration_s: float
    min_audio_share: float = 0.9
    metrics: WorkerMetrics = field(default_factory=WorkerMetrics)


class GridFsTee:
    """Streams a download into GridFS under a fixed id and into a local file for ffprobe."""

    def __init__(
        self, db: AsyncDatabase[Document], file_id: str, filename: str, path: Path
    ) -> None:
        self._db = db
        self._file_id = file_id
        self._filename = filename
        self._path = path
        self._upload: GridFsWriter | None = None
        self._file: IO[bytes] | None = None

    async def reset(self) -> None:
        """Drop whatever a previous attempt (or a crashed process) stored, and start over."""
        await self.discard()
        self._upload = GridFsWriter(self._db, AUDIO_BUCKET, self._file_id, self._filename)
        self._file = await asyncio.to_thread(self._path.open, "wb")

    def _streams(self) -> tuple[GridFsWriter, IO[bytes]]:
        if self._upload is None or self._file is None:
            raise RuntimeError("reset() must come first")
        return self._upload, self._file

    async def write(self, chunk: bytes) -> None:
        """Append a chunk to both copies."""
        upload, file = self._streams()
        await upload.write(chunk)
        await asyncio.to_thread(file.write, chunk)

    async def finish(self) -> None:
        """Complete the GridFS file and flush the local copy."""
        upload, file = self._streams()
        await upload.close()
        await asyncio.to_thread(file.close)

    async def discard(self) -> None:
        """Remove the GridFS file and its chunks, complete or not."""
        if self._upload is not None and not self._upload.closed:
            await self._upload.abort()
        if self._file is not None:
            await asyncio.to_thread(self._file.close)
        self._upload = self._file = None
        await delete_audio(self._db, self._file_id)


async def delete_audio(db: AsyncDatabase[Document], file_id: Any) -> None:
    """Delete a stored file and every chunk of it, even of an unfinished upload."""
    await db[AUDIO_FILES].delete_one({"_id": file_id})
    await db[AUDIO_CHUNKS].delete_many({"files_id": file_id})


def _classify(
    info: AudioInfo, *, min_s: float, max_s: float, min_share: float
) -> tuple[ErrorCode | Literal["too_short"], str] | None:
    """Return (code, Russian message) when the audio cannot be analysed, else None.

    A file holding much less audio than its headers claim was cut short or damaged (an
    upload that broke off): scoring it would blame the manager for what is not there.
    Only slightly short, it is analysed at the length it really has.
    """
    if info.share_present < min_share:
        return (
            "not_audio",
            f"{NOT_AUDIO}: файл повреждён или обрезан — в нём {info.duration_s:.0f} с звука "
            f"из {info.claimed_duration_s:.0f} с, указанных в заголовке",
        )
    if info.sample_rate_hz < MIN_SAMPLE_RATE_HZ:
        return (
            "low_quality",
            f"Частота дискретизации {info.sample_rate_hz} Гц ниже минимальной 8 кГц",
        )
    if info.duration_s > max_s:
        return (
            "too_long",
            f"Звонок длиннее допустимых {max_s / 3600:g} ч ({info.duration_s:.0f} с)",
        )
    if info.duration_s < min_s:
        return (
            "too_short",
            f"Звонок короче минимальной длительности ({min_s:g} с) и не будет проанализирован",
        )
    return None


async def download_call(envelope: Envelope, event: Event, *, deps: Downloader) -> None:
    """Handle one `CallReceived`; once it returns the outcome is durable and published."""
    if not isinstance(event, CallReceived):
        raise TypeError(f"downloader got {event.TYPE}")
    tasks = calls(deps.db)
    task = await tasks.find_one({"_id": envelope.task_id}, {"download_result": 1})
    if task is None:
        log.error("task_missing", task_id=envelope.task_id)
        return
    if task.get("download_result") is not None:
        # A redelivery after the outcome was recorded: publish it again, same event_id.
        recorded = Envelope.model_validate(task["download_result"])
        await publish_now(tasks, deps.broker, envelope.task_id, recorded)
        return

    now = utcnow()
    await tasks.update_one(
        {"_id": envelope.task_id, **may_enter(TaskStatus.DOWNLOADING)},
        moved(TaskStatus.DOWNLOADING, now),
    )
    outcome, fields = await _download_and_probe(envelope.task_id, event, deps)
    await _record(deps, envelope.task_id, outcome, fields)


async def _record(deps: Downloader, task_id: str, outcome: Event, fields: Document) -> None:
    """Store the outcome with its event in the outbox (unless one is stored already), then
    publish it."""
    result = Envelope.wrap(outcome, task_id=task_id)
    outbox_set, outbox_push = outbox_append(result, relay_after_s=PUBLISH_NOW_GRACE_S)
    status = {AudioStored: TaskStatus.ANALYZING, CallSkipped: TaskStatus.SKIPPED}.get(
        type(outcome), TaskStatus.FAILED
    )
    stored = await calls(deps.db).update_one(
        {"_id": task_id, "download_result": None},
        moved(
            status,
            utcnow(),
            set_fields={
                **fields,
                "download_result": result.model_dump(mode="json"),
                **outbox_set,
            },
            push_fields=outbox_push,
        ),
    )
    if stored.modified_count == 0:
        return
    log.info("download_finished", outcome=outcome.TYPE, status=status)
    deps.metrics.count_outcome("download", outcome)
    await publish_now(calls(deps.db), deps.broker, task_id, result)


async def fail_poisoned(deps: Downloader, task_id: str, why: str) -> None:
    """Dead-letter hook: a call whose message cannot be processed fails with
    `download_failed`, announced like any other failure; never left `downloading`."""
    task = await calls(deps.db).find_one({"_id": task_id})
    if task is None or task.get("download_result") is not None:
        return
    await _record(deps, task_id, *_failure(call_meta(task), "download_failed", reason(why)))


async def _download_and_probe(
    task_id: str, event: CallReceived, deps: Downloader
) -> tuple[Event, Document]:
    meta = call_meta(event)
    with tempfile.TemporaryDirectory(prefix="rop-download-") as temp:
        tee = GridFsTee(deps.db, task_id, f"{task_id}.audio", Path(temp) / "audio")
        try:
            fetched = await fetch(
                deps.session, event.audio_url, policy=deps.policy, limits=deps.limits, sink=tee
            )
            await tee.finish()
        except DownloadFailed as exc:
            await tee.discard()
            return _failure(meta, "download_failed", exc.message)
        except BaseException:
            # Crash-like failures (cancellation, database errors) leave the task to a
            # redelivery; the next attempt starts by discarding this one's chunks.
            with contextlib.suppress(Exception):
                await tee.discard()
            raise
        try:
            info = await probe_audio(Path(temp) / "audio")
        except NotAudio as exc:
            log.info("not_audio", detail=str(exc))
            await delete_audio(deps.db, task_id)
            return _failure(meta, "not_audio", NOT_AUDIO)

    connection = await load_connection_settings(deps.db)
    problem = _classify(
        info,
        min_s=connection.min_call_duration_s,
        max_s=deps.max_call_duration_s,
        min_share=deps.min_audio_share,
    )
    probed: Document = {
        "probed_duration_s": info.duration_s,
        "audio": {
            "claimed_duration_s": info.claimed_duration_s,
            "file_id": task_id,
            "container": info.container,
            "codec": info.codec,
            "sample_rate_hz": info.sample_rate_hz,
            "channels": info.channels,
            "size_bytes": fetched.size_bytes,
            "sha256": fetched.sha256,
            "content_type": fetched.content_type,
            "final_url": fetched.final_url,
            "attempts": fetched.attempts,
        },
    }
    if problem is not None:
        await delete_audio(deps.db, task_id)
        code, message = problem
        probed["audio"] = None
        if code == "too_short":
            skipped = CallSkipped(**meta, reason=code, message=message)
            return skipped, {**probed, "skip_reason": {"code": code, "message": message}}
        failed, fields = _failure(meta, code, message)
        return failed, {**probed, **fields}
    stored = AudioStored(
        **meta,
        file_id=task_id,
        container=info.container,
        codec=info.codec,
        sample_rate_hz=info.sample_rate_hz,
        channels=info.channels,
        duration_s=info.duration_s,
        size_bytes=fetched.size_bytes,
        sha256=fetched.sha256,
    )
    return stored, probed


def _failure(meta: dict[str, Any], code: ErrorCode, message: str) -> tuple[Event, Document]:
    failed = CallFailed(**meta, code=code, message=message, pipeline_stage="download")
    return failed, {"error": {"code": code, "message": message, "pipeline_stage": "download"}}


async def sweep_expired_audio(db: AsyncDatabase[Document], *, retention_days: float) -> int:
    """Delete stored audio older than the retention period; return how many files."""
    cutoff = utcnow() - timedelta(days=retention_days)
    expired = await db[AUDIO_FILES].find({"uploadDate": {"$lt": cutoff}}, {"_id": 1}).to_list()
    for file in expired:
        await delete_audio(db, file["_id"])
    if expired:
        await calls(db).update_many(
            {"_id": {"$in": [file["_id"] for file in expired]}},
            {"$set": {"audio.deleted_at": utcnow()}},
        )
    return len(expired)
