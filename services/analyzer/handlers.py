"""The analyzer's jobs: durable in Mongo, so an analysis may outlast any broker timeout.

An `AudioStored` message only records a queued job on the task and is acked at once.
Workers claim jobs from Mongo with a lease they keep renewing while they work; a
job whose lease ran out (its worker died) is claimed again, at most
`max_attempts` times, then the task fails with `analysis_failed`. The outcome is
stored with its event before the event is published, and unpublished outcomes are
published again, so nothing is lost and nothing loops forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from gridfs import AsyncGridFSBucket
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from services.analyzer import evaluate
from services.analyzer.asr import Transcriber
from services.analyzer.evaluate import Call, binding_applies, table_applies
from services.analyzer.jobs import JobQueue
from services.analyzer.llm import LlmJudge
from services.analyzer.phrases import tokenize
from services.analyzer.pipeline import Listening, Transcription, transcribe_call
from services.analyzer.roles import RoleHints
from services.analyzer.scoring import StageVerdict
from services.analyzer.stored import (
    metrics_document,
    transcription_fields,
    utterances_of,
    with_roles_swapped,
)
from services.analyzer.voice_encoder import VoiceEncoder
from services.analyzer.workers import Heartbeat
from shared import call_details, rollups, search_index, voiceprints
from shared.amqp import TRANSIENT_ERRORS, Broker
from shared.connection import load_connection_settings
from shared.events import AudioStored, CallAnalyzed, CallFailed, Envelope, Event, call_meta, utcnow
from shared.logging import get_logger
from shared.metrics import WorkerMetrics
from shared.mongo import (
    AUDIO_BUCKET,
    BINDINGS,
    TABLES,
    TEMPLATES,
    TRACKERS,
    Document,
    calls,
)
from shared.outbox import PUBLISH_NOW_GRACE_S, outbox_append, publish_now
from shared.patience import patiently, woken
from shared.people import User, owners_of
from shared.results import LanguageSetting, Results, TemplateRef, overall_score
from shared.reviews import pick_for_blind_review, with_corrections
from shared.scripts import Binding, Table, Template, Tracker
from shared.tasks import TaskStatus, moved

log = get_logger(__name__)

INTERRUPTED_PAUSE_S = 5.0  # before claiming again after the database or broker went away
GIVE_BACK_S = 5.0  # a stopping analyzer waits this long, at most, to requeue its job

T = TypeVar("T")


@dataclass(frozen=True)
class Analyzer:
    """What the jobs need, built by bootstrap."""

    db: AsyncDatabase[Document]
    broker: Broker
    transcriber: Transcriber
    encoder: VoiceEncoder
    llm: LlmJudge | None = None
    part_s: float = 2700.0
    manager_channel: Literal["left", "right"] = "left"
    role_cues: tuple[str, ...] = ()
    voiceprint_min_similarity: float = 0.9
    voiceprint_min_margin: float = 0.05
    lease_s: float = 300.0
    max_attempts: int = 3
    heartbeat_s: float = 5.0
    worker_id: str = field(default_factory=lambda: f"analyzer-{uuid.uuid4().hex[:8]}")
    metrics: WorkerMetrics = field(default_factory=WorkerMetrics)

    @functools.cached_property
    def heartbeat(self) -> Heartbeat:
        return Heartbeat(self.db, self.worker_id, self.heartbeat_s)

    @functools.cached_property
    def jobs(self) -> JobQueue:
        return JobQueue(self.db, self.worker_id, self.lease_s, self.heartbeat)


async def queue_analysis(envelope: Envelope, event: Event, *, deps: Analyzer) -> None:
    """Consumer of `AudioStored`: record the job (idempotent); the message is acked after this."""
    if not isinstance(event, AudioStored):
        raise TypeError(f"analyzer got {event.TYPE}")
    await deps.jobs.enqueue(envelope.task_id)


async def run_job(task: Document, deps: Analyzer) -> None:
    """Analyse a claimed task, store the outcome with its event, publish it."""
    task_id = task["_id"]
    meta = call_meta(task)
    outcome: Event
    fields: Document
    if task["analysis"]["attempts"] > deps.max_attempts:
        outcome, fields = _failed(meta, "попытки анализа исчерпаны")
    else:
        renewer = asyncio.create_task(deps.jobs.renew_forever(task_id))
        try:
            outcome, fields = await _analyze(task, meta, deps)
        except asyncio.CancelledError:
            # Stopping (SIGTERM): the job goes back now, for another analyzer to take at
            # once, not when its lease runs out; not an attempt either.
            await asyncio.shield(_give_back(deps, task_id))
            raise
        except TRANSIENT_ERRORS as exc:
            # The database or broker went away, not the call's fault: not an attempt.
            log.warning("analysis_interrupted", error=repr(exc))
            await _patiently(lambda: deps.jobs.requeue(task_id, attempt_counts=False))
            await asyncio.sleep(INTERRUPTED_PAUSE_S)
            return
        except Exception as exc:
            log.exception("analysis_failed", attempts=task["analysis"]["attempts"])
            if task["analysis"]["attempts"] < deps.max_attempts:
                await _patiently(lambda: deps.jobs.requeue(task_id))
                return
            outcome, fields = _failed(meta, f"ошибка анализа: {type(exc).__name__}")
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
    await _finish(deps, task, outcome, fields)


async def _give_back(deps: Analyzer, task_id: str) -> None:
    """Requeue a job being stopped, once and briefly: with the database away its lease
    runs out instead, and the stop is not held up."""
    try:
        await asyncio.wait_for(deps.jobs.requeue(task_id, attempt_counts=False), GIVE_BACK_S)
    except (PyMongoError, TimeoutError) as exc:
        log.warning("analysis_not_given_back", error=repr(exc))
        return
    log.info("analysis_given_back")


async def _patiently(step: Callable[[], Awaitable[T]]) -> T:
    return await patiently(step, errors=(PyMongoError,), dependency="database")


def _failed(meta: Document, reason: str) -> tuple[Event, Document]:
    message = f"Не удалось проанализировать звонок: {reason}"
    return (
        CallFailed(**meta, code="analysis_failed", message=message, pipeline_stage="analysis"),
        {"error": {"code": "analysis_failed", "message": message, "pipeline_stage": "analysis"}},
    )


async def fail_poisoned(deps: Analyzer, task_id: str, reason: str) -> None:
    """Dead-letter hook: a message that cannot be processed fails its task for good."""
    task = await calls(deps.db).find_one({"_id": task_id})
    if task is None or task.get("analysis", {}).get("state") in ("done", "failed"):
        return
    outcome, fields = _failed(call_meta(task), reason)
    await _finish(deps, task, outcome, fields, claimed=False)


async def _finish(
    deps: Analyzer, task: Document, outcome: Event, fields: Document, *, claimed: bool = True
) -> None:
    task_id = task["_id"]
    envelope = Envelope.wrap(outcome, task_id=task_id)
    outbox_set, outbox_push = outbox_append(envelope, relay_after_s=PUBLISH_NOW_GRACE_S)
    status = TaskStatus.DELIVERING if isinstance(outcome, CallAnalyzed) else TaskStatus.FAILED
    score = fields.get("score")
    if score is not None:  # known to the score sorts before any call has it
        await _patiently(lambda: rollups.remember_score(deps.db, score["percent"]))
    heavy = call_details.split(fields)
    details_id = None
    if "transcript" in heavy:
        fields["search_pending"] = True  # cleared once the search index has it
    if heavy:
        details_id = await _patiently(lambda: call_details.store(deps.db, task_id, heavy))
        fields["details_id"] = details_id
    now = utcnow()
    owned = (
        {"analysis.worker": deps.worker_id, "analysis.state": "running"}
        if claimed
        else {"analysis.state": {"$nin": ["done", "failed"]}}
    )
    result = await _patiently(
        lambda: calls(deps.db).update_one(
            {"_id": task_id, **owned},
            {
                **moved(
                    status,
                    now,
                    set_fields={
                        **fields,
                        "analysis.state": "done" if status is TaskStatus.DELIVERING else "failed",
                        "analysis.finished_at": now,
                        **outbox_set,
                    },
                    push_fields=outbox_push,
                ),
                **({"$inc": {"revision": 1}} if status is TaskStatus.DELIVERING else {}),
            },
        )
    )
    if result.modified_count == 0:
        log.warning("analysis_lease_lost")  # another worker took the job over; it reports
        if details_id is not None:
            await _patiently(lambda: call_details.discard(deps.db, details_id))
        return
    if details_id is not None:
        await _patiently(lambda: call_details.keep_only(deps.db, task_id, details_id))
    log.info("analysis_finished", outcome=outcome.TYPE)
    deps.metrics.count_outcome("analysis", outcome)
    await _patiently(lambda: publish_now(calls(deps.db), deps.broker, task_id, envelope))
    if "transcript" in heavy:  # after the CRM's results are on their way
        indexed = search_index.Indexed(
            task_id, task["received_at"], task.get("manager_id"), heavy["transcript"]
        )
        await _patiently(lambda: search_index.index_calls(deps.db, [indexed]))


async def _download(db: AsyncDatabase[Document], file_id: str, path: Path) -> None:
    stream = await AsyncGridFSBucket(db, bucket_name=AUDIO_BUCKET).open_download_stream(file_id)
    out = await asyncio.to_thread(path.open, "wb")
    try:
        while chunk := await stream.readchunk():
            await asyncio.to_thread(out.write, chunk)
    finally:
        await asyncio.to_thread(out.close)


ModelT = TypeVar("ModelT", Binding, Table, Template, Tracker)
Bound = tuple[str, TemplateRef, Template]  # a binding that applies: its id, its template


def _stored(model: type[ModelT], document: Document) -> ModelT:
    """A catalog document as its model (the webhook secret is not the analyzer's business)."""
    fields = {name: document[name] for name in model.model_fields if name in document}
    if "webhook" in fields:
        fields["webhook"] = {"url": fields["webhook"]["url"]}
    return model.model_validate(fields)


@dataclass(frozen=True)
class Trackers:
    """Every tracker by id, and the owners of those that belong to someone."""

    by_id: dict[str, Tracker]
    owners: dict[str, User]  # by tracker id

    def counted_on(self, manager_id: str) -> dict[str, Tracker]:
        """The trackers counted on a call of this manager: everyone's, and those whose
        owners may see it (a dictionary's name and hits stay with its owner's calls)."""
        return {
            tracker_id: tracker
            for tracker_id, tracker in self.by_id.items()
            if (owner := self.owners.get(tracker_id)) is None or owner.sees_manager(manager_id)
        }


async def trackers_of(db: AsyncDatabase[Document]) -> Trackers:
    """Every tracker, with its owner."""
    documents = await db[TRACKERS].find({}).to_list()
    users = await owners_of(db, documents)
    return Trackers(
        by_id={d["_id"]: _stored(Tracker, d) for d in documents},
        owners={d["_id"]: users[d["owner_id"]] for d in documents if d.get("owner_id") in users},
    )


async def _applying(
    deps: Analyzer, call: Call, trackers: Mapping[str, Tracker]
) -> tuple[list[Bound], list[tuple[str, Table]]]:
    """The bindings (their templates with their trackers' phrases) and tables that apply."""
    bindings: list[Bound] = []
    for document in await deps.db[BINDINGS].find({}).to_list():
        binding = _stored(Binding, document)
        if not binding_applies(binding, document["created_at"], call):
            continue
        template = await deps.db[TEMPLATES].find_one({"_id": binding.template_id})
        if template is not None:
            ref: TemplateRef = {
                "id": template["_id"],
                "name": template["name"],
                "version": template.get("version", 1),
            }
            scored = _stored(Template, template).listening_for(trackers)
            bindings.append((document["_id"], ref, scored))
    tables = [
        (document["_id"], table)
        for document in await deps.db[TABLES].find({}).to_list()
        if table_applies(
            table := _stored(Table, document),
            document["created_at"],
            call,
        )
    ]
    return bindings, tables


def _manager_phrases(bindings: list[Bound]) -> tuple[str, ...]:
    """What the call's scripts expect the manager to say (cues to who is the manager)."""
    return tuple(
        dict.fromkeys(
            phrase
            for _, _, template in bindings
            for stage in template.stages
            for point in stage.points
            if point.speaker == "manager" and not point.forbidden
            for phrase in point.phrases
        )
    )


def _vocabulary(
    bindings: list[Bound],
    tables: list[tuple[str, Table]],
    cues: Sequence[str],
) -> tuple[str, ...]:
    """What the call's scripts and tables listen for, most telling first (the ASR keeps
    only as much as its prompt holds): the manager's phrases, the other points' phrases
    (a point's tracker's too), the tables' phrases, then the cues to who is the manager.
    Trackers alone bias nothing: what they would make the ASR hear is not measured."""
    points = [
        point for _, _, template in bindings for stage in template.stages for point in stage.points
    ]
    return tuple(
        dict.fromkeys(
            [
                *_manager_phrases(bindings),
                *(phrase for point in points for phrase in point.phrases),
                *(
                    phrase
                    for _, table in tables
                    for spec in table.fields
                    for phrase in spec.phrases or []
                ),
                *cues,
            ]
        )
    )


async def _transcribe(
    task: Document,
    deps: Analyzer,
    bindings: list[Bound],
    tables: list[tuple[str, Table]],
    *,
    learn: bool,
    language: LanguageSetting,
) -> Transcription:
    """Hear the stored recording (download, decode, speakers, ASR) in a worker thread."""
    audio = task["audio"]
    mono = int(audio["channels"]) == 1
    voiceprint = (
        await voiceprints.voiceprint_of(deps.db, task["manager_id"]) if learn and mono else None
    )
    listening = Listening(
        transcriber=deps.transcriber,
        encoder=deps.encoder,
        hints=RoleHints(
            voiceprint=voiceprint,
            cue_phrases=deps.role_cues,
            script_phrases=_manager_phrases(bindings),
            min_similarity=deps.voiceprint_min_similarity,
            min_margin=deps.voiceprint_min_margin,
        ),
        vocabulary=_vocabulary(bindings, tables, deps.role_cues),
        manager_channel=deps.manager_channel,
        embed_stereo_voices=learn,
        language=language,
    )
    with tempfile.TemporaryDirectory(prefix="rop-analysis-") as temp:
        work_dir = Path(temp)
        source = work_dir / f"call.{audio['container']}"
        await _download(deps.db, audio["file_id"], source)
        return await asyncio.to_thread(
            transcribe_call,
            source,
            channels=int(audio["channels"]),
            duration_s=float(task["probed_duration_s"]),
            listening=listening,
            work_dir=work_dir,
            part_s=deps.part_s,
        )


async def _analyze(task: Document, meta: Document, deps: Analyzer) -> tuple[Event, Document]:
    call = Call(
        received_at=task["received_at"],
        manager_id=task["manager_id"],
        stage_id=task.get("stage_id"),
        deal_stage_id=task.get("deal_stage_id"),
    )
    trackers = await trackers_of(deps.db)
    bindings, tables = await _applying(deps, call, trackers.by_id)
    connection = await load_connection_settings(deps.db)
    learn = connection.voiceprints_enabled
    fields: Document = {}
    if task["analysis"].get("mode") == "swap_roles":
        person = task["analysis"]["requested_by"]
        transcription = with_roles_swapped(task | await call_details.of(deps.db, task))
        fields["reviewed_by"] = person
        roles_by = {"by": person["email"], "at": utcnow()}
    else:
        transcription = await _transcribe(
            task, deps, bindings, tables, learn=learn, language=connection.call_language
        )
        fields["reviewed_by"] = None
        fields["parts"] = [
            {"index": part.index, "offset_s": round(part.offset_s, 3)}
            for part in transcription.parts
        ]
        fields["analysis.stage_seconds"] = {
            stage: round(seconds, 3) for stage, seconds in transcription.stage_seconds.items()
        }
        for stage, seconds in transcription.stage_seconds.items():
            deps.metrics.stage.labels(stage).observe(seconds)
        roles_by = {}
    llm_verdicts: dict[str, dict[str, StageVerdict]] = {}
    llm_values: dict[str, dict[str, Any]] = {}
    if deps.llm is not None:
        for _, ref, template in bindings:
            if ref["id"] not in llm_verdicts:
                llm_verdicts[ref["id"]] = {
                    stage.name: await deps.llm.judge_stage(stage, transcription.utterances)
                    for stage in template.stages
                    if stage.method == "llm"
                }
        for table_id, table in tables:
            llm_fields = [spec for spec in table.fields if spec.method == "llm"]
            llm_values[table_id] = await deps.llm.extract_fields(
                llm_fields, transcription.utterances
            )
    configured = deps.llm is not None
    checklists = [
        evaluate.checklist(
            binding_id,
            ref,
            template,
            transcription,
            llm_verdicts.get(ref["id"]) if configured else None,
        )
        for binding_id, ref, template in bindings
    ]
    if checklists and task.get("revision") is None and "blind_review" not in task:
        percent = connection.blind_review_percent
        if await pick_for_blind_review(deps.db, task["manager_id"], task["received_at"], percent):
            fields["blind_review"] = {"state": "waiting", "picked_at": utcnow()}
    # What people corrected stays corrected, next to the new machine verdicts.
    checklists, last_correction = with_corrections(checklists, task.get("corrections") or [])
    if last_correction is not None and fields["reviewed_by"] is None:
        fields["reviewed_by"] = last_correction["by"]
    results: Results = {
        "checklists": checklists,
        "tables": [
            evaluate.table_row(
                table_id, table, transcription, llm_values.get(table_id) if configured else None
            )
            for table_id, table in tables
        ],
        "metrics": metrics_document(transcription),
        "trackers": evaluate.trackers_hits(trackers.counted_on(call.manager_id), transcription),
    }
    if transcription.language is not None:
        results["language"] = transcription.language
    fields["trackers_hit"] = [hits["tracker_id"] for hits in results["trackers"]]
    stored = transcription_fields(transcription, keep_voices=learn)
    stored["roles"] |= roles_by
    fields |= stored | {"results": results, "score": overall_score(checklists)}
    if learn:
        await _learn_voice(deps, task, transcription)
    outcome = CallAnalyzed(
        **meta,
        duration_s=float(task["probed_duration_s"]),
        checklists=len(results["checklists"]),
        tables=len(results["tables"]),
    )
    return outcome, fields


RETAG_BATCH = 50


async def retag_pending(db: AsyncDatabase[Document], limit: int = RETAG_BATCH) -> int:
    """Count again, on their stored transcripts, the trackers people applied to calls
    analysed before (`retag`); how many calls were re-tagged. A call analysed again
    meanwhile is left for the next round (its new analysis counted every tracker already,
    or will)."""
    pending = await (
        calls(db)
        .find(
            {"retag": {"$exists": True}},
            {"retag": 1, "details_id": 1, "manager_id": 1, "results.trackers": 1},
        )
        .limit(limit)
        .to_list()
    )
    if not pending:
        return 0
    trackers = await trackers_of(db)
    retagged = 0
    for call in pending:
        transcript = (await call_details.of(db, call, {"transcript": 1})).get("transcript")
        tokens = tokenize(utterances_of(transcript or []))
        again = set(call["retag"])
        countable = trackers.counted_on(call["manager_id"])
        counted = [
            hits
            for tracker_id in call["retag"]
            if tracker_id in countable
            and (hits := evaluate.tracker_hits(tracker_id, countable[tracker_id], tokens))
        ]
        before = (call.get("results") or {}).get("trackers") or []
        merged = [hits for hits in before if hits["tracker_id"] not in again] + counted
        written = await calls(db).update_one(
            {"_id": call["_id"], "retag": call["retag"], "details_id": call.get("details_id")},
            {
                "$set": {
                    "results.trackers": merged,
                    "trackers_hit": [hits["tracker_id"] for hits in merged],
                },
                "$unset": {"retag": ""},
            },
        )
        retagged += written.modified_count
    return retagged


async def _learn_voice(deps: Analyzer, task: Document, transcription: Transcription) -> None:
    """Teach the manager's voiceprint this call's manager voice, where it is known to be
    theirs: the manager channel of a stereo call, or roles a person set."""
    voice = transcription.voices.get("manager")
    if voice is None or transcription.roles.method not in ("channels", "person"):
        return
    await voiceprints.learn(
        deps.db,
        task["manager_id"],
        task_id=task["_id"],
        embedding=voice.embedding,
        speech_s=voice.speech_s,
        source="stereo" if transcription.roles.method == "channels" else "confirmed",
    )


async def work_forever(deps: Analyzer, wakeup: asyncio.Event, *, poll_s: float = 5.0) -> None:
    """Beat the heartbeat; claim and run jobs one at a time; when idle, wait for a wake-up
    or the poll interval. The database or broker being away delays this, never ends it."""
    beating = asyncio.create_task(deps.heartbeat.beat_forever())
    counting = asyncio.create_task(_count_jobs_forever(deps))
    try:
        while True:
            wakeup.clear()
            task = await _patiently(deps.jobs.claim)
            if task is not None:
                await run_job(task, deps)
                continue
            # Idle: index the calls whose indexing a crash interrupted, or that came before
            # it; count trackers people applied to earlier calls.
            if await _patiently(lambda: search_index.index_pending(deps.db)):
                continue
            if await _patiently(lambda: retag_pending(deps.db)):
                continue
            await woken(wakeup, poll_s)
    finally:
        beating.cancel()
        counting.cancel()
        await deps.heartbeat.retire()


async def _count_jobs_forever(deps: Analyzer) -> None:
    """Keep the jobs gauge (queued, running) current, once a heartbeat."""
    while True:
        try:
            for state, count in (await deps.jobs.counts()).items():
                deps.metrics.jobs.labels(state).set(count)
        except PyMongoError as exc:
            log.warning("analysis_jobs_not_counted", error=repr(exc))
        await asyncio.sleep(deps.heartbeat_s)
