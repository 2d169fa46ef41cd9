"""Trackers («Словари») through the admin API and the web app: managed by admins and
supervisors, applied to a period's earlier calls (re-tagged from their transcripts by the
analyzer's idle work), the calls filter, the card and the dashboard; a template point may
listen with a tracker's phrases, which then cannot be deleted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pymongo import AsyncMongoClient

from devtools.samples import analysed_call, sample_details
from services.analyzer.handlers import retag_pending
from shared.settings import Settings
from tests.api_client import admin, bearer, log_in, user
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.transcripts import stored_line as line

Client = TestClient[Any, Any]

COMPETITORS = {
    "name": "Конкуренты",
    "phrases": ["компания Лютик", "ООО Василёк"],
    "speaker": "client",
}


@pytest.fixture
async def db(settings: Settings, ingest_client: Client) -> AsyncIterator[Any]:
    """Three analysed calls: two where the client names a competitor (one also where the
    manager does), one without."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo_url, tz_aware=True)
    database = client.get_default_database()
    transcripts = {
        1: [
            line("client", 4.0, "Мы работаем с компанией Лютик"),
            line("manager", 9.0, "Компания Лютик дороже"),
        ],
        2: [line("client", 30.0, "Нам звонили из ооо василек вчера")],
        3: [line("client", 2.0, "Перезвоните завтра пожалуйста")],
    }
    for index, transcript in transcripts.items():
        call = analysed_call(
            index, manager_id="mgr_1" if index < 3 else "mgr_2", days_ago=index * 0.1
        )
        await database.calls.insert_one(call)
        await database.call_details.insert_one(sample_details(call, transcript=transcript))
    yield database
    await client.close()


async def competitors(client: Client, headers: dict[str, str]) -> str:
    """Create the «Конкуренты» tracker; its id."""
    created = await client.post("/api/v1/trackers", json=COMPETITORS, headers=headers)
    assert created.status == 201, await created.text()
    tracker_id: str = (await created.json())["id"]
    return tracker_id


async def supervisor(
    client: Client, headers: dict[str, str], email: str, *team: str
) -> dict[str, str]:
    """A supervisor of these managers, made by `headers`; their headers."""
    return await user(client, headers, email=email, role="supervisor", team_manager_ids=list(team))


async def test_a_tracker_applied_to_a_period_tags_its_calls(ingest_client: Client, db: Any) -> None:
    headers = await admin(ingest_client)
    tracker_id = await competitors(ingest_client, headers)
    applied = await ingest_client.post(
        f"/api/v1/trackers/{tracker_id}/apply", json={}, headers=headers
    )
    assert applied.status == 202
    assert await applied.json() == {"calls": 3}
    assert await retag_pending(db) == 3
    assert await retag_pending(db) == 0  # done: nothing left marked
    first = await db.calls.find_one({"_id": "task_000000000001"})
    (hits,) = first["results"]["trackers"]
    # Only the client's words count: the manager's «Компания Лютик» is not a hit.
    assert (hits["tracker_id"], hits["name"], hits["hits"]) == (tracker_id, "Конкуренты", 1)
    assert hits["quotes"] == [
        {"text": "компанией Лютик", "start_s": 5.5, "end_s": 6.4, "speaker": "client"}
    ]
    second = await db.calls.find_one({"_id": "task_000000000002"})
    assert second["results"]["trackers"][0]["quotes"][0]["text"] == "ооо василек"  # ё is е
    assert (await db.calls.find_one({"_id": "task_000000000003"}))["trackers_hit"] == []

    listed = await ingest_client.get(
        "/api/v1/admin/calls", params={"tracker": tracker_id}, headers=headers
    )
    assert [item["task_id"] for item in (await listed.json())["items"]] == [
        "task_000000000001",
        "task_000000000002",
    ]
    card = await (await ingest_client.get("/calls/task_000000000001", headers=headers)).text()
    assert "Словари" in card
    assert "«компанией Лютик»" in card
    board = await (await ingest_client.get("/dashboard", headers=headers)).text()
    assert f'href="/calls?tracker={tracker_id}' in board


async def test_applying_again_counts_the_tracker_as_it_is_now(
    ingest_client: Client, db: Any
) -> None:
    headers = await admin(ingest_client)
    tracker_id = await competitors(ingest_client, headers)
    await ingest_client.post(f"/api/v1/trackers/{tracker_id}/apply", json={}, headers=headers)
    await retag_pending(db)
    changed = {**COMPETITORS, "phrases": ["перезвоните"]}
    assert (
        await ingest_client.put(f"/api/v1/trackers/{tracker_id}", json=changed, headers=headers)
    ).status == 200
    await ingest_client.post(f"/api/v1/trackers/{tracker_id}/apply", json={}, headers=headers)
    await retag_pending(db)
    tagged = await db.calls.find({"trackers_hit": tracker_id}, {"_id": 1}).to_list()
    assert [call["_id"] for call in tagged] == ["task_000000000003"]


async def test_a_supervisor_re_tags_only_the_team_s_calls_and_a_manager_may_not(
    ingest_client: Client, db: Any
) -> None:
    headers = await admin(ingest_client)
    lead = await supervisor(ingest_client, headers, "lead@example.ru", "mgr_2")
    anna = await user(
        ingest_client, headers, email="anna@example.ru", role="manager", manager_id="mgr_1"
    )
    assert (
        await ingest_client.post("/api/v1/trackers", json=COMPETITORS, headers=anna)
    ).status == 403
    tracker_id = await competitors(ingest_client, lead)
    applied = await ingest_client.post(
        f"/api/v1/trackers/{tracker_id}/apply", json={}, headers=lead
    )
    assert await applied.json() == {"calls": 1}
    refused = await ingest_client.post(
        f"/api/v1/trackers/{tracker_id}/apply", json={}, headers=anna
    )
    assert refused.status == 403


async def test_a_template_point_may_listen_with_a_tracker(ingest_client: Client, db: Any) -> None:
    headers = await admin(ingest_client)
    tracker_id = await competitors(ingest_client, headers)
    template = {
        "name": "Первичный звонок",
        "stages": [
            {
                "name": "Конкуренты",
                "threshold": 100,
                "points": [
                    {
                        "text": "Узнал о конкурентах",
                        "weight": 100,
                        "speaker": "client",
                        "tracker_id": tracker_id,
                    }
                ],
            }
        ],
    }
    created = await ingest_client.post("/api/v1/templates", json=template, headers=headers)
    assert created.status == 201
    missing = {
        **template,
        "stages": [
            {
                **template["stages"][0],
                "points": [{**template["stages"][0]["points"][0], "tracker_id": "trk_nothing"}],
            }
        ],
    }
    refused = await ingest_client.post("/api/v1/templates", json=missing, headers=headers)
    assert refused.status == 400
    assert (await refused.json())["details"] == [
        {"field": "stages.0.points.0.tracker_id", "message": "нет словаря с таким id"}
    ]
    neither = {
        **template,
        "stages": [{**template["stages"][0], "points": [{"text": "Пусто", "weight": 100}]}],
    }
    assert (
        await ingest_client.post("/api/v1/templates", json=neither, headers=headers)
    ).status == 400
    in_use = await ingest_client.delete(f"/api/v1/trackers/{tracker_id}", headers=headers)
    assert in_use.status == 409


async def test_trackers_are_made_through_the_settings_forms(ingest_client: Client, db: Any) -> None:
    session = await log_in(ingest_client, ADMIN_EMAIL, ADMIN_PASSWORD)
    headers, csrf = bearer(session), session["csrf_token"]
    page = await ingest_client.get("/settings/trackers/new", headers=headers)
    assert page.status == 200
    form = {
        "csrf_token": csrf,
        "name": "Негатив",
        "speaker": "client",
        "within_s": "",
        "phrases": "плохо\nужасно\n",
    }
    saved = await ingest_client.post(
        "/settings/trackers/new", data=form, headers=headers, allow_redirects=False
    )
    assert saved.status == 303
    (stored,) = await db.trackers.find({}).to_list()
    assert (stored["name"], stored["phrases"], stored["speaker"], stored["within_s"]) == (
        "Негатив",
        ["плохо", "ужасно"],
        "client",
        None,
    )
    listing = await (await ingest_client.get("/settings/trackers", headers=headers)).text()
    assert "Негатив" in listing


async def test_a_supervisor_s_tracker_is_theirs_and_counts_only_on_calls_they_see(
    ingest_client: Client, db: Any
) -> None:
    headers = await admin(ingest_client)
    lead = await supervisor(ingest_client, headers, "lead@example.ru", "mgr_1")
    other = await supervisor(ingest_client, headers, "other@example.ru", "mgr_2")
    said = {
        **COMPETITORS,
        "name": "Уход к конкурентам",
        "phrases": [*COMPETITORS["phrases"], "перезвоните"],
    }
    tracker_id = (
        await (await ingest_client.post("/api/v1/trackers", json=said, headers=lead)).json()
    )["id"]
    # Another team's supervisor neither sees it nor changes it.
    listed = await (await ingest_client.get("/api/v1/trackers", headers=other)).json()
    assert tracker_id not in [item["id"] for item in listed]
    one = f"/api/v1/trackers/{tracker_id}"
    assert (await ingest_client.get(one, headers=other)).status == 403
    assert (await ingest_client.put(one, json=said, headers=other)).status == 403
    assert (await ingest_client.delete(one, headers=other)).status == 403
    assert (await ingest_client.post(f"{one}/apply", json={}, headers=other)).status == 403
    # An admin may change it; it stays its owner's.
    changed = await ingest_client.put(one, json=said, headers=headers)
    assert changed.status == 200
    lead_id = (await (await ingest_client.get(one, headers=lead)).json())["owner_id"]
    assert (await changed.json())["owner_id"] == lead_id

    # Applied by an admin to every call, it counts only on the calls its owner sees: the
    # other team's call says «перезвоните» and stays untagged.
    applied = await ingest_client.post(f"{one}/apply", json={}, headers=headers)
    assert await applied.json() == {"calls": 3}
    assert await retag_pending(db) == 3
    tagged = await db.calls.find({"trackers_hit": tracker_id}, {"_id": 1}).to_list()
    assert sorted(call["_id"] for call in tagged) == ["task_000000000001", "task_000000000002"]
    for email, sees in (("lead@example.ru", True), ("other@example.ru", False)):
        await log_in(ingest_client, email, "long enough 1")  # the web app's cookie is theirs
        board = await (await ingest_client.get("/dashboard")).text()
        assert ("Уход к конкурентам" in board) is sees, email
    assert (await ingest_client.delete(one, headers=lead)).status == 204
