"""Login and the admin-only connection settings of SPEC §4.1."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from services.ingest.backoffice.accounts import Role
from shared.settings import Settings
from tests.api_client import add_user, bearer, log_in
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, API_KEY

Client = TestClient[Any, Any]
CONNECTION = "/api/v1/settings/connection"


async def test_admin_sees_ready_made_urls_with_the_key(ingest_client: Client) -> None:
    session = await log_in(ingest_client, ADMIN_EMAIL, ADMIN_PASSWORD)
    assert session["user"]["role"] == "admin"
    response = await ingest_client.get(CONNECTION, headers=bearer(session))
    body = await response.json()
    assert response.status == 200
    base = str(ingest_client.make_url("")).rstrip("/")
    assert body["upload_url"] == f"{base}/api/v1/calls/audio-upload?apiKey={API_KEY}"
    assert body["json_url"] == f"{base}/api/v1/calls?apiKey={API_KEY}"
    assert body["api_key"] == API_KEY
    assert body["min_call_duration_s"] == 0
    assert body["error_webhook"] is None


async def test_connection_needs_a_session(ingest_client: Client) -> None:
    for response in (
        await ingest_client.get(CONNECTION),
        await ingest_client.get(CONNECTION, headers={"Authorization": "Bearer forged"}),
        await ingest_client.put(CONNECTION, json={"min_call_duration_s": 5}),
        await ingest_client.get(CONNECTION, params={"apiKey": API_KEY}),
    ):
        assert response.status == 401
        assert (await response.json())["code"] == "unauthorized"


@pytest.mark.parametrize("role", [Role.SUPERVISOR, Role.MANAGER])
async def test_other_roles_get_403(ingest_client: Client, settings: Settings, role: Role) -> None:
    await add_user(settings, f"{role.value}@test.local", "pw-123456", role)
    session = await log_in(ingest_client, f"{role.value}@test.local", "pw-123456")
    for response in (
        await ingest_client.get(CONNECTION, headers=bearer(session)),
        await ingest_client.put(
            CONNECTION, json={"min_call_duration_s": 1}, headers=bearer(session)
        ),
    ):
        assert response.status == 403
        assert (await response.json())["code"] == "forbidden"


@pytest.mark.parametrize(
    ("email", "password"),
    [
        (ADMIN_EMAIL, "wrong"),
        ("nobody@test.local", ADMIN_PASSWORD),
        ("off@test.local", "pw-123456"),
    ],
)
async def test_bad_credentials_and_switched_off_users_are_401(
    ingest_client: Client, settings: Settings, email: str, password: str
) -> None:
    await add_user(settings, "off@test.local", "pw-123456", Role.ADMIN, active=False)
    response = await ingest_client.post(
        "/api/v1/auth/login", json={"email": email, "password": password}
    )
    body = await response.json()
    assert response.status == 401
    assert body["message"] == "Неверный email или пароль"
    assert "set-cookie" not in {name.lower() for name in response.headers}


@pytest.mark.parametrize("body", [{}, {"email": "a@b.c"}, {"email": 1, "password": 2}, [1]])
async def test_malformed_login_is_400(ingest_client: Client, body: Any) -> None:
    response = await ingest_client.post("/api/v1/auth/login", json=body)
    assert response.status == 400
    assert (await response.json())["code"] == "invalid_request"


async def test_cookie_session_needs_the_csrf_token_to_change_settings(
    ingest_client: Client,
) -> None:
    response = await ingest_client.post(
        "/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    )
    session = await response.json()
    set_cookie = response.headers["Set-Cookie"]
    assert set_cookie.startswith("rop_session=")
    assert session["token"] not in set_cookie  # the browser's key is not the API token
    assert "HttpOnly" in set_cookie
    assert "SameSite=Lax" in set_cookie

    assert (await ingest_client.get(CONNECTION)).status == 200
    without = await ingest_client.put(CONNECTION, json={"min_call_duration_s": 7})
    assert without.status == 403
    with_token = await ingest_client.put(
        CONNECTION, json={"min_call_duration_s": 7}, headers={"X-CSRF-Token": session["csrf_token"]}
    )
    assert with_token.status == 200
    assert (await with_token.json())["min_call_duration_s"] == 7

    assert (
        await ingest_client.post(
            "/api/v1/auth/logout", headers={"X-CSRF-Token": session["csrf_token"]}
        )
    ).status == 200
    assert (await ingest_client.get(CONNECTION)).status == 401  # the browser is logged out
    assert (await ingest_client.get(CONNECTION, headers=bearer(session))).status == 200
    assert (await ingest_client.post("/api/v1/auth/logout", headers=bearer(session))).status == 200
    assert (await ingest_client.get(CONNECTION, headers=bearer(session))).status == 401


async def test_error_webhook_gets_a_secret_that_changes_with_the_url(ingest_client: Client) -> None:
    headers = bearer(await log_in(ingest_client, ADMIN_EMAIL, ADMIN_PASSWORD))
    first = await (
        await ingest_client.put(
            CONNECTION,
            json={"error_webhook_url": "https://crm.example/hooks/errors"},
            headers=headers,
        )
    ).json()
    secret = first["error_webhook"]["secret"]
    assert first["error_webhook"]["url"] == "https://crm.example/hooks/errors"
    assert secret.startswith("whsec_")
    assert len(secret) > 30
    same = await (
        await ingest_client.put(
            CONNECTION,
            json={
                "error_webhook_url": "https://crm.example/hooks/errors",
                "min_call_duration_s": 3,
            },
            headers=headers,
        )
    ).json()
    assert same["error_webhook"]["secret"] == secret
    assert same["min_call_duration_s"] == 3
    moved = await (
        await ingest_client.put(
            CONNECTION, json={"error_webhook_url": "https://crm.example/hooks/v2"}, headers=headers
        )
    ).json()
    assert moved["error_webhook"]["secret"] != secret
    cleared = await (
        await ingest_client.put(CONNECTION, json={"error_webhook_url": None}, headers=headers)
    ).json()
    assert cleared["error_webhook"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"min_call_duration_s": -1}, "min_call_duration_s"),
        ({"min_call_duration_s": "abc"}, "min_call_duration_s"),
        ({"error_webhook_url": "ftp://x"}, "error_webhook_url"),
        ({"api_key": "mine"}, "api_key"),
        ({"voiceprints_enabled": 0}, "voiceprints_enabled"),  # a number is not a yes or no
        ({"voiceprints_enabled": "false"}, "voiceprints_enabled"),
    ],
)
async def test_bad_settings_are_400_naming_the_field(
    ingest_client: Client, body: dict[str, Any], field: str
) -> None:
    headers = bearer(await log_in(ingest_client, ADMIN_EMAIL, ADMIN_PASSWORD))
    response = await ingest_client.put(CONNECTION, json=body, headers=headers)
    answer = await response.json()
    assert response.status == 400
    assert [d["field"] for d in answer["details"]] == [field]
    unchanged = await (await ingest_client.get(CONNECTION, headers=headers)).json()
    assert unchanged["api_key"] == API_KEY
    assert unchanged["min_call_duration_s"] == 0


async def test_every_answer_is_hardened_and_never_cached(
    ingest_client: Client,
) -> None:
    session = await log_in(ingest_client, ADMIN_EMAIL, ADMIN_PASSWORD)
    answers = {
        "secrets": await ingest_client.get(CONNECTION, headers=bearer(session)),
        "error": await ingest_client.post("/api/v1/calls", json={}),
        "not found": await ingest_client.get("/api/v1/nothing-here"),
        "page": await ingest_client.get("/login"),
        # Signed in by the login above (its cookie): the pages' Excel exports.
        "page export": await ingest_client.get("/calls/export.xlsx"),
        "search export": await ingest_client.get("/search/export.xlsx", params={"q": "цена"}),
        "trust export": await ingest_client.get("/trust", params={"format": "xlsx"}),
    }
    for name, response in answers.items():
        headers = response.headers
        assert headers["X-Content-Type-Options"] == "nosniff", name
        assert headers["X-Frame-Options"] == "DENY", name
        assert headers["Cache-Control"] == "no-store", name
        assert headers.get("Server") == "rop", name  # no version banner
    assert answers["page export"].status == answers["trust export"].status == 200


async def test_unknown_pages_answer_the_site_s_error_page_and_the_api_json(
    ingest_client: Client,
) -> None:
    for path in ("/nope", "/settings/foo"):
        page = await ingest_client.get(path)
        assert page.status == 404, path
        assert page.content_type == "text/html", path
        assert "Не найдено" in await page.text()
    await log_in(ingest_client, ADMIN_EMAIL, ADMIN_PASSWORD)  # the page has its menu then
    assert "Коммуникации" in await (await ingest_client.get("/nope")).text()
    api = await ingest_client.get("/api/v1/nothing-here")
    assert api.status == 404
    assert (await api.json())["code"] == "not_found"


async def test_a_flag_is_not_a_number_of_seconds(ingest_client: Client) -> None:
    headers = bearer(await log_in(ingest_client, ADMIN_EMAIL, ADMIN_PASSWORD))
    for flag in (False, True):
        response = await ingest_client.put(
            CONNECTION, json={"min_call_duration_s": flag}, headers=headers
        )
        assert response.status == 400
        assert [d["field"] for d in (await response.json())["details"]] == ["min_call_duration_s"]
    saved = await ingest_client.put(CONNECTION, json={"min_call_duration_s": 30}, headers=headers)
    assert (await saved.json())["min_call_duration_s"] == 30


async def test_the_calls_language_is_russian_unless_an_admin_sets_it(
    ingest_client: Client,
) -> None:
    headers = bearer(await log_in(ingest_client, ADMIN_EMAIL, ADMIN_PASSWORD))
    assert (await (await ingest_client.get(CONNECTION, headers=headers)).json())[
        "call_language"
    ] == "ru"

    changed = await ingest_client.put(CONNECTION, json={"call_language": "auto"}, headers=headers)
    assert changed.status == 200
    assert (await changed.json())["call_language"] == "auto"
    refused = await ingest_client.put(CONNECTION, json={"call_language": "fr"}, headers=headers)
    body = await refused.json()
    assert refused.status == 400
    assert body["code"] == "invalid_request"
    assert [detail["field"] for detail in body["details"]] == ["call_language"]
    assert (await (await ingest_client.get(CONNECTION, headers=headers)).json())[
        "call_language"
    ] == "auto"
