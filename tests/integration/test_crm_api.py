"""The CRM API of SPEC §2 against a real database and broker."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import API_KEY
from tests.crm_client import (
    FORM_ENCODINGS,
    a_call,
    post_form,
    post_json,
)

Client = TestClient[Any, Any]
ACCEPTED = "Звонок успешно получен и поставлен в очередь на анализ"
TASK_ID = re.compile(r"^task_[0-9a-f]{12}$")
ESTIMATE = re.compile(r"^\d+-\d+ минут$")


async def test_json_submission_gets_the_seed_answer(ingest_client: Client) -> None:
    response = await post_json(ingest_client, a_call())
    body = await response.json()
    assert response.status == 200
    assert set(body) == {"status", "message", "task_id", "estimated_processing_time"}
    assert body["status"] == "success"
    assert body["message"] == ACCEPTED
    assert TASK_ID.match(body["task_id"])
    assert body["estimated_processing_time"] == "5-15 минут"


@pytest.mark.parametrize("encoding", list(FORM_ENCODINGS))
async def test_form_without_duration_is_accepted(ingest_client: Client, encoding: str) -> None:
    # The seed's own curl example: no duration, no manager_name.
    call = a_call(duration=None, manager_name=None, stage_id=None)
    response = await post_form(ingest_client, call, encoding)
    body = await response.json()
    assert response.status == 200, body
    assert body["status"] == "success"
    task = await (
        await ingest_client.get(f"/api/v1/tasks/{body['task_id']}", params={"apiKey": API_KEY})
    ).json()
    assert task["call_id"] == call["call_id"]
    assert task["declared_duration_s"] is None
    assert task["deal_stage_id"] == "stage_qualification"


@pytest.mark.parametrize("encoding", list(FORM_ENCODINGS))
async def test_form_keeps_cyrillic_and_unknown_fields(ingest_client: Client, encoding: str) -> None:
    # A decimal comma, as Russian CRMs write it.
    call = a_call(duration="12,5", manager_name="Петров Пётр", crm_note="перезвонить")
    response = await post_form(ingest_client, call, encoding)
    assert response.status == 200
    task = await (
        await ingest_client.get(f"/api/v1/calls/{call['call_id']}", headers={"X-API-Key": API_KEY})
    ).json()
    assert task["manager_name"] == "Петров Пётр"
    assert task["declared_duration_s"] == 12.5
    assert task["extra"] == {"crm_note": "перезвонить"}


async def test_json_unknown_fields_are_kept_in_extra(ingest_client: Client) -> None:
    call = a_call(client_phone="+7 900 000-00-00", tags=["vip"])
    assert (await post_json(ingest_client, call)).status == 200
    task = await (
        await ingest_client.get(f"/api/v1/calls/{call['call_id']}", params={"apiKey": API_KEY})
    ).json()
    assert task["extra"] == {"client_phone": "+7 900 000-00-00", "tags": ["vip"]}


@pytest.mark.parametrize(
    ("change", "fields"),
    [
        ({"call_id": None}, ["call_id"]),
        ({"audio_url": None}, ["audio_url"]),
        ({"manager_id": None}, ["manager_id"]),
        ({"deal_id": None}, ["deal_id"]),
        ({"duration": None}, ["duration"]),
        ({"call_id": "", "deal_id": ""}, ["call_id", "deal_id"]),
        ({"call_id": "x" * 129}, ["call_id"]),
        ({"call_id": "bad\nid"}, ["call_id"]),
        ({"audio_url": "ftp://crm.example/a.mp3"}, ["audio_url"]),
        ({"audio_url": "not a url"}, ["audio_url"]),
        ({"duration": -1}, ["duration"]),
        ({"duration": "900"}, ["duration"]),
        ({"duration": True}, ["duration"]),
        ({"manager_id": {"id": 1}}, ["manager_id"]),
        ({"manager_id": True}, ["manager_id"]),
        ({"stage_id": ["a"]}, ["stage_id"]),
        ({"manager_name": "я" * 513}, ["manager_name"]),
    ],
)
async def test_json_invalid_fields_are_named(
    ingest_client: Client, change: dict[str, Any], fields: list[str]
) -> None:
    call = a_call(**change)
    response = await post_json(ingest_client, call)
    body = await response.json()
    assert response.status == 400
    assert body["status"] == "error"
    assert body["code"] == "invalid_request"
    assert [d["field"] for d in body["details"]] == fields
    for name in fields:
        assert name in body["message"]


@pytest.mark.parametrize("encoding", list(FORM_ENCODINGS))
@pytest.mark.parametrize(
    ("change", "fields"),
    [
        ({"call_id": None}, ["call_id"]),
        ({"audio_url": None, "deal_id": None}, ["audio_url", "deal_id"]),
        ({"duration": "девятьсот"}, ["duration"]),
        ({"duration": "-5"}, ["duration"]),
        ({"duration": "inf"}, ["duration"]),
        ({"audio_url": "javascript:alert(1)"}, ["audio_url"]),
    ],
)
async def test_form_invalid_fields_are_named(
    ingest_client: Client, encoding: str, change: dict[str, Any], fields: list[str]
) -> None:
    call = a_call(**change)
    response = await post_form(ingest_client, call, encoding)
    body = await response.json()
    assert response.status == 400
    assert body["code"] == "invalid_request"
    assert [d["field"] for d in body["details"]] == fields


@pytest.mark.parametrize(
    ("path", "data", "content_type"),
    [
        ("/api/v1/calls", b'{"call_id": ', "application/json"),
        ("/api/v1/calls", b"[1, 2]", "application/json"),
        ("/api/v1/calls", b'{"duration": NaN}', "application/json"),
        ("/api/v1/calls", b"\xff\xfe", "application/json"),
        ("/api/v1/calls", b'{"call_id": ' + b"[" * 5000 + b"]" * 5000 + b"}", "application/json"),
        ("/api/v1/calls", b"call_id=1", "application/x-www-form-urlencoded"),
        ("/api/v1/calls", b"{}", "text/plain"),
        ("/api/v1/calls/audio-upload", b'{"call_id": "1"}', "application/json"),
        ("/api/v1/calls/audio-upload", b"a=%zz&&&", "application/x-www-form-urlencoded"),
        ("/api/v1/calls/audio-upload", b"\xff=\xfe", "application/x-www-form-urlencoded"),
        (
            "/api/v1/calls/audio-upload",
            b"call_id=a%FF&audio_url=http%3A%2F%2Fh%2Fa.mp3&manager_id=m&deal_id=d",
            "application/x-www-form-urlencoded",
        ),
        ("/api/v1/calls/audio-upload", b"--X\r\nbroken", "multipart/form-data; boundary=X"),
        ("/api/v1/calls/audio-upload", b"whatever", "multipart/form-data"),
        ("/api/v1/calls/audio-upload", b"", ""),
    ],
)
async def test_malformed_bodies_are_400(
    ingest_client: Client, path: str, data: bytes, content_type: str
) -> None:
    response = await ingest_client.post(
        path,
        data=data,
        params={"apiKey": API_KEY},
        headers={"Content-Type": content_type} if content_type else {},
    )
    body = await response.json()
    assert response.status == 400, body
    assert body["code"] == "invalid_request"
    assert body["details"]


async def test_uploaded_file_instead_of_link_is_400(ingest_client: Client) -> None:
    form = aiohttp.FormData()
    for name, value in a_call(audio_url=None).items():
        form.add_field(name, str(value))
    form.add_field("audio_url", b"ID3...", filename="call.mp3", content_type="audio/mpeg")
    response = await ingest_client.post(
        "/api/v1/calls/audio-upload", data=form, params={"apiKey": API_KEY}
    )
    body = await response.json()
    assert response.status == 400
    assert body["details"][0]["field"] == "audio_url"


@pytest.mark.parametrize("chunked", [False, True])
async def test_body_over_64_kib_is_400(ingest_client: Client, chunked: bool) -> None:
    data = a_call(padding="x" * (64 * 1024))
    payload = aiohttp.JsonPayload(data)
    if chunked:

        async def stream() -> Any:
            yield payload._value  # type: ignore[attr-defined]

        response = await ingest_client.post(
            "/api/v1/calls",
            data=stream(),
            params={"apiKey": API_KEY},
            headers={"Content-Type": "application/json"},
        )
    else:
        response = await post_json(ingest_client, data)
    body = await response.json()
    assert response.status == 400
    assert body["code"] == "invalid_request"
    assert body["details"] == [{"field": "body", "message": "слишком большой запрос"}]


@pytest.mark.parametrize("key", [None, "", "wrong-key", API_KEY + "x"])
async def test_bad_api_key_is_401_on_both_endpoints(ingest_client: Client, key: str | None) -> None:
    for response in (
        await post_json(ingest_client, a_call(), key=key),
        await post_form(ingest_client, a_call(), "multipart", key=key),
    ):
        body = await response.json()
        assert response.status == 401
        assert body == {
            "status": "error",
            "code": "unauthorized",
            "message": "Недействительный API ключ",
            "details": [],
        }


async def test_api_key_in_header_is_accepted(ingest_client: Client) -> None:
    response = await ingest_client.post(
        "/api/v1/calls", json=a_call(), headers={"X-API-Key": API_KEY}
    )
    assert response.status == 200


async def test_unauthenticated_request_is_not_validated(ingest_client: Client) -> None:
    response = await ingest_client.post("/api/v1/calls", data=b"{", params={"apiKey": "nope"})
    assert response.status == 401


async def test_duplicate_is_409_with_the_first_task_id(ingest_client: Client) -> None:
    call = a_call()
    first = await (await post_json(ingest_client, call)).json()
    for response in (
        await post_json(ingest_client, call),
        await post_form(ingest_client, call, "urlencoded"),
    ):
        body = await response.json()
        assert response.status == 409
        assert body["code"] == "duplicate_call"
        assert body["message"] == "Звонок с данным call_id уже обработан"
        assert body["task_id"] == first["task_id"]


async def test_fifty_concurrent_duplicates_give_one_200(ingest_client: Client) -> None:
    call = a_call()
    responses = await asyncio.gather(*(post_json(ingest_client, call) for _ in range(50)))
    bodies = [await response.json() for response in responses]
    statuses = sorted(response.status for response in responses)
    assert statuses == [200] + [409] * 49
    (winner,) = [body for body in bodies if body["status"] == "success"]
    assert {body["task_id"] for body in bodies} == {winner["task_id"]}


@pytest.mark.parametrize("path", ["/api/v1/tasks/task_000000000000", "/api/v1/calls/nope"])
async def test_unknown_task_is_404(ingest_client: Client, path: str) -> None:
    response = await ingest_client.get(path, params={"apiKey": API_KEY})
    body = await response.json()
    assert response.status == 404
    assert body["code"] == "not_found"


async def test_status_endpoints_need_the_key(ingest_client: Client) -> None:
    task_id = (await (await post_json(ingest_client, a_call())).json())["task_id"]
    response = await ingest_client.get(f"/api/v1/tasks/{task_id}")
    assert response.status == 401


async def test_status_shows_queued_with_a_timeline(ingest_client: Client) -> None:
    call = a_call()
    task_id = (await (await post_json(ingest_client, call)).json())["task_id"]
    by_task = await (
        await ingest_client.get(f"/api/v1/tasks/{task_id}", params={"apiKey": API_KEY})
    ).json()
    by_call = await (
        await ingest_client.get(f"/api/v1/calls/{call['call_id']}", params={"apiKey": API_KEY})
    ).json()
    assert by_task == by_call
    assert by_task["task_id"] == task_id
    assert by_task["status"] == "queued"
    assert by_task["declared_duration_s"] == 900
    assert [entry["status"] for entry in by_task["timeline"]] == ["queued"]
    assert by_task["results"] is None
    assert "outbox" not in by_task


async def test_unknown_route_and_method_are_json(ingest_client: Client) -> None:
    missing = await ingest_client.get("/api/v1/nothing")
    assert missing.status == 404
    assert (await missing.json())["code"] == "not_found"
    wrong_method = await ingest_client.get("/api/v1/calls/audio-upload/x/y")
    assert wrong_method.status == 404
    delete = await ingest_client.delete("/api/v1/calls", params={"apiKey": API_KEY})
    assert delete.status == 405
    assert (await delete.json())["code"] == "method_not_allowed"
    assert delete.headers["Allow"] == "POST"  # RFC 9110: a 405 lists the methods there are


@pytest.mark.parametrize(
    "link",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/a.mp3",
        "http://user:pw@crm.example/a.mp3",
        "http://127.0.0.1:1\\@169.254.169.254/",
        "http://0/a.mp3",
        "http://2852039166/a.mp3",
        "http://0251.0376.0251.0376/a.mp3",
    ],
)
async def test_links_the_policy_refuses_are_400_at_the_gateway(
    ingest_client: Client, link: str
) -> None:
    """Parsed as the downloader's HTTP client will parse them, refused before they are
    accepted: never a task stuck in `downloading`."""
    for response in (
        await post_json(ingest_client, a_call(audio_url=link)),
        await post_form(ingest_client, a_call(audio_url=link), "urlencoded"),
    ):
        body = await response.json()
        assert response.status == 400, body
        assert body["code"] == "invalid_request"
        assert [detail["field"] for detail in body["details"]] == ["audio_url"]
