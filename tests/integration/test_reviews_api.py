"""People in the loop through the admin API (SPEC §5.1): corrections of stage verdicts,
by role; the score computed again, the machine's verdict kept, the history recorded."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from openpyxl import load_workbook
from pymongo import AsyncMongoClient

from devtools.samples import analysed_call, sample_details
from shared.events import CallReviewed
from shared.reviews import pick_for_blind_review, record_corrections
from shared.settings import Settings
from tests.api_client import admin, user
from tests.conftest import EventTap
from tests.helpers import wait_for

Client = TestClient[Any, Any]


@pytest.fixture
async def db(settings: Settings, ingest_client: Client) -> AsyncIterator[Any]:
    """Analysed calls of two managers (1 of 2 stages passed each), and one in progress."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo_url, tz_aware=True)
    database = client.get_default_database()
    documents = [
        analysed_call(1, manager_id="mgr_1", passed=1, applicable=2),
        analysed_call(2, manager_id="mgr_2", passed=1, applicable=2),
        {**analysed_call(3, manager_id="mgr_1"), "status": "analyzing"},
    ]
    await database.calls.insert_many(documents)
    await database.call_details.insert_many([sample_details(call) for call in documents])
    yield database
    await client.close()


@pytest.fixture
async def people(ingest_client: Client, db: Any) -> dict[str, dict[str, str]]:
    """Headers of an admin, mgr_1's supervisor, another team's supervisor, mgr_1."""
    headers = await admin(ingest_client)
    return {
        "admin": headers,
        "lead": await user(
            ingest_client,
            headers,
            email="lead@example.ru",
            name="Ирина",
            role="supervisor",
            team_manager_ids=["mgr_1"],
        ),
        "other lead": await user(
            ingest_client,
            headers,
            email="other@example.ru",
            role="supervisor",
            team_manager_ids=["mgr_2"],
        ),
        "manager": await user(
            ingest_client, headers, email="anna@example.ru", role="manager", manager_id="mgr_1"
        ),
    }


FAILED_STAGE = {
    "binding_id": "bnd_1",
    "stage": "Этап 2",
    "verdict": "passed",
    "completion": 80,
    "reason": "Компанию назвал, ASR не расслышал",
}


async def correct(
    client: Client, headers: dict[str, str], task: str = "task_000000000001", **change: Any
) -> Any:
    return await client.post(
        f"/api/v1/admin/calls/{task}/corrections", json={**FAILED_STAGE, **change}, headers=headers
    )


async def test_a_supervisor_corrects_a_stage_and_the_score_follows(
    ingest_client: Client, db: Any, people: dict[str, dict[str, str]], tap: EventTap
) -> None:
    response = await correct(ingest_client, people["lead"])
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["revision"] == 2
    assert body["checklist"]["score"] == {
        "passed": 2,
        "applicable": 2,
        "percent": 100.0,
        "text": "2/2",
    }
    assert body["score"]["perfect"] is True
    corrected = body["checklist"]["stages"][1]
    assert (corrected["passed"], corrected["completion"]) == (True, 80)
    review = corrected["review"]
    assert review["machine"] == {
        "applicable": True,
        "completion": 0.0,
        "passed": False,
        "evaluated": True,
    }
    assert (review["by"]["email"], review["reason"]) == ("lead@example.ru", FAILED_STAGE["reason"])

    card = await (
        await ingest_client.get("/api/v1/admin/calls/task_000000000001", headers=people["manager"])
    ).json()
    assert card["score"]["percent"] == 100.0  # what lists sort by, too
    assert card["reviewed_by"]["name"] == "Ирина"
    (history,) = card["corrections"]
    assert (history["stage"], history["verdict"], history["machine_verdict"]) == (
        "Этап 2",
        "passed",
        "failed",
    )
    assert card["timeline"][-1]["status"] == "verdict_corrected"
    assert card["status"] == "delivering"  # the corrected checklist goes to the CRM

    # Corrected again: the machine's verdict stays the one kept, the history grows.
    again = await correct(ingest_client, people["admin"], verdict="not_applicable", completion=None)
    stage = (await again.json())["checklist"]["stages"][1]
    assert (stage["applicable"], stage["review"]["machine"]["passed"]) == (False, False)
    assert (await again.json())["checklist"]["score"]["text"] == "1/1"
    task = await db.calls.find_one({"_id": "task_000000000001"})
    assert [c["verdict"] for c in task["corrections"]] == ["passed", "not_applicable"]
    assert task["revision"] == 3

    async def announced() -> list[int]:  # through the call's outbox, each (at least once)
        events = {env.event_id: e for env, e in tap.events() if isinstance(e, CallReviewed)}
        return [event.revision for event in events.values()]

    assert await wait_for(lambda: _at_least(announced, 2)) == [2, 3]


async def _at_least(found: Callable[[], Awaitable[list[int]]], count: int) -> list[int] | None:
    values = await found()
    return values if len(values) >= count else None


@pytest.mark.parametrize(
    ("who", "task", "status"),
    [
        ("manager", "task_000000000001", 403),  # a manager cannot correct
        ("other lead", "task_000000000001", 403),  # another team's call
        ("lead", "task_000000000002", 403),
        ("lead", "task_000000000003", 409),  # not analysed yet
        ("lead", "task_000000000404", 404),
    ],
)
async def test_who_may_correct_what(
    ingest_client: Client, people: dict[str, dict[str, str]], who: str, task: str, status: int
) -> None:
    response = await correct(ingest_client, people[who], task)
    assert response.status == status, await response.text()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"stage": "Нет такого"}, "stage"),
        ({"binding_id": "bnd_x"}, "binding_id"),
        ({"verdict": "maybe"}, "verdict"),
        ({"completion": 120}, "completion"),
        ({"reason": ""}, "reason"),
    ],
)
async def test_a_bad_correction_is_400_naming_the_field(
    ingest_client: Client, people: dict[str, dict[str, str]], change: dict[str, Any], field: str
) -> None:
    response = await correct(ingest_client, people["admin"], **change)
    assert response.status == 400
    body = await response.json()
    assert body["code"] == "invalid_request"
    assert field in {detail["field"] for detail in body["details"]}


async def dispute(
    client: Client, headers: dict[str, str], task: str = "task_000000000001", **change: Any
) -> Any:
    body = {"binding_id": "bnd_1", "stage": "Этап 2", "comment": "Я назвал компанию", **change}
    return await client.post(f"/api/v1/admin/calls/{task}/disputes", json=body, headers=headers)


async def test_a_dispute_goes_to_the_team_lead_who_accepts_it(
    ingest_client: Client, people: dict[str, dict[str, str]]
) -> None:
    opened = await dispute(ingest_client, people["manager"])
    assert opened.status == 201, await opened.text()
    body = await opened.json()
    assert (body["status"], body["disputed_verdict"], body["by"]["email"]) == (
        "open",
        "failed",
        "anna@example.ru",
    )
    again = await dispute(ingest_client, people["manager"], comment="Ещё раз")
    assert again.status == 409  # one open dispute per stage
    assert (await dispute(ingest_client, people["manager"], stage="Этап 1")).status == 201

    async def queue(who: str, **params: str) -> Any:
        response = await ingest_client.get("/api/v1/disputes", params=params, headers=people[who])
        assert response.status == 200, await response.text()
        return await response.json()

    assert [d["stage"] for d in (await queue("lead"))["items"]] == ["Этап 1", "Этап 2"]
    assert (await queue("other lead"))["items"] == []  # not their team's
    first = await queue("lead", per_page="1")
    assert [d["stage"] for d in (await queue("lead", after=first["next"]))["items"]] == ["Этап 2"]

    path = f"/api/v1/disputes/{body['id']}"
    answer = {"answer": "Согласна, компания названа"}
    refused = await ingest_client.post(f"{path}/accept", json=answer, headers=people["other lead"])
    assert refused.status == 403
    by_manager = await ingest_client.post(f"{path}/accept", json=answer, headers=people["manager"])
    assert by_manager.status == 403
    accepted = await ingest_client.post(f"{path}/accept", json=answer, headers=people["lead"])
    assert accepted.status == 200, await accepted.text()
    assert (await accepted.json())["status"] == "accepted"
    twice = await ingest_client.post(f"{path}/accept", json=answer, headers=people["lead"])
    assert twice.status == 409

    card = await (
        await ingest_client.get("/api/v1/admin/calls/task_000000000001", headers=people["manager"])
    ).json()
    stage = card["results"]["checklists"][0]["stages"][1]
    assert stage["passed"]  # the opposite of the disputed verdict
    assert card["corrections"][0]["dispute_id"] == body["id"]
    outcome = {d["stage"]: (d["status"], d["answer"]) for d in card["disputes"]}
    assert outcome["Этап 2"] == ("accepted", answer["answer"])
    listing = await (
        await ingest_client.get("/api/v1/admin/calls", headers=people["manager"])
    ).json()
    disputed = {row["call_id"]: row["dispute"] for row in listing["items"]}
    assert disputed["call_1"] == "open"  # «Этап 1» waits still
    assert [d["stage"] for d in (await queue("lead"))["items"]] == ["Этап 1"]
    assert [d["status"] for d in (await queue("lead", status=""))["items"]] == ["open", "accepted"]


async def test_a_rejected_dispute_keeps_the_verdict_and_may_be_raised_again(
    ingest_client: Client, people: dict[str, dict[str, str]]
) -> None:
    opened = await (await dispute(ingest_client, people["manager"])).json()
    reply = {"answer": "В записи этого нет"}
    rejected = await ingest_client.post(
        f"/api/v1/disputes/{opened['id']}/reject", json=reply, headers=people["admin"]
    )
    assert (await rejected.json())["status"] == "rejected"
    card = await (
        await ingest_client.get("/api/v1/admin/calls/task_000000000001", headers=people["manager"])
    ).json()
    assert card["results"]["checklists"][0]["stages"][1]["passed"] is False
    assert card["corrections"] == []
    assert (card["disputes"][0]["status"], card["disputes"][0]["answer"]) == (
        "rejected",
        reply["answer"],
    )
    assert (await dispute(ingest_client, people["manager"])).status == 201


@pytest.mark.parametrize(
    ("who", "task", "status"),
    [
        ("lead", "task_000000000001", 403),  # a supervisor corrects instead
        ("admin", "task_000000000001", 403),
        ("manager", "task_000000000002", 403),  # another manager's call
        ("manager", "task_000000000003", 409),  # not analysed yet
    ],
)
async def test_who_may_dispute_what(
    ingest_client: Client, people: dict[str, dict[str, str]], who: str, task: str, status: int
) -> None:
    response = await dispute(ingest_client, people[who], task)
    assert response.status == status, await response.text()


async def test_blind_review_shows_the_machine_only_after_the_person_judged(
    ingest_client: Client, db: Any, people: dict[str, dict[str, str]]
) -> None:
    await db.calls.update_one(
        {"_id": "task_000000000001"}, {"$set": {"blind_review": {"state": "waiting"}}}
    )
    queue = await (await ingest_client.get("/api/v1/reviews/blind", headers=people["lead"])).json()
    assert [item["task_id"] for item in queue["items"]] == ["task_000000000001"]
    other = await ingest_client.get("/api/v1/reviews/blind", headers=people["other lead"])
    assert (await other.json())["items"] == []
    refused = await ingest_client.get("/api/v1/reviews/blind", headers=people["manager"])
    assert refused.status == 403

    path = "/api/v1/reviews/blind/task_000000000001"
    shown = await ingest_client.get(path, headers=people["lead"])
    text = await shown.text()
    for hidden in ('"passed"', '"completion"', '"score"', '"evidence"', '"recommendation"'):
        assert hidden not in text, hidden  # nothing of the machine's verdict
    stages = [s["name"] for s in (await shown.json())["checklists"][0]["stages"]]
    assert stages == ["Этап 1", "Этап 2"]
    waiting = await ingest_client.get(f"{path}/result", headers=people["lead"])
    assert waiting.status == 409

    one = {"binding_id": "bnd_1", "stage": "Этап 1", "verdict": "passed"}
    partial = await ingest_client.post(path, json={"verdicts": [one]}, headers=people["lead"])
    assert partial.status == 400  # every stage, or none
    two = {"binding_id": "bnd_1", "stage": "Этап 2", "verdict": "passed"}
    judged = await ingest_client.post(path, json={"verdicts": [one, two]}, headers=people["lead"])
    assert judged.status == 200, await judged.text()
    compared = [
        (s["stage"], s["human"], s["machine"], s["agree"]) for s in (await judged.json())["stages"]
    ]
    assert compared == [("Этап 1", "passed", "passed", True), ("Этап 2", "passed", "failed", False)]
    again = await ingest_client.post(path, json={"verdicts": [one, two]}, headers=people["admin"])
    assert again.status == 409
    result = await (await ingest_client.get(f"{path}/result", headers=people["lead"])).json()
    assert [s["agree"] for s in result["stages"]] == [True, False]
    card = await (
        await ingest_client.get("/api/v1/admin/calls/task_000000000001", headers=people["lead"])
    ).json()
    assert card["score"]["passed"] == 1  # a blind review changes no verdict

    # A correction too: the reports consumer records it for the trust page.
    await correct(ingest_client, people["lead"], verdict="passed")
    await record_corrections(db, await db.calls.find({"corrections": {"$exists": True}}).to_list())
    report = await (await ingest_client.get("/api/v1/trust", headers=people["lead"])).json()
    rows = {(r["stage"], r["kind"]): (r["reviewed"], r["agreement"]) for r in report["stages"]}
    assert rows == {
        ("Этап 1", "blind"): (1, 100.0),
        ("Этап 2", "blind"): (1, 0.0),
        ("Этап 2", "correction"): (1, 0.0),
    }
    assert report["stages"][0]["stage"] == "Этап 2"  # the lowest agreement first
    blind_two = next(r for r in report["stages"] if r["kind"] == "blind" and r["stage"] == "Этап 2")
    assert blind_two["machine_failed_human_passed"] == 1
    other_team = await (
        await ingest_client.get("/api/v1/trust", headers=people["other lead"])
    ).json()
    assert other_team["stages"] == []  # reviews of another team's calls
    excel = await ingest_client.get(
        "/api/v1/trust", params={"format": "xlsx"}, headers=people["lead"]
    )
    sheet = load_workbook(io.BytesIO(await excel.read())).active
    assert [row[2] for row in sheet.iter_rows(min_row=2, values_only=True)] == [
        "Этап 2",
        "Этап 2",
        "Этап 1",
    ]


async def test_a_share_of_each_managers_week_is_picked_at_least_one(db: Any) -> None:
    monday = datetime(2026, 11, 30, 9, tzinfo=UTC)
    picked = [
        await pick_for_blind_review(db, "mgr_9", monday + timedelta(minutes=n), 5.0)
        for n in range(41)
    ]
    assert [n for n, chosen in enumerate(picked) if chosen] == [0, 20, 40]  # 1st, 21st, 41st
    assert await pick_for_blind_review(db, "mgr_8", monday, 5.0)  # another manager's first
    assert not await pick_for_blind_review(db, "mgr_7", monday, 0.0)
