"""Who is who on a call, through the admin API: swapping and confirming roles, uncertain
roles in the list, and managers' voiceprints as personal data."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from pymongo import AsyncMongoClient

from devtools.samples import analysed_call, sample_details
from shared import rollups, voiceprints
from shared.settings import Settings
from tests.api_client import Client, admin, user

VOICE = np.full(256, 1 / 16, dtype=np.float32)  # a unit vector


def _mono(index: int, manager_id: str, *, uncertain: bool) -> dict[str, Any]:
    call = analysed_call(index, manager_id=manager_id)
    call["audio"] = {"file_id": call["_id"], "container": "wav", "channels": 1}
    call["roles"] = {
        "method": "talk_share" if uncertain else "cues",
        "confidence": 0.55 if uncertain else 0.8,
        "uncertain": uncertain,
    }
    return call


def _voices(call: dict[str, Any]) -> dict[str, Any]:
    return sample_details(
        call,
        voices={
            "manager": {"embedding": voiceprints.pack(VOICE), "speech_s": 30.0},
            "client": {"embedding": voiceprints.pack(-VOICE), "speech_s": 20.0},
        },
    )


@pytest.fixture
async def db(settings: Settings, ingest_client: Client) -> AsyncIterator[Any]:
    """Two mono calls of two managers (one with uncertain roles) and a failed call."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo_url, tz_aware=True)
    database = client.get_default_database()
    failed = analysed_call(3, manager_id="mgr_1")
    failed["status"] = "failed"
    mono = [_mono(1, "mgr_1", uncertain=True), _mono(2, "mgr_2", uncertain=False)]
    await database.calls.insert_many([*mono, failed])
    await database.call_details.insert_many([_voices(call) for call in mono])
    await rollups.rebuild(database, settings.timezone)  # stored here, not through events
    yield database
    await client.close()


SWAP = "/api/v1/admin/calls/{}/swap-roles"
CONFIRM = "/api/v1/admin/calls/{}/confirm-roles"


async def test_roles_are_swapped_by_admins_and_the_managers_supervisor_only(
    ingest_client: Client, db: Any
) -> None:
    headers = await admin(ingest_client)
    manager = await user(
        ingest_client, headers, email="m1@example.ru", role="manager", manager_id="mgr_1"
    )
    other_team = await user(
        ingest_client, headers, email="h2@example.ru", role="supervisor", team_manager_ids=["mgr_2"]
    )
    team = await user(
        ingest_client, headers, email="h1@example.ru", role="supervisor", team_manager_ids=["mgr_1"]
    )
    url = SWAP.format("task_000000000001")
    assert (await ingest_client.post(url, headers=manager)).status == 403
    assert (await ingest_client.post(url, headers=other_team)).status == 403
    answer = await ingest_client.post(url, headers=team)
    assert answer.status == 202, await answer.text()
    task = await db.calls.find_one({"_id": "task_000000000001"})
    assert task["analysis"]["mode"] == "swap_roles"
    assert task["analysis"]["requested_by"]["email"] == "h1@example.ru"
    assert task["timeline"][-1]["status"] == "roles_swap_requested"
    again = await ingest_client.post(url, headers=headers)
    assert again.status == 409  # already queued
    not_analysed = await ingest_client.post(SWAP.format("task_000000000003"), headers=headers)
    assert not_analysed.status == 409
    assert (await ingest_client.post(SWAP.format("task_nothing"), headers=headers)).status == 404


async def test_confirmed_roles_teach_the_voiceprint_and_stay(
    ingest_client: Client, db: Any
) -> None:
    headers = await admin(ingest_client)
    answer = await ingest_client.post(CONFIRM.format("task_000000000001"), headers=headers)
    assert answer.status == 200, await answer.text()
    card = await answer.json()
    assert card["roles"]["method"] == "person"
    assert not card["roles"]["uncertain"]
    assert not card["roles"]["confirmable"]
    assert card["roles"]["by"] == "admin@test.local"
    (print_,) = await voiceprints.list_voiceprints(db)
    assert (print_["manager_id"], print_["confirmed_calls"], print_["usable"]) == ("mgr_1", 1, True)
    stored = await voiceprints.voiceprint_of(db, "mgr_1")
    assert stored is not None
    assert np.allclose(stored, VOICE)
    again = await ingest_client.post(CONFIRM.format("task_000000000001"), headers=headers)
    assert again.status == 409


async def test_uncertain_roles_are_marked_and_filtered(ingest_client: Client, db: Any) -> None:
    headers = await admin(ingest_client)
    everything = await (await ingest_client.get("/api/v1/admin/calls", headers=headers)).json()
    marked = {item["call_id"]: item["roles_uncertain"] for item in everything["items"]}
    assert marked == {"call_1": True, "call_2": False, "call_3": False}
    uncertain = await (
        await ingest_client.get(
            "/api/v1/admin/calls", params={"roles": "uncertain"}, headers=headers
        )
    ).json()
    assert [item["call_id"] for item in uncertain["items"]] == ["call_1"]
    card = await (
        await ingest_client.get("/api/v1/admin/calls/task_000000000001", headers=headers)
    ).json()
    assert card["roles"]["method_label"] == "по доле речи"
    assert "voices" not in card  # the numbers of a voice never leave the server
    bad = await ingest_client.get("/api/v1/admin/calls", params={"roles": "x"}, headers=headers)
    assert bad.status == 400


async def test_voiceprints_are_listed_and_forgotten_by_the_admin_only(
    ingest_client: Client, db: Any
) -> None:
    headers = await admin(ingest_client)
    for manager_id in ("mgr_1", "mgr_2"):
        await voiceprints.learn(
            db, manager_id, task_id="t", embedding=VOICE, speech_s=12.0, source="stereo"
        )
    supervisor = await user(ingest_client, headers, email="h@example.ru", role="supervisor")
    assert (await ingest_client.get("/api/v1/voiceprints", headers=supervisor)).status == 403
    listed = await (await ingest_client.get("/api/v1/voiceprints", headers=headers)).json()
    assert [item["manager_id"] for item in listed["items"]] == ["mgr_1", "mgr_2"]
    assert "embedding" not in listed["items"][0]

    gone = await ingest_client.delete("/api/v1/voiceprints/mgr_1", headers=headers)
    assert gone.status == 204
    assert (await ingest_client.delete("/api/v1/voiceprints/mgr_1", headers=headers)).status == 404
    voiced = await db.call_details.find({"voices": {"$exists": True}}).to_list()
    assert [found["task_id"] for found in voiced] == ["task_000000000002"]  # mgr_2's

    await user(ingest_client, headers, email="m2@example.ru", role="manager", manager_id="mgr_2")
    users = await (await ingest_client.get("/api/v1/users", headers=headers)).json()
    (m2,) = [u for u in users if u["email"] == "m2@example.ru"]
    assert (await ingest_client.delete(f"/api/v1/users/{m2['id']}", headers=headers)).status == 204
    assert await voiceprints.list_voiceprints(db) == []  # deleted with the manager's user
    assert await db.call_details.count_documents({"voices": {"$exists": True}}) == 0


async def test_switching_voiceprints_off_forgets_them_all(ingest_client: Client, db: Any) -> None:
    headers = await admin(ingest_client)
    await voiceprints.learn(
        db, "mgr_1", task_id="t", embedding=VOICE, speech_s=12.0, source="stereo"
    )
    connection = "/api/v1/settings/connection"
    assert (await (await ingest_client.get(connection, headers=headers)).json())[
        "voiceprints_enabled"
    ]
    answer = await ingest_client.put(
        connection, json={"voiceprints_enabled": False}, headers=headers
    )
    assert answer.status == 200
    assert (await answer.json())["voiceprints_enabled"] is False
    assert await voiceprints.list_voiceprints(db) == []
    assert await db.call_details.count_documents({"voices": {"$exists": True}}) == 0
    # Confirming roles now learns nothing.
    await ingest_client.post(CONFIRM.format("task_000000000002"), headers=headers)
    assert await voiceprints.list_voiceprints(db) == []
