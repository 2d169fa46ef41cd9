"""The analyzer's jobs against real SecantusDB/GridFS, RabbitMQ, ffmpeg and faster-whisper."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from gridfs import AsyncGridFSBucket

from devtools.samples import Line, Voices
from services.analyzer.asr import WhisperTranscriber
from services.analyzer.handlers import (
    Analyzer,
    fail_poisoned,
    queue_analysis,
    run_job,
)
from services.analyzer.llm import LlmJudge
from services.analyzer.voice_encoder import VoiceEncoder
from services.ingest.backoffice import catalog, commands, corrections
from services.ingest.backoffice.accounts import Role, User
from services.ingest.backoffice.corrections import CorrectionForm
from shared import search_index, voiceprints
from shared.amqp import Broker
from shared.events import AudioStored, CallAnalyzed, CallFailed, Envelope, utcnow
from shared.outbox import PUBLISH_NOW_GRACE_S, OutboxRelay
from shared.scripts import Binding, Table, Template, Tracker
from shared.settings import Settings
from tests.analysis import analyse, analyzer, stages, stored_call, stored_task
from tests.audio import GOOD_CALL, MONO_CALL, call, spoken
from tests.conftest import EventTap
from tests.fakes import FakeLlm, answer
from tests.helpers import LOCAL_POLICY, wait_for

pytestmark = pytest.mark.timeout(300)

RUDE_CALL: list[Line] = [
    ("manager", 1.0, "Hello."),
    ("client", 3.0, "Our budget is five hundred thousand."),
    ("manager", 7.0, "That is not my problem."),
]
SCRIPT = {
    "name": "First call",
    "stages": [
        {
            "name": "Greeting",
            "threshold": 60,
            "points": [
                {
                    "text": "Named the company",
                    "weight": 60,
                    "within_s": 30,
                    "phrases": ["flower company", "компания ромашка"],
                },
                {"text": "Asked if convenient", "weight": 40, "phrases": ["convenient to talk"]},
            ],
        },
        {
            "name": "Next step",
            "threshold": 50,
            "points": [
                # The phrases of the tracker «Перезвон» (`catalog_items`).
                {"text": "Agreed to call back", "weight": 100, "tracker_id": "trk_callback"}
            ],
        },
        {
            "name": "Politeness",
            "threshold": 100,
            "points": [
                {
                    "text": "No rudeness",
                    "weight": 100,
                    "forbidden": True,
                    "phrases": ["not my problem"],
                }
            ],
        },
        {
            "name": "Decision maker",
            "method": "llm",
            "threshold": 50,
            "criteria": "Found out who decides",
        },
    ],
}
TRACKERS = {
    "trk_callback": {"name": "Перезвон", "phrases": ["call you back", "call back later"]},
    "trk_budget": {"name": "Бюджет", "phrases": ["budget", "how much"], "speaker": "client"},
}
TABLE = {
    "name": "Deals",
    "webhook": {"url": "https://crm.example/hooks/table"},
    "fields": [
        {
            "key": "budget",
            "type": "number",
            "method": "regex",
            "pattern": r"budget is ([\d ,]+)",
            "speaker": "client",
        },
        {
            "key": "wants_callback",
            "type": "boolean",
            "method": "phrases",
            "phrases": ["call you back"],
        },
        {"key": "talk_ratio", "type": "number", "method": "metric", "metric": "talk_ratio"},
    ],
}


@pytest.fixture
async def deps(
    settings: Settings, transcriber: WhisperTranscriber, voice_encoder: VoiceEncoder
) -> AsyncIterator[Analyzer]:
    async with analyzer(settings, transcriber, voice_encoder) as running:
        yield running


@pytest.fixture
async def catalog_items(deps: Analyzer) -> dict[str, str]:
    now = utcnow()
    for tracker_id, tracker in TRACKERS.items():  # with the ids the script names
        fields = Tracker.model_validate(tracker).model_dump(mode="json")
        await deps.db.trackers.insert_one(
            {"_id": tracker_id, **fields, "created_at": now, "updated_at": now}
        )
    template = await catalog.create(
        deps.db, catalog.TEMPLATE, Template.model_validate(SCRIPT), policy=LOCAL_POLICY
    )
    binding = await catalog.create(
        deps.db,
        catalog.BINDING,
        Binding.model_validate(
            {
                "template_id": template["_id"],
                "stage_id": "funnel_primary_calls",
                "webhook": {"url": "https://crm.example/hooks/checklist"},
            }
        ),
        policy=LOCAL_POLICY,
    )
    other_funnel = await catalog.create(
        deps.db,
        catalog.BINDING,
        Binding.model_validate(
            {
                "template_id": template["_id"],
                "stage_id": "other_funnel",
                "webhook": {"url": "https://crm.example/hooks/other"},
            }
        ),
        policy=LOCAL_POLICY,
    )
    table = await catalog.create(
        deps.db, catalog.TABLE, Table.model_validate(TABLE), policy=LOCAL_POLICY
    )
    return {"binding": binding["_id"], "other": other_funnel["_id"], "table": table["_id"]}


async def test_good_call_is_scored_as_scripted(
    deps: Analyzer, catalog_items: dict[str, str], tap: EventTap
) -> None:
    envelope, event = await stored_call(deps, GOOD_CALL)
    task = await analyse(deps, envelope, event)

    assert task["status"] == "delivering"
    assert task["analysis"]["state"] == "done"
    (checklist,) = task["results"]["checklists"]
    assert checklist["binding_id"] == catalog_items["binding"]
    assert checklist["template"]["version"] == 1  # the version it was scored with
    assert task["blind_review"]["state"] == "waiting"  # the manager's first call this week
    verdicts = stages(task)
    assert verdicts["Greeting"]["completion"] == 100
    assert (verdicts["Greeting"]["method"], verdicts["Decision maker"]["method"]) == (
        "phrases",
        "llm",
    )
    assert verdicts["Next step"]["passed"]
    assert verdicts["Politeness"]["passed"]
    assert verdicts["Decision maker"]["evaluated"] is False
    assert checklist["score"] == {"passed": 3, "applicable": 3, "percent": 100.0, "text": "3/3"}
    company, convenient = verdicts["Greeting"]["evidence"]
    assert company["speaker"] == "manager"
    assert company["start_s"] == pytest.approx(1.0 + 2.6, abs=1.5)  # "flower company" ends the line
    assert convenient["start_s"] == pytest.approx(9.5 + 0.6, abs=1.5)
    callback = verdicts["Next step"]["evidence"][0]
    assert callback["start_s"] == pytest.approx(18.0 + 0.6, abs=1.5)

    # Every tracker is counted, with quotes; «Перезвон» also decided "Next step" above.
    callback, budget = task["results"]["trackers"]
    assert (callback["name"], callback["hits"], budget["name"], budget["hits"]) == (
        "Перезвон",
        1,
        "Бюджет",
        1,
    )
    assert callback["quotes"][0]["speaker"] == "manager"
    assert callback["quotes"][0]["start_s"] == pytest.approx(18.0 + 0.6, abs=1.5)
    assert budget["quotes"][0]["speaker"] == "client"
    assert task["trackers_hit"] == ["trk_callback", "trk_budget"]

    (row,) = task["results"]["tables"]
    assert row["row"]["budget"] == 500000
    assert row["row"]["wants_callback"] is True
    metrics = task["results"]["metrics"]
    assert row["row"]["talk_ratio"] == metrics["talk_ratio"]
    assert metrics["talk_ratio"] == pytest.approx(0.66, abs=0.1)
    assert [line["speaker"] for line in task["transcript"]][:2] == ["manager", "client"]

    async def analysed() -> list[Any]:
        return [e for _, e in tap.events() if isinstance(e, CallAnalyzed)]

    (published,) = await wait_for(analysed)
    assert (published.checklists, published.tables) == (1, 1)
    final = await deps.db.calls.find_one({"_id": envelope.task_id})
    assert final is not None
    assert (final["outbox"], final["outbox_pending"]) == ([], False)  # published, taken out
    # The transcript is searchable: "flower company", said by the manager.
    assert "search_pending" not in final
    day = final["received_at"].date()
    found = await search_index.postings(deps.db, ["flower"], day, day)
    assert found[envelope.task_id].speakers == search_index.SPEAKER_BITS["manager"]


async def test_rude_call_fails_the_stages_it_missed(
    deps: Analyzer, catalog_items: dict[str, str]
) -> None:
    envelope, event = await stored_call(deps, RUDE_CALL)
    verdicts = stages(await analyse(deps, envelope, event))
    assert not verdicts["Greeting"]["passed"]
    assert not verdicts["Next step"]["passed"]
    politeness = verdicts["Politeness"]
    assert not politeness["passed"]
    assert politeness["evidence"][0]["speaker"] == "manager"
    assert politeness["evidence"][0]["start_s"] == pytest.approx(7.0, abs=1.5)
    assert politeness["recommendation"] == "Нарушено: No rudeness"


async def test_a_reanalysed_call_keeps_what_people_corrected(
    deps: Analyzer, catalog_items: dict[str, str]
) -> None:
    envelope, event = await stored_call(deps, RUDE_CALL)
    await analyse(deps, envelope, event)
    lead = User("u1", "lead@test.local", Role.SUPERVISOR, None, True, "Лид")
    form = CorrectionForm(
        binding_id=catalog_items["binding"],
        stage="Politeness",
        verdict="passed",
        reason="Это была цитата клиента",
    )
    await corrections.correct(deps.db, lead, envelope.task_id, form)

    async def analysed_again() -> dict[str, Any]:
        await commands.reanalyze(deps.db, lead, envelope.task_id)
        job = await deps.jobs.claim()
        assert job is not None
        await run_job(job, deps)
        return await stored_task(deps, envelope.task_id)

    again = await analysed_again()
    politeness = stages(again)["Politeness"]
    assert politeness["passed"]  # the person's verdict, over the new machine one
    assert politeness["review"]["machine"]["passed"] is False
    assert again["results"]["checklists"][0]["score"]["passed"] == 1
    assert again["reviewed_by"]["email"] == "lead@test.local"
    assert len(again["corrections"]) == 1
    assert again["blind_review"] == (await stored_task(deps, envelope.task_id))["blind_review"]

    # Saved again, the script is a new version: its stages are the machine's to judge.
    template_id = again["results"]["checklists"][0]["template"]["id"]
    template = await catalog.get(deps.db, catalog.TEMPLATE, template_id, lead)
    await catalog.replace(
        deps.db,
        catalog.TEMPLATE,
        template_id,
        Template.model_validate({"name": template["name"], "stages": template["stages"]}),
        policy=LOCAL_POLICY,
        by=lead,
    )
    newer = await analysed_again()
    assert newer["results"]["checklists"][0]["template"]["version"] == 2
    assert not stages(newer)["Politeness"]["passed"]
    assert "review" not in stages(newer)["Politeness"]
    assert newer["reviewed_by"] is None
    assert len(newer["corrections"]) == 1  # kept, for what version 1 was judged by


async def test_bindings_apply_by_funnel_and_only_to_later_calls(
    deps: Analyzer, catalog_items: dict[str, str]
) -> None:
    envelope, event = await stored_call(deps, RUDE_CALL, stage_id="other_funnel")
    task = await analyse(deps, envelope, event)
    assert [c["binding_id"] for c in task["results"]["checklists"]] == [catalog_items["other"]]
    assert [t["table_id"] for t in task["results"]["tables"]] == [catalog_items["table"]]

    # A call received before the bindings and the table were saved is scored by none.
    early, early_event = await stored_call(deps, RUDE_CALL, stage_id="other_funnel")
    await deps.db.calls.update_one(
        {"_id": early.task_id}, {"$set": {"received_at": utcnow() - timedelta(days=1)}}
    )
    task = await analyse(deps, early, early_event)
    assert task["results"]["checklists"] == []
    assert task["results"]["tables"] == []


async def test_a_dead_workers_job_is_taken_over_then_given_up(
    deps: Analyzer, catalog_items: dict[str, str], tap: EventTap
) -> None:
    envelope, event = await stored_call(deps, GOOD_CALL)
    await queue_analysis(envelope, event, deps=deps)
    dead = dataclasses.replace(deps, worker_id="analyzer-dead")
    assert await dead.jobs.claim() is not None  # ...and the worker dies here
    assert await deps.jobs.claim() is None  # its lease still holds
    await deps.db.calls.update_one(
        {"_id": envelope.task_id},
        {"$set": {"analysis.lease_until": utcnow() - timedelta(seconds=1), "analysis.attempts": 3}},
    )
    job = await deps.jobs.claim()
    assert job is not None
    assert job["analysis"]["attempts"] == 4
    await run_job(job, deps)
    task = await deps.db.calls.find_one({"_id": envelope.task_id})
    assert task is not None
    assert task["status"] == "failed"
    assert task["error"]["code"] == "analysis_failed"

    async def failed() -> list[Any]:
        return [e for _, e in tap.events() if isinstance(e, CallFailed)]

    (event_failed,) = await wait_for(failed)
    assert event_failed.pipeline_stage == "analysis"


async def test_a_stopped_worker_hands_its_job_back_at_once(
    deps: Analyzer, catalog_items: dict[str, str]
) -> None:
    envelope, event = await stored_call(deps, GOOD_CALL)
    await queue_analysis(envelope, event, deps=deps)
    stopping = dataclasses.replace(deps, worker_id="analyzer-stopping")
    job = await stopping.jobs.claim()
    assert job is not None
    running = asyncio.create_task(run_job(job, stopping))
    await asyncio.sleep(0)  # it starts the analysis, up to its first wait
    running.cancel()  # what SIGTERM does
    with pytest.raises(asyncio.CancelledError):
        await running
    task = await stored_task(deps, envelope.task_id)
    assert task["analysis"]["state"] == "queued"
    # Taken over at once, its lease not waited for, and the stop did not count as a try.
    taken = await deps.jobs.claim()
    assert taken is not None
    assert taken["analysis"]["attempts"] == job["analysis"]["attempts"]


async def test_a_worker_that_lost_its_job_leaves_the_call_its_successor_s_transcript(
    deps: Analyzer, catalog_items: dict[str, str]
) -> None:
    envelope, event = await stored_call(deps, GOOD_CALL)
    await queue_analysis(envelope, event, deps=deps)
    slow = dataclasses.replace(deps, worker_id="analyzer-slow")
    slow_job = await slow.jobs.claim()
    assert slow_job is not None
    await deps.db.calls.update_one(
        {"_id": envelope.task_id},
        {"$set": {"analysis.lease_until": utcnow() - timedelta(seconds=1)}},
    )
    job = await deps.jobs.claim()
    assert job is not None
    await run_job(job, deps)
    successor = await stored_task(deps, envelope.task_id)
    await run_job(slow_job, slow)  # it finishes after all, the job no longer its own
    after = await stored_task(deps, envelope.task_id)  # one transcript: the call's
    assert (after["details_id"], after["revision"]) == (
        successor["details_id"],
        successor["revision"],
    )


async def test_an_outcome_the_broker_was_away_for_is_published_by_the_relay(
    deps: Analyzer, settings: Settings, tap: EventTap
) -> None:
    """Stored with the outcome in the task's outbox, so it is published once the broker is
    back, with the same event id."""
    envelope, _ = await stored_call(deps, RUDE_CALL)
    away = Broker(settings.amqp_url, prefix=settings.amqp_prefix)  # not connected: it fails
    await fail_poisoned(dataclasses.replace(deps, broker=away), envelope.task_id, "тест")
    task = await deps.db.calls.find_one({"_id": envelope.task_id})
    assert task["status"] == "failed"
    (pending,) = task["outbox"]
    assert task["outbox_pending"] is True
    relay = OutboxRelay(deps.db.calls, deps.broker)
    assert await relay.drain_once() == 0  # the analyzer may still publish it itself
    later = utcnow() + timedelta(seconds=PUBLISH_NOW_GRACE_S)
    assert await relay.drain_once(as_of=later) == 1

    async def published() -> list[Any]:
        return [e for e, _ in tap.events() if e.event_id == pending["event_id"]]

    await wait_for(published)
    assert (await deps.db.calls.find_one({"_id": envelope.task_id}))["outbox_pending"] is False


MONO_VOICES = Voices("en-us+m6", "en-029+f1")


async def stored_mono_call(deps: Analyzer, **task: Any) -> tuple[Envelope, AudioStored]:
    """MONO_CALL as one mixed channel: the client answers, says the script's phrases."""
    return await stored_call(
        deps, MONO_CALL, stereo=False, duration_s=26, sound={"voices": MONO_VOICES}, **task
    )


async def test_mono_call_is_scored_by_who_said_what(
    deps: Analyzer, catalog_items: dict[str, str]
) -> None:
    envelope, event = await stored_mono_call(deps)
    task = await analyse(deps, envelope, event)
    verdicts = stages(task)
    # The client asked whether it is convenient to talk: that is not the manager's point.
    assert verdicts["Greeting"]["completion"] == 60
    assert [q["speaker"] for q in verdicts["Greeting"]["evidence"]] == ["manager"]
    # Only the client said "call you back": the manager agreed no next step.
    assert not verdicts["Next step"]["passed"]
    # The client's "not my problem" is no rudeness of the manager's.
    assert verdicts["Politeness"]["passed"]
    assert verdicts["Politeness"]["evidence"] == []
    rude = [line for line in task["transcript"] if "not my problem" in line["text"].lower()]
    assert [line["speaker"] for line in rude] == ["client"]
    assert task["roles"] == {"method": "cues", "confidence": pytest.approx(0.65, abs=0.2),
                             "uncertain": False}  # fmt: skip
    assert task["transcript"][0]["speaker"] == "client"  # «Hello?» first, yet not the manager
    manager_s = task["results"]["metrics"]["talk_time_manager_s"]
    client_s = task["results"]["metrics"]["talk_time_client_s"]
    layout = spoken(call(MONO_CALL, duration_s=26, stereo=False, voices=MONO_VOICES))
    expected = sum(x.end_s - x.start_s for x in layout if x.speaker == "manager") / sum(
        x.end_s - x.start_s for x in layout
    )
    assert manager_s / (manager_s + client_s) == pytest.approx(expected, abs=0.1)
    assert set(task["voices"]) == {"manager", "client"}
    assert task["revision"] == 1


async def test_a_voiceprint_from_stereo_calls_decides_a_mono_call(
    deps: Analyzer, catalog_items: dict[str, str]
) -> None:
    manager = {"manager_id": "mgr_voice"}
    for client_voice in ("en-gb+f2", "en-us+f3"):
        sound = {"voices": Voices(MONO_VOICES.manager, client_voice)}
        await analyse(deps, *await stored_call(deps, GOOD_CALL, sound=sound, **manager))
    (print_,) = await voiceprints.list_voiceprints(deps.db)
    assert (print_["manager_id"], print_["stereo_calls"], print_["usable"]) == (
        "mgr_voice",
        2,
        True,
    )

    envelope, event = await stored_mono_call(deps, **manager)
    by_voice = await analyse(deps, envelope, event)
    assert by_voice["roles"]["method"] == "voiceprint"
    assert by_voice["roles"]["confidence"] >= 0.9
    assert stages(by_voice)["Greeting"]["completion"] == 60

    assert await voiceprints.forget(deps.db, "mgr_voice")
    assert await voiceprints.list_voiceprints(deps.db) == []
    assert await deps.db.call_details.count_documents({"voices": {"$exists": True}}) == 0
    await deps.db.calls.update_one(
        {"_id": envelope.task_id}, {"$set": {"analysis": {"state": "queued", "attempts": 0}}}
    )
    by_cues = await analyse(deps, envelope, event)
    assert by_cues["roles"]["method"] == "cues"
    assert by_cues["roles"]["confidence"] < by_voice["roles"]["confidence"]
    assert stages(by_cues)["Greeting"]["completion"] == 60
    assert by_cues["revision"] == 2


def _verdicts(task: dict[str, Any]) -> dict[str, tuple[bool, float]]:
    return {name: (v["passed"], v["completion"]) for name, v in stages(task).items()}


OVERLAP_CALL: list[Line] = [
    *GOOD_CALL[:2],
    ("manager", 9.5, "We offer fresh flowers with delivery every morning to your office."),
    ("client", 11.5, "Sorry, how much does it cost?"),  # while the manager still speaks
    ("manager", 16.0, "I will call you back on Thursday."),
]


@pytest.mark.parametrize(
    ("leak_db", "encoding", "rate"),
    [(-20.0, None, 16000), (-24.0, "mp3-32k", 8000), (-30.0, None, 16000)],
)
async def test_echo_between_channels_is_heard_once(
    deps: Analyzer,
    catalog_items: dict[str, str],
    leak_db: float,
    encoding: str | None,
    rate: int,
) -> None:
    voices = Voices("en-us+m3", "en-gb+f2")
    clean_sound = {"voices": voices, "encoding": encoding, "sample_rate_hz": rate}
    clean = await analyse(deps, *await stored_call(deps, GOOD_CALL, sound=clean_sound))
    leaky = await analyse(
        deps, *await stored_call(deps, GOOD_CALL, sound={**clean_sound, "leak_db": leak_db})
    )
    assert _verdicts(leaky) == _verdicts(clean)
    texts = [line["text"].lower() for line in leaky["transcript"]]
    assert len(leaky["transcript"]) == len(clean["transcript"])
    assert len(set(texts)) == len(texts)  # no line heard twice
    metrics, reference = leaky["results"]["metrics"], clean["results"]["metrics"]
    assert metrics["talk_ratio"] == pytest.approx(reference["talk_ratio"], abs=0.08)
    assert metrics["interruptions"] == 0

    overlap = await analyse(
        deps, *await stored_call(deps, OVERLAP_CALL, sound={**clean_sound, "leak_db": leak_db})
    )
    assert overlap["results"]["metrics"]["interruptions"] == 1


async def test_swapped_roles_are_scored_again_without_the_audio(
    deps: Analyzer, catalog_items: dict[str, str]
) -> None:
    envelope, event = await stored_mono_call(deps)
    before = await analyse(deps, envelope, event)
    await AsyncGridFSBucket(deps.db, bucket_name="audio").delete(envelope.task_id)
    person = User("u1", "lead@test.local", Role.SUPERVISOR, None, True, "Лид")
    await commands.swap_roles(deps.db, person, envelope.task_id)
    job = await deps.jobs.claim()
    assert job is not None
    await run_job(job, deps)
    after = await stored_task(deps, envelope.task_id)

    assert after["status"] == "delivering"
    assert after["revision"] == 2
    assert after["reviewed_by"] == {"id": "u1", "email": "lead@test.local", "name": "Лид"}
    assert after["roles"]["method"] == "person"
    assert after["roles"]["by"] == "lead@test.local"
    flipped = {"manager": "client", "client": "manager"}
    assert [line["speaker"] for line in after["transcript"]] == [
        flipped[line["speaker"]] for line in before["transcript"]
    ]
    # What the client said now counts for the "manager": "call you back", "not my problem".
    assert stages(after)["Next step"]["passed"]
    assert not stages(after)["Politeness"]["passed"]
    old, new = before["results"]["metrics"], after["results"]["metrics"]
    assert new["talk_time_manager_s"] == old["talk_time_client_s"]
    assert new["talk_ratio"] == pytest.approx(1 - old["talk_ratio"], abs=0.002)
    assert [entry["status"] for entry in after["timeline"]][-2:] == [
        "roles_swap_requested",
        "delivering",
    ]
    # The search index follows: the client's "call you back" is the manager's now.
    day = after["received_at"].date()
    back = await search_index.postings(deps.db, ["back"], day, day)
    assert back[envelope.task_id].speakers == search_index.SPEAKER_BITS["manager"]
    (print_,) = await voiceprints.list_voiceprints(deps.db)
    assert (print_["manager_id"], print_["confirmed_calls"]) == ("mgr_001", 1)
    assert after["voices"]["manager"] == before["voices"]["client"]


async def test_llm_stages_go_to_the_model(
    deps: Analyzer, catalog_items: dict[str, str], fake_llm: tuple[FakeLlm, LlmJudge]
) -> None:
    llm, judge = fake_llm
    llm.replies = [
        answer(
            {
                "applicable": True,
                "completion": 75,
                "quotes": [{"text": "I will call you back on Thursday"}],
                "recommendation": None,
            }
        )
    ]
    with_llm = dataclasses.replace(deps, llm=judge)
    envelope, event = await stored_call(with_llm, GOOD_CALL)
    verdicts = stages(await analyse(with_llm, envelope, event))
    decision = verdicts["Decision maker"]
    assert decision["evaluated"]
    assert decision["completion"] == 75
    assert decision["evidence"][0]["speaker"] == "manager"
    assert decision["evidence"][0]["start_s"] == pytest.approx(18.0, abs=1.5)
    assert "Found out who decides" in llm.requests[0]["messages"][-1]["content"]


async def test_a_poison_message_is_dead_lettered_and_fails_its_task(
    deps: Analyzer, settings: Settings, tap: EventTap
) -> None:
    envelope, _ = await stored_call(deps, RUDE_CALL)
    poison = envelope.model_copy(update={"data": {"call_id": "only this"}})
    consumer = asyncio.create_task(
        deps.broker.consume(
            "analyzer",
            functools.partial(queue_analysis, deps=deps),
            prefetch=1,
            on_dead_letter=functools.partial(fail_poisoned, deps),
        )
    )
    try:
        await deps.broker.publish(poison)

        async def failed() -> dict[str, Any] | None:
            task = await deps.db.calls.find_one({"_id": envelope.task_id, "status": "failed"})
            return task

        task = await wait_for(failed)
        assert task["error"]["code"] == "analysis_failed"
        assert "повреждённое" in task["error"]["message"]

        async def announced() -> list[Any]:
            return [e for _, e in tap.events() if isinstance(e, CallFailed)]

        await wait_for(announced)
        dead = await deps.broker.message_count("analyzer.dead")
        assert dead == 1
    finally:
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer


TELEPHONE_CALL: list[Line] = [
    ("manager", 1.0, "Good afternoon, my name is Anna from the flower company."),
    ("client", 5.5, "Yes, hello."),
    ("manager", 7.5, "Is it convenient to talk for a minute?"),
    ("client", 11.0, "Yes, go ahead."),
    ("manager", 13.5, "We deliver fresh roses to offices every morning."),
    ("client", 18.0, "We need flowers for the reception."),
    ("manager", 21.5, "I will call you back on Thursday morning."),
]
# The same call in other words: what the script listens for is never said.
NEAR_MISS_CALL: list[Line] = [
    ("manager", 1.0, "Good afternoon, my name is Anna, I work with flowers."),
    *TELEPHONE_CALL[1:2],
    ("manager", 7.5, "Is now a good moment for you?"),
    *TELEPHONE_CALL[3:6],
    ("manager", 21.5, "I will phone again on Thursday morning."),
]
# Voices the bundled tiny.en hears at 8 kHz: these check the chain (codec, noise, the
# matcher's tolerance) end to end; how often it hears the script's words over many
# voices is what `make bench-analyze` measures.
TELEPHONE = [
    pytest.param("wav", True, Voices("en-us+m2", "en-gb+f2"), "ulaw", id="ulaw"),
    pytest.param("wav", True, Voices("en-us+m6", "en-gb+f1"), "alaw", id="alaw"),
    pytest.param("wav", False, Voices("en-gb-x-rp+m3", "en-us+f4"), "gsm", id="gsm-mono"),
    pytest.param("mp3", True, Voices("en-us+m4", "en-gb+f1"), "mp3-32k", id="mp3-32k"),
]


@pytest.mark.parametrize(("container", "stereo", "voices", "encoding"), TELEPHONE)
async def test_the_scripts_words_are_heard_on_telephone_audio(
    deps: Analyzer,
    catalog_items: dict[str, str],
    container: str,
    stereo: bool,
    voices: Voices,
    encoding: str,
) -> None:
    sound = {"voices": voices, "encoding": encoding, "sample_rate_hz": 8000, "noise_snr_db": 20.0}
    scripted = stages(
        await analyse(
            deps,
            *await stored_call(
                deps, TELEPHONE_CALL, stereo=stereo, duration_s=26, container=container, sound=sound
            ),
        )
    )
    assert scripted["Greeting"]["completion"] == 100, scripted["Greeting"]
    assert scripted["Next step"]["passed"]
    assert {q["speaker"] for v in scripted.values() for q in v["evidence"]} == {"manager"}

    unscripted = stages(
        await analyse(
            deps,
            *await stored_call(
                deps, NEAR_MISS_CALL, stereo=stereo, duration_s=26, container=container, sound=sound
            ),
        )
    )
    assert not unscripted["Greeting"]["passed"]
    assert unscripted["Greeting"]["completion"] == 0
    assert not unscripted["Next step"]["passed"]


UNRELATED_TALK = [
    "We deliver fresh roses and tulips to offices across the city.",
    "Our florists prepare every bouquet early in the morning.",
    "Many of our clients order flowers for their reception desk.",
    "The delivery is free for orders above ten thousand.",
    "We also take care of plants in pots and change the water.",
    "Seasonal flowers last longer and cost a little less.",
    "Our drivers arrive before nine so the office looks fresh.",
    "Last year we worked with three banks and two hotels.",
]


def _five_minutes() -> list[Line]:
    """The greeting, four minutes of unrelated talk, then the next step."""
    lines: list[Line] = [TELEPHONE_CALL[0], TELEPHONE_CALL[1]]
    start_s, turn = 8.0, 0
    while start_s < 280:
        text = UNRELATED_TALK[turn % len(UNRELATED_TALK)]
        lines.append(("manager" if turn % 2 == 0 else "client", start_s, text))
        start_s += 0.72 + 0.29 * len(text.split()) + 0.8
        turn += 1
    lines.append(("manager", 284.0, "Is it convenient to talk for a minute more?"))
    lines.append(("manager", 290.0, "I will call you back on Thursday morning."))
    return lines


async def test_phrases_after_minutes_of_other_talk_are_heard(
    deps: Analyzer, catalog_items: dict[str, str]
) -> None:
    sound = {
        "voices": Voices("en-us+m6", "en-gb+f1"),
        "encoding": "ulaw",
        "sample_rate_hz": 8000,
        "noise_snr_db": 20.0,
    }
    task = await analyse(
        deps,
        *await stored_call(deps, _five_minutes(), duration_s=300, container="wav", sound=sound),
    )
    verdicts = stages(task)
    assert verdicts["Greeting"]["completion"] == 100, verdicts["Greeting"]
    assert verdicts["Greeting"]["evidence"][1]["start_s"] > 280
    assert verdicts["Next step"]["passed"]
    assert verdicts["Next step"]["evidence"][0]["start_s"] > 285
