"""Calls, managers, users and exports of the admin API (SPEC §4.1), by role."""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from gridfs.asynchronous import AsyncGridFSBucket
from openpyxl import load_workbook
from pymongo import AsyncMongoClient

from devtools.samples import analysed_call, sample_details
from shared import call_details, rollups
from shared.mongo import AUDIO_BUCKET
from shared.settings import Settings
from tests.api_client import admin, user
from tests.conftest import ADMIN_EMAIL

Client = TestClient[Any, Any]
AUDIO = bytes(range(256)) * 40  # 10,240 bytes


@pytest.fixture
async def db(settings: Settings, ingest_client: Client) -> AsyncIterator[Any]:
    """The gateway's database with calls of two managers, one with stored audio."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo_url, tz_aware=True)
    database = client.get_default_database()
    documents = [
        analysed_call(1, manager_id="mgr_1", passed=2, applicable=2, table_id="tbl_1"),
        analysed_call(2, manager_id="mgr_1", passed=1, applicable=2, days_ago=2),
        analysed_call(3, manager_id="mgr_2", passed=0, applicable=2, days_ago=1, talk_ratio=0.9),
        analysed_call(4, manager_id="mgr_2", passed=1, applicable=2, days_ago=30),
    ]
    documents[0]["audio"] = {"file_id": documents[0]["_id"], "container": "wav"}
    await database.calls.insert_many(documents)
    await database.call_details.insert_many([sample_details(call) for call in documents])
    await rollups.rebuild(database, settings.timezone)  # stored here, not through events
    bucket = AsyncGridFSBucket(database, bucket_name=AUDIO_BUCKET)
    await bucket.upload_from_stream_with_id(documents[0]["_id"], "call.wav", AUDIO)
    yield database
    await client.close()


async def test_list_filters_sorts_and_pages_within_the_last_week(
    ingest_client: Client, db: Any
) -> None:
    headers = await admin(ingest_client)
    page = await (await ingest_client.get("/api/v1/admin/calls", headers=headers)).json()
    assert [item["call_id"] for item in page["items"]] == ["call_1", "call_3", "call_2"]
    assert page["total"] == 3  # call_4 is a month old
    by_score = await (
        await ingest_client.get(
            "/api/v1/admin/calls", params={"sort": "score_asc", "per_page": "2"}, headers=headers
        )
    ).json()
    assert [item["score"]["percent"] for item in by_score["items"]] == [0.0, 50.0]
    assert by_score["total"] == 3
    filtered = await (
        await ingest_client.get(
            "/api/v1/admin/calls",
            params={"manager_id": "mgr_2", "date_from": "2000-01-01", "score_min": "10"},
            headers=headers,
        )
    ).json()
    assert [item["call_id"] for item in filtered["items"]] == ["call_4"]
    bad = await ingest_client.get(
        "/api/v1/admin/calls", params={"status": "lost", "date_from": "вчера"}, headers=headers
    )
    assert bad.status == 400
    fields = {detail["field"] for detail in (await bad.json())["details"]}
    assert {"status", "date_from"} <= fields
    for seconds in ("0", "1700000000"):  # not read as seconds since 1970
        epoch = await ingest_client.get(
            "/api/v1/admin/calls", params={"date_to": seconds}, headers=headers
        )
        assert epoch.status == 400
        assert [d["field"] for d in (await epoch.json())["details"]] == ["date_to"]
    # A blank number or day says nothing the caller meant; days before 1970 hold no calls
    # (and the first days of the calendar cannot be moved to UTC).
    for name, value in [("score_max", ""), ("date_from", ""), ("date_from", "0001-01-01"),
                        ("date_to", "9999-12-31"), ("format", "csv"), ("format", "")]:  # fmt: skip
        refused = await ingest_client.get(
            "/api/v1/admin/calls", params={name: value}, headers=headers
        )
        assert refused.status == 400, (name, value)
        assert [d["field"] for d in (await refused.json())["details"]] == [name]


async def test_calls_an_earlier_version_stored_whole_are_moved_apart_once(
    ingest_client: Client, db: Any
) -> None:
    legacy = analysed_call(9, manager_id="mgr_1")
    del legacy["details_id"]
    legacy |= {
        "transcript": [{"speaker": "manager", "start_s": 0.5, "end_s": 1.0, "text": "алло"}],
        "speech": {"manager": [[0.5, 1.0]], "client": []},
        "voices": {"manager": {"embedding": b"\0" * 1024, "speech_s": 0.5}},
    }
    await db.calls.insert_one(legacy)
    await db.settings.delete_one({"_id": call_details.MOVED_ID})  # as that version left it

    assert await call_details.move_inline(db) == 1
    stored = await db.calls.find_one({"_id": legacy["_id"]})
    assert not set(call_details.HEAVY) & set(stored)
    details = await db.call_details.find_one({"_id": stored["details_id"]})
    assert (details["task_id"], details["speech"]) == (legacy["_id"], legacy["speech"])
    card = await (
        await ingest_client.get(
            f"/api/v1/admin/calls/{legacy['_id']}", headers=await admin(ingest_client)
        )
    ).json()
    assert [line["text"] for line in card["transcript"]] == ["алло"]
    assert await call_details.move_inline(db) == 0  # once


async def test_a_manager_sees_only_own_calls_and_gets_403_for_others(
    ingest_client: Client, db: Any
) -> None:
    manager = await user(
        ingest_client,
        await admin(ingest_client),
        email="m1@example.ru",
        role="manager",
        manager_id="mgr_1",
    )
    page = await (await ingest_client.get("/api/v1/admin/calls", headers=manager)).json()
    assert {item["manager_id"] for item in page["items"]} == {"mgr_1"}
    own = await ingest_client.get("/api/v1/admin/calls/task_000000000001", headers=manager)
    assert own.status == 200
    # Re-analysis sends the CRM new results: for admins and supervisors only.
    again = await ingest_client.post(
        "/api/v1/admin/calls/task_000000000001/reanalyze", headers=manager
    )
    assert again.status == 403
    assert (await db.calls.find_one({"_id": "task_000000000001"}))["status"] == "done"
    other = await ingest_client.get("/api/v1/admin/calls/task_000000000003", headers=manager)
    assert other.status == 403
    assert (await other.json())["code"] == "forbidden"
    audio = await ingest_client.get("/api/v1/admin/calls/task_000000000003/audio", headers=manager)
    assert audio.status == 403
    assert (await ingest_client.get("/api/v1/managers", headers=manager)).status == 403
    assert (await ingest_client.get("/api/v1/users", headers=manager)).status == 403


async def test_a_supervisor_sees_the_team(ingest_client: Client, db: Any) -> None:
    supervisor = await user(
        ingest_client,
        await admin(ingest_client),
        email="head@example.ru",
        role="supervisor",
        team_manager_ids=["mgr_2"],
    )
    page = await (await ingest_client.get("/api/v1/admin/calls", headers=supervisor)).json()
    assert [item["call_id"] for item in page["items"]] == ["call_3"]
    rating = await (await ingest_client.get("/api/v1/managers", headers=supervisor)).json()
    assert [item["manager_id"] for item in rating["items"]] == ["mgr_2"]


async def test_audio_is_served_whole_and_by_range(ingest_client: Client, db: Any) -> None:
    headers = await admin(ingest_client)
    url = "/api/v1/admin/calls/task_000000000001/audio"
    whole = await ingest_client.get(url, headers=headers)
    assert whole.status == 200
    assert whole.headers["Accept-Ranges"] == "bytes"
    assert whole.headers["Content-Type"] == "audio/wav"
    assert await whole.read() == AUDIO
    part = await ingest_client.get(url, headers={**headers, "Range": "bytes=1000-1999"})
    assert part.status == 206
    assert part.headers["Content-Range"] == f"bytes 1000-1999/{len(AUDIO)}"
    assert await part.read() == AUDIO[1000:2000]
    tail = await ingest_client.get(url, headers={**headers, "Range": "bytes=-100"})
    assert await tail.read() == AUDIO[-100:]
    beyond = await ingest_client.get(url, headers={**headers, "Range": "bytes=99999-"})
    assert beyond.status == 416
    none = await ingest_client.get("/api/v1/admin/calls/task_000000000002/audio", headers=headers)
    assert none.status == 404


async def test_comments_and_reanalysis(ingest_client: Client, db: Any) -> None:
    headers = await admin(ingest_client)
    url = "/api/v1/admin/calls/task_000000000001"
    added = await ingest_client.post(
        f"{url}/comments", json={"text": "Хороший звонок"}, headers=headers
    )
    assert added.status == 201
    empty = await ingest_client.post(f"{url}/comments", json={"text": "  "}, headers=headers)
    assert empty.status == 400
    card = await (await ingest_client.get(url, headers=headers)).json()
    assert [comment["text"] for comment in card["comments"]] == ["Хороший звонок"]
    assert card["transcript"][0]["text"] == "добрый день"
    assert card["reanalysable"] is True
    queued = await ingest_client.post(f"{url}/reanalyze", headers=headers)
    assert queued.status == 202
    task = await db.calls.find_one({"_id": "task_000000000001"})
    assert task["status"] == "queued"
    assert task["analysis"]["state"] == "queued"
    again = await ingest_client.post(f"{url}/reanalyze", headers=headers)
    assert again.status == 409  # already queued


async def test_excel_export_holds_the_filtered_rows(ingest_client: Client, db: Any) -> None:
    headers = await admin(ingest_client)
    response = await ingest_client.get(
        "/api/v1/admin/calls", params={"format": "xlsx", "manager_id": "mgr_1"}, headers=headers
    )
    assert response.status == 200
    assert "attachment" in response.headers["Content-Disposition"]
    sheet = load_workbook(io.BytesIO(await response.read())).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:3] == ("Дата", "ID звонка", "Сделка")
    assert sorted(row[1] for row in rows[1:]) == ["call_1", "call_2"]


HOSTILE = ['=HYPERLINK("http://evil.example","ok")', "+1+1", "-2+3", "@SUM(A1)", "\t=1"]


async def test_exported_text_is_text_never_a_formula(ingest_client: Client, db: Any) -> None:
    """Deal ids and names come from the CRM, table values from a model: a spreadsheet
    must show them, never run them."""
    for n, text in enumerate(HOSTILE, start=10):
        hostile = analysed_call(n, manager_id="mgr_x", table_id="tbl_x")
        hostile["deal_id"], hostile["manager_name"] = text, text
        hostile["results"]["tables"][0]["row"] = {"budget": text}
        await db.calls.insert_one(hostile)
    headers = await admin(ingest_client)
    table = {
        "name": "Сделки",
        "webhook": {"url": "https://crm.example/hooks/table"},
        "fields": [{"key": "budget", "type": "text", "method": "llm", "prompt": "Бюджет?"}],
    }
    created = await (await ingest_client.post("/api/v1/tables", json=table, headers=headers)).json()
    await db.calls.update_many(
        {"manager_id": "mgr_x"}, {"$set": {"results.tables.0.table_id": created["id"]}}
    )
    exports = [
        ("/api/v1/admin/calls", {"format": "xlsx", "manager_id": "mgr_x"}),
        (f"/api/v1/tables/{created['id']}/rows", {"format": "xlsx"}),
    ]
    for path, params in exports:
        response = await ingest_client.get(path, params=params, headers=headers)
        body = await response.read()
        sheet_xml = zipfile.ZipFile(io.BytesIO(body)).read("xl/worksheets/sheet1.xml")
        assert b"<f>" not in sheet_xml, path
        cells = [
            cell
            for row in load_workbook(io.BytesIO(body)).active.iter_rows(min_row=2)
            for cell in row
            if cell.value in HOSTILE
        ]
        assert {cell.value for cell in cells} == set(HOSTILE), path
        assert {cell.data_type for cell in cells} == {"s"}, path


async def test_managers_and_dashboard_summarise_the_period(ingest_client: Client, db: Any) -> None:
    headers = await admin(ingest_client)
    rating = await (await ingest_client.get("/api/v1/managers", headers=headers)).json()
    first = rating["items"][0]
    assert first["manager_id"] == "mgr_1"
    assert (first["calls"], first["rating"], first["perfect"], first["average_score"]) == (
        2,
        3,
        1,
        75.0,
    )
    assert first["weekly"]
    board = await (await ingest_client.get("/api/v1/dashboard", headers=headers)).json()
    assert len(board["days"]) == 7
    assert sum(day["calls"] for day in board["days"]) == 3
    assert board["failed_stages"][0] == {"stage": "Этап 2", "failed": 2}
    assert sum(bucket["calls"] for bucket in board["talk_ratio"]) == 3
    assert board["talk_ratio"][-1]["calls"] == 1  # the 0.9 call


async def test_users_are_managed_by_the_admin_and_the_last_admin_stays(
    ingest_client: Client, db: Any
) -> None:
    headers = await admin(ingest_client)
    listed = await (await ingest_client.get("/api/v1/users", headers=headers)).json()
    admin_id = next(item["id"] for item in listed if item["email"] == ADMIN_EMAIL)
    demote = await ingest_client.put(
        f"/api/v1/users/{admin_id}",
        json={"email": ADMIN_EMAIL, "role": "manager"},
        headers=headers,
    )
    assert demote.status == 409
    short = await ingest_client.post(
        "/api/v1/users",
        json={"email": "x@example.ru", "role": "manager", "password": "short"},
        headers=headers,
    )
    assert short.status == 400
    # The real rule, not «не может быть пустым».
    assert (await short.json())["details"] == [
        {"field": "password", "message": "не короче 8 символов"}
    ]
    vague = await ingest_client.post(
        "/api/v1/users",
        json={"email": "x@example.ru", "role": "manager", "password": "long enough 1", "active": 0},
        headers=headers,
    )
    assert [d["field"] for d in (await vague.json())["details"]] == ["active"]
    manager = await user(ingest_client, headers, email="gone@example.ru", role="manager")
    listed = await (await ingest_client.get("/api/v1/users", headers=headers)).json()
    gone_id = next(item["id"] for item in listed if item["email"] == "gone@example.ru")
    off = await ingest_client.put(
        f"/api/v1/users/{gone_id}",
        json={"email": "gone@example.ru", "role": "manager", "active": False},
        headers=headers,
    )
    assert off.status == 200
    assert (await ingest_client.get("/api/v1/auth/me", headers=manager)).status == 401
    assert (await ingest_client.delete(f"/api/v1/users/{gone_id}", headers=headers)).status == 204


async def test_table_rows_as_json_and_excel(ingest_client: Client, db: Any) -> None:
    headers = await admin(ingest_client)
    table = {
        "name": "Сделки",
        "webhook": {"url": "http://127.0.0.1:9/hooks"},
        "fields": [
            {
                "key": "budget",
                "name": "Бюджет",
                "type": "number",
                "method": "regex",
                "pattern": r"\d+",
            }
        ],
    }
    created = await (await ingest_client.post("/api/v1/tables", json=table, headers=headers)).json()
    await db.calls.update_one(
        {"_id": "task_000000000001"}, {"$set": {"results.tables.0.table_id": created["id"]}}
    )
    older = {"table_id": created["id"], "row": {"budget": 2000}}
    await db.calls.update_one({"_id": "task_000000000002"}, {"$set": {"results.tables": [older]}})
    url = f"/api/v1/tables/{created['id']}/rows"
    rows = await (await ingest_client.get(url, headers=headers)).json()
    assert [row["row"] for row in rows["items"]] == [{"budget": 1000}, {"budget": 2000}]
    assert rows["next"] is None
    first = await (await ingest_client.get(url, params={"per_page": "1"}, headers=headers)).json()
    assert [row["call_id"] for row in first["items"]] == ["call_1"]
    second = await (
        await ingest_client.get(
            url, params={"per_page": "1", "after": first["next"]}, headers=headers
        )
    ).json()
    assert ([row["call_id"] for row in second["items"]], second["next"]) == (["call_2"], None)
    page = await ingest_client.get(
        f"/settings/tables/{created['id']}/rows", params={"per_page": "1"}, headers=headers
    )
    assert 'rel="next"' in await page.text()
    response = await ingest_client.get(
        f"/api/v1/tables/{created['id']}/rows", params={"format": "xlsx"}, headers=headers
    )
    sheet = load_workbook(io.BytesIO(await response.read())).active
    assert [row[-1] for row in sheet.iter_rows(min_row=2, values_only=True)] == [1000, 2000]


async def test_days_are_the_days_of_the_configured_zone(
    ingest_client: Client, db: Any, settings: Settings
) -> None:
    late = analysed_call(9, manager_id="mgr_9")
    late["received_at"] = datetime(2026, 1, 10, 22, 30, tzinfo=UTC)  # 01:30 on the 11th in Moscow
    await db.calls.insert_one(late)
    await rollups.rebuild(db, settings.timezone)
    headers = await admin(ingest_client)

    async def found(**params: str) -> list[str]:
        response = await ingest_client.get("/api/v1/admin/calls", params=params, headers=headers)
        assert response.status == 200, await response.text()
        return [item["call_id"] for item in (await response.json())["items"]]

    assert await found(date_from="2026-01-11", date_to="2026-01-11") == ["call_9"]  # Moscow
    assert await found(date_from="2026-01-10", date_to="2026-01-10") == []
    assert await found(date_from="2026-01-10", date_to="2026-01-10", tz="UTC") == ["call_9"]
    bad = await ingest_client.get(
        "/api/v1/admin/calls", params={"tz": "Mars/Base"}, headers=headers
    )
    assert bad.status == 400
    board = await (
        await ingest_client.get(
            "/api/v1/dashboard",
            params={"date_from": "2026-01-10", "date_to": "2026-01-11"},
            headers=headers,
        )
    ).json()
    assert [(day["day"], day["calls"]) for day in board["days"]] == [
        ("2026-01-10", 0),
        ("2026-01-11", 1),
    ]
