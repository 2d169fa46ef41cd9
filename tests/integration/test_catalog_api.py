"""Templates, bindings and tables through the admin API (SPEC §4.1)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from services.ingest.app import create_app
from services.ingest.backoffice.accounts import Role
from shared.settings import Settings
from tests.api_client import add_user, bearer, log_in
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD

Client = TestClient[Any, Any]

POINT = {"text": "Назвал компанию", "weight": 100, "phrases": ["компания ромашка"]}
TEMPLATE = {
    "name": "Первичный звонок",
    "stages": [
        {
            "name": "Приветствие",
            "threshold": 60,
            "points": [POINT],
        },
        {
            "name": "Следующий шаг",
            "method": "llm",
            "threshold": 50,
            "criteria": "Договорился о дате следующего контакта",
        },
    ],
}
TABLE = {
    "name": "Сделки",
    "webhook": {"url": "https://crm.example/hooks/table"},
    "fields": [
        {
            "key": "budget",
            "name": "Бюджет",
            "type": "number",
            "method": "regex",
            "pattern": r"(\d+) тысяч",
        },
        {"key": "talk_ratio", "type": "number", "method": "metric", "metric": "talk_ratio"},
    ],
}


@pytest.fixture
async def admin(ingest_client: Client) -> dict[str, str]:
    return bearer(await log_in(ingest_client, ADMIN_EMAIL, ADMIN_PASSWORD))


async def test_template_lifecycle(ingest_client: Client, admin: dict[str, str]) -> None:
    created = await ingest_client.post("/api/v1/templates", json=TEMPLATE, headers=admin)
    body = await created.json()
    assert created.status == 201
    assert body["id"].startswith("tpl_")
    assert body["stages"][0]["points"][0]["speaker"] == "manager"  # default filled in
    assert body["version"] == 1

    changed = {**TEMPLATE, "name": "Повторный звонок"}
    put = await ingest_client.put(f"/api/v1/templates/{body['id']}", json=changed, headers=admin)
    assert (await put.json())["name"] == "Повторный звонок"
    assert (await put.json())["version"] == 2
    versions = await ingest_client.get(f"/api/v1/templates/{body['id']}/versions", headers=admin)
    items = (await versions.json())["items"]
    assert [(v["version"], v["name"]) for v in items] == [
        (2, "Повторный звонок"),
        (1, "Первичный звонок"),
    ]
    assert items[1]["stages"][0]["name"] == "Приветствие"
    listed = await (await ingest_client.get("/api/v1/templates", headers=admin)).json()
    assert [item["id"] for item in listed] == [body["id"]]

    deleted = await ingest_client.delete(f"/api/v1/templates/{body['id']}", headers=admin)
    assert deleted.status == 204
    gone = await ingest_client.get(f"/api/v1/templates/{body['id']}", headers=admin)
    assert gone.status == 404
    assert (await gone.json())["code"] == "not_found"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"stages": []}, "stages"),
        ({"name": ""}, "name"),
        ({"stages": [{**TEMPLATE["stages"][0], "threshold": 150}]}, "stages.0.threshold"),
        (
            {
                "stages": [
                    {
                        **TEMPLATE["stages"][0],
                        "points": [{"text": "x", "weight": 30, "phrases": ["a"]}],
                    }
                ]
            },
            "stages.0",
        ),
        (
            {"stages": [{**TEMPLATE["stages"][0], "points": [{**POINT, "forbidden": 1}]}]},
            "stages.0.points.0.forbidden",
        ),
    ],
)
async def test_invalid_template_is_400_naming_the_field(
    ingest_client: Client, admin: dict[str, str], change: dict[str, Any], field: str
) -> None:
    response = await ingest_client.post(
        "/api/v1/templates", json={**TEMPLATE, **change}, headers=admin
    )
    body = await response.json()
    assert response.status == 400
    assert body["code"] == "invalid_request"
    assert field in [detail["field"] for detail in body["details"]]


async def test_binding_webhook_gets_a_secret_and_its_url_is_fixed(
    ingest_client: Client, admin: dict[str, str]
) -> None:
    template_id = (
        await (await ingest_client.post("/api/v1/templates", json=TEMPLATE, headers=admin)).json()
    )["id"]
    binding = {
        "template_id": template_id,
        "stage_id": "funnel_primary_calls",
        "deal_stage_ids": [],
        "manager_ids": [],
        "webhook": {"url": "https://crm.example/hooks/checklist"},
    }
    created = await (
        await ingest_client.post("/api/v1/bindings", json=binding, headers=admin)
    ).json()
    secret = created["webhook"]["secret"]
    assert secret.startswith("whsec_")

    same_url = {**binding, "manager_ids": ["mgr_001"]}
    updated = await ingest_client.put(
        f"/api/v1/bindings/{created['id']}", json=same_url, headers=admin
    )
    assert updated.status == 200
    assert (await updated.json())["webhook"]["secret"] == secret

    moved = {**binding, "webhook": {"url": "https://crm.example/hooks/other"}}
    refused = await ingest_client.put(
        f"/api/v1/bindings/{created['id']}", json=moved, headers=admin
    )
    assert refused.status == 400
    assert (await refused.json())["details"][0]["field"] == "webhook.url"

    in_use = await ingest_client.delete(f"/api/v1/templates/{template_id}", headers=admin)
    assert in_use.status == 409
    assert (await in_use.json())["code"] == "conflict"


async def test_binding_to_a_missing_template_is_400(
    ingest_client: Client, admin: dict[str, str]
) -> None:
    response = await ingest_client.post(
        "/api/v1/bindings",
        json={"template_id": "tpl_missing", "webhook": {"url": "https://crm.example/h"}},
        headers=admin,
    )
    assert response.status == 400
    assert (await response.json())["details"][0]["field"] == "template_id"


async def test_tables_are_validated_and_stored(
    ingest_client: Client, admin: dict[str, str]
) -> None:
    created = await ingest_client.post("/api/v1/tables", json=TABLE, headers=admin)
    assert created.status == 201
    bad = {**TABLE, "fields": [{**TABLE["fields"][0], "pattern": "(broken"}]}
    refused = await ingest_client.post("/api/v1/tables", json=bad, headers=admin)
    assert refused.status == 400
    assert (await refused.json())["details"][0]["field"] == "fields.0"


async def test_supervisors_may_edit_managers_may_not(
    ingest_client: Client, settings: Settings
) -> None:
    await add_user(settings, "head@test.local", "pw-123456", Role.SUPERVISOR)
    await add_user(settings, "seller@test.local", "pw-123456", Role.MANAGER)
    head = bearer(await log_in(ingest_client, "head@test.local", "pw-123456"))
    seller = bearer(await log_in(ingest_client, "seller@test.local", "pw-123456"))
    assert (
        await ingest_client.post("/api/v1/templates", json=TEMPLATE, headers=head)
    ).status == 201
    ingest_client.session.cookie_jar.clear()  # the logins above left a session cookie
    for path in ("/api/v1/templates", "/api/v1/bindings", "/api/v1/tables"):
        assert (await ingest_client.get(path, headers=seller)).status == 403
        assert (await ingest_client.get(path)).status == 401


async def test_signing_secrets_are_shown_to_admins_only(
    ingest_client: Client, settings: Settings, admin: dict[str, str]
) -> None:
    await add_user(settings, "head@test.local", "pw-123456", Role.SUPERVISOR)
    head = bearer(await log_in(ingest_client, "head@test.local", "pw-123456"))
    created = await ingest_client.post("/api/v1/tables", json=TABLE, headers=head)
    assert created.status == 201
    table = await created.json()
    path = f"/api/v1/tables/{table['id']}"
    replaced = await ingest_client.put(path, json={**TABLE, "name": "Другая"}, headers=head)
    seen_by_head = [
        table,
        await (await ingest_client.get(path, headers=head)).json(),
        await replaced.json(),
        *await (await ingest_client.get("/api/v1/tables", headers=head)).json(),
    ]
    hidden = {"url": TABLE["webhook"]["url"], "secret": None, "secret_set": True}
    assert [seen["webhook"] for seen in seen_by_head] == [hidden] * 4
    shown = (await (await ingest_client.get(path, headers=admin)).json())["webhook"]
    assert shown["secret"].startswith("whsec_")
    assert shown["secret_set"] is True


async def test_first_start_makes_the_samples_once(settings: Settings) -> None:
    seeding = settings.model_copy(update={"seed_samples": True})
    for _ in range(2):  # a restart does not make them again
        client: Client = TestClient(TestServer(create_app(seeding), host="127.0.0.1"))
        await client.start_server()
        headers = bearer(await log_in(client, ADMIN_EMAIL, ADMIN_PASSWORD))
        templates = await (await client.get("/api/v1/templates", headers=headers)).json()
        bindings = await (await client.get("/api/v1/bindings", headers=headers)).json()
        tables = await (await client.get("/api/v1/tables", headers=headers)).json()
        await client.close()
        assert len(templates) == len(bindings) == len(tables) == 1
    assert [stage["name"] for stage in templates[0]["stages"]] == [
        "Приветствие",
        "Выявление потребностей",
        "Презентация",
        "Работа с возражениями",
        "Следующий шаг",
    ]
    assert bindings[0]["template_id"] == templates[0]["id"]
    assert bindings[0]["webhook"]["secret"].startswith("whsec_")


FORBIDDEN_LINKS = [
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/hook",
    "http://user:pw@crm.example/hook",
    "http://127.0.0.1:1\\@169.254.169.254/",
    "http://2852039166/hook",
    "http://0/hook",
]


@pytest.mark.parametrize("link", FORBIDDEN_LINKS)
async def test_webhook_links_are_checked_when_saved(
    settings: Settings, admin: dict[str, str], ingest_client: Client, link: str
) -> None:
    """One rule for every endpoint, named in the 400 (and checked again at send time)."""
    template = await (
        await ingest_client.post("/api/v1/templates", json=TEMPLATE, headers=admin)
    ).json()
    saves = [
        ("/api/v1/tables", {**TABLE, "webhook": {"url": link}}, "webhook.url", "post"),
        (
            "/api/v1/bindings",
            {"template_id": template["id"], "webhook": {"url": link}},
            "webhook.url",
            "post",
        ),
        ("/api/v1/settings/connection", {"error_webhook_url": link}, "error_webhook_url", "put"),
    ]
    for path, body, field, method in saves:
        response = await getattr(ingest_client, method)(path, json=body, headers=admin)
        answer = await response.json()
        assert response.status == 400, (path, answer)
        assert answer["code"] == "invalid_request"
        assert [detail["field"] for detail in answer["details"]] == [field], answer
    listed = await (await ingest_client.get("/api/v1/tables", headers=admin)).json()
    assert listed == [] or all(item["webhook"]["url"] != link for item in listed)
