"""One visibility rule for the whole back office: every route of the admin API and of the
web app, walked as a supervisor of team A and as a manager of team A, against a call of
team B. Nothing of B may show, and no action on B may succeed. The admin, walked after,
sees B everywhere the others did not (so the walk can tell a leak from an empty answer).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from gridfs.asynchronous import AsyncGridFSBucket
from pymongo import AsyncMongoClient

from devtools.samples import analysed_call
from services.ingest.backoffice.deliveries import give_deliveries_their_manager
from shared import rollups, search_index
from shared.events import utcnow
from shared.mongo import AUDIO_BUCKET
from shared.settings import Settings
from tests.api_client import admin, bearer, log_in, user
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD

Client = TestClient[Any, Any]

OTHER_TEAM = ("task_000000000002", "call_2", "mgr_b", "msg_team_b")
# What fills the path of each route: B's call, B's delivery, B's manager, the shared table.
PATH_VALUES = {
    "task_id": "task_000000000002",
    "call_id": "call_2",
    "manager_id": "mgr_b",
    "section": "tables",
}
# The `{id}` that reaches B's data; every other `{id}` (users, catalog) is one that is not
# there, so that walking deletes nothing the walk needs.
ID_OF = {
    "/api/v1/deliveries/{id}/redeliver": "msg_team_b",
    "/calls/{task_id}/deliveries/{id}/redeliver": "msg_team_b",
    "/api/v1/tables/{id}/rows": "tbl_shared",
    "/settings/tables/{id}/rows": "tbl_shared",
}
# The query of the routes that answer nothing without one.
QUERY_OF = {"/api/v1/admin/search": {"q": "добрый день"}, "/search": {"q": "добрый день"}}
# Not the back office: the CRM's own API (its key sees every call), logging in and out.
NOT_WALKED = re.compile(r"^/api/v1/(calls|tasks|auth|openapi)|^/(login|logout|static)|^/$")


@pytest.fixture
async def two_teams(settings: Settings, ingest_client: Client) -> AsyncIterator[Any]:
    """A call of team A (mgr_a) and one of team B (mgr_b), each with a delivery, a
    comment, stored audio and a table row."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo_url, tz_aware=True)
    db = client.get_default_database()
    now = utcnow()
    await db.tables.insert_one(
        {
            "_id": "tbl_shared",
            "name": "Сделки",
            "stage_id": None,
            "deal_stage_ids": [],
            "fields": [{"key": "budget", "type": "number", "method": "regex", "pattern": "(\\d+)"}],
            "webhook": {"url": "https://crm.example/hooks/table", "secret": "whsec_x"},
            "created_at": now,
            "updated_at": now,
        }
    )
    bucket = AsyncGridFSBucket(db, bucket_name=AUDIO_BUCKET)
    for index, team in ((1, "a"), (2, "b")):
        call = analysed_call(index, manager_id=f"mgr_{team}", table_id="tbl_shared")
        call["audio"] = {"file_id": call["_id"], "container": "wav"}
        await db.calls.insert_one(call)
        said = [{"speaker": "client", "text": "добрый день", "words": []}]
        await search_index.index_calls(
            db, [search_index.Indexed(call["_id"], call["received_at"], call["manager_id"], said)]
        )
        await bucket.upload_from_stream_with_id(call["_id"], "call.wav", b"RIFF" + bytes(60))
        await db.deliveries.insert_one(
            {
                "_id": f"msg_team_{team}",
                "task_id": call["_id"],
                "call_id": call["call_id"],
                "manager_id": call["manager_id"],
                "task_deliveries": 1,
                "type": "checklist.completed",
                "url": "https://crm.example/hooks/checklist",
                "secret": "whsec_x",
                "body": "{}",
                "status": "dead",
                "attempts": [],
                "round_attempts": 7,
                "created_at": now,
                "updated_at": now,
            }
        )
        await db.comments.insert_one(
            {"task_id": call["_id"], "author": "head@example.ru", "text": "заметка", "at": now}
        )
    await rollups.rebuild(db, settings.timezone)  # stored here, not through events
    yield db
    await client.close()


def _routes(client: Client) -> list[tuple[str, str]]:
    """Every (method, path) of the back office, path parameters filled in."""
    walked = []
    for route in client.app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if route.method in ("HEAD", "OPTIONS") or NOT_WALKED.search(path):
            continue
        values = {**PATH_VALUES, "id": ID_OF.get(path, "nothing_here")}
        filled = re.sub(r"\{(\w+)\}", lambda name, values=values: values[name[1]], path)
        walked.append((route.method, filled))
    return sorted(set(walked))


async def _walk(client: Client, session: dict[str, Any]) -> dict[tuple[str, str], tuple[int, str]]:
    """Each route as this person: the status and the text of the answer."""
    headers = {**bearer(session), "X-CSRF-Token": session["csrf_token"]}
    answers = {}
    for method, path in _routes(client):
        if path.startswith("/api/"):
            body: dict[str, Any] = {"json": {"text": "проверка"}} if method != "GET" else {}
        else:
            body = {"data": {"csrf_token": session["csrf_token"], "text": "проверка"}}
        response = await client.request(
            method,
            path,
            headers=headers,
            params=QUERY_OF.get(path),
            allow_redirects=False,
            **body,
        )
        answers[(method, path)] = (response.status, await response.text(errors="replace"))
    return answers


async def test_nobody_sees_or_touches_another_team_s_call(
    ingest_client: Client, two_teams: Any
) -> None:
    admin_headers = await admin(ingest_client)  # only to create the two people
    await user(
        ingest_client, admin_headers, email="head@example.ru", role="supervisor",
        team_manager_ids=["mgr_a"],
    )  # fmt: skip
    await user(
        ingest_client, admin_headers, email="anna@example.ru", role="manager", manager_id="mgr_a"
    )
    leaks = []
    for email in ("head@example.ru", "anna@example.ru"):
        ingest_client.session.cookie_jar.clear()
        session = await log_in(ingest_client, email, "long enough 1")
        for (method, path), (status, text) in (await _walk(ingest_client, session)).items():
            shown = [marker for marker in OTHER_TEAM if marker in text]
            acted = (
                method != "GET"
                and 200 <= status < 400
                and any(marker in path for marker in OTHER_TEAM)
            )
            if shown or acted:
                leaks.append(f"{email} {method} {path} -> {status}, shows {shown}")
    assert leaks == []
    ingest_client.session.cookie_jar.clear()
    everything = await _walk(
        ingest_client, await log_in(ingest_client, ADMIN_EMAIL, ADMIN_PASSWORD)
    )
    seen_by_admin = {
        key for key, (_, text) in everything.items() if any(m in text for m in OTHER_TEAM)
    }
    assert {
        ("GET", "/api/v1/admin/calls"),
        ("GET", "/api/v1/admin/calls/task_000000000002"),
        ("GET", "/api/v1/deliveries"),
        ("GET", "/api/v1/tables/tbl_shared/rows"),
        ("GET", "/calls"),
        ("GET", "/calls/task_000000000002"),
        ("GET", "/api/v1/admin/search"),
        ("GET", "/search"),
    } <= seen_by_admin


async def test_deliveries_stored_before_they_carried_a_manager_are_given_theirs(
    ingest_client: Client, two_teams: Any
) -> None:
    await two_teams.deliveries.update_many({}, {"$unset": {"manager_id": ""}})
    assert await give_deliveries_their_manager(two_teams) == 2
    assert await give_deliveries_their_manager(two_teams) == 0  # once done, nothing to do
    admin_headers = await admin(ingest_client)
    head = await user(
        ingest_client, admin_headers, email="head@example.ru", role="supervisor",
        team_manager_ids=["mgr_b"],
    )  # fmt: skip
    listed = await (await ingest_client.get("/api/v1/deliveries", headers=head)).json()
    assert [item["id"] for item in listed["items"]] == ["msg_team_b"]
