"""The analyzer as the tests run it: its jobs against a test's database and broker, with
a given transcriber, and the calls it analyses stored as the downloader leaves them."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

from gridfs import AsyncGridFSBucket

from devtools.samples import Line
from services.analyzer.asr import Transcriber
from services.analyzer.handlers import Analyzer, queue_analysis, run_job
from services.analyzer.voice_encoder import VoiceEncoder
from services.ingest.app import OPENAPI
from shared import call_details, rollups
from shared.amqp import Broker
from shared.connection import ensure_connection_settings
from shared.events import AudioStored, Envelope, utcnow
from shared.mongo import connect_mongo, database, ensure_indexes
from shared.settings import Settings
from tests.audio import call
from tests.openapi_check import component_errors


@contextlib.asynccontextmanager
async def analyzer(
    settings: Settings, transcriber: Transcriber, encoder: VoiceEncoder
) -> AsyncIterator[Analyzer]:
    """The analyzer's dependencies on the test's database and broker."""
    mongo = connect_mongo(settings.mongo_url)
    db = database(mongo)
    await ensure_indexes(db)
    await ensure_connection_settings(db, initial_api_key=None)
    broker = Broker(settings.amqp_url, prefix=settings.amqp_prefix)
    await broker.connect()
    try:
        yield Analyzer(
            db=db,
            broker=broker,
            transcriber=transcriber,
            encoder=encoder,
            lease_s=30,
            role_cues=settings.role_cues,
        )
    finally:
        await broker.close()
        await mongo.close()


async def stored_call(
    deps: Analyzer,
    lines: list[Line],
    *,
    stereo: bool = True,
    duration_s: float = 22.0,
    container: str = "mp3",
    sound: dict[str, Any] | None = None,
    **task: Any,
) -> tuple[Envelope, AudioStored]:
    """A task as the downloader leaves it: audio in GridFS, probed, status analyzing.
    `sound` goes to the generator (voices, encoding, noise, leak)."""
    source = call(lines, duration_s=duration_s, stereo=stereo, container=container, **(sound or {}))
    task_id = f"task_{uuid.uuid4().hex[:12]}"
    await AsyncGridFSBucket(deps.db, bucket_name="audio").upload_from_stream_with_id(
        task_id, source.name, source.read_bytes()
    )
    meta = {
        "call_id": f"call_{task_id}",
        "deal_id": "deal_1",
        "manager_id": "mgr_001",
        "stage_id": "funnel_primary_calls",
        "deal_stage_id": "qualification",
        **task,
    }
    event = AudioStored(
        **meta,
        file_id=task_id,
        container=container,
        codec="mp3",
        sample_rate_hz=16000,
        channels=2 if stereo else 1,
        duration_s=duration_s,
        size_bytes=source.stat().st_size,
        sha256="-",
    )
    now = utcnow()
    await deps.db.calls.insert_one(
        {
            "_id": task_id,
            **meta,
            "status": "analyzing",
            "received_at": now,
            "updated_at": now,
            "timeline": [],
            "probed_duration_s": duration_s,
            "audio": {"file_id": task_id, "container": container, "channels": event.channels},
        }
    )
    return Envelope.wrap(event, task_id=task_id), event


async def analyse(deps: Analyzer, envelope: Envelope, event: AudioStored) -> dict[str, Any]:
    await queue_analysis(envelope, event, deps=deps)
    await queue_analysis(envelope, event, deps=deps)  # a redelivery changes nothing
    job = await deps.jobs.claim()
    assert job is not None
    assert job["_id"] == envelope.task_id
    await run_job(job, deps)
    task = await stored_task(deps, envelope.task_id)
    # What the analysis stored is what the API documents (and shows).
    assert component_errors(OPENAPI, "Results", task["results"]) == []
    if task["score"] is not None:  # None: no stage applied
        assert component_errors(OPENAPI, "OverallScore", task["score"]) == []
        # The score sorts walk the scores there are: this one is among them.
        assert task["score"]["percent"] in await rollups.score_values(deps.db)
    return task


async def stored_task(deps: Analyzer, task_id: str) -> dict[str, Any]:
    """The call as stored, with the heavy parts kept apart from it (and nothing else of
    its analyses' left there)."""
    task = await deps.db.calls.find_one({"_id": task_id})
    assert task is not None
    assert not set(call_details.HEAVY) & set(task)
    details = await deps.db.call_details.find({"task_id": task_id}).to_list()
    assert [found["_id"] for found in details] == ([task["details_id"]] if details else [])
    return task | (details[0] if details else {})


def stages(task: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (checklist,) = task["results"]["checklists"]
    return {stage["name"]: stage for stage in checklist["stages"]}
