"""Who sees what: menus and pages by role, login failures, CSRF, another manager's call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, expect
from pymongo import AsyncMongoClient

from devtools.samples import analysed_call
from services.ingest.backoffice.accounts import hash_password, new_user_id
from shared import rollups
from shared.events import utcnow
from shared.settings import Settings
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.ui.conftest import log_in, log_in_as_admin, screenshot, status_of

pytestmark = pytest.mark.timeout(120)

PASSWORD = "long enough 1"
SECRET = "whsec_c2lnbmluZyBzZWNyZXQgb2YgdGhlIHRhYmxl"


@pytest.fixture
async def people(settings: Settings, live_ingest: str) -> AsyncIterator[Any]:
    """A supervisor, a manager (mgr_1) and calls of two managers."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo_url, tz_aware=True)
    db = client.get_default_database()
    for email, role, manager_id in (
        ("head@example.ru", "supervisor", None),
        ("anna@example.ru", "manager", "mgr_1"),
    ):
        await db.users.insert_one(
            {
                "_id": new_user_id(),
                "email": email,
                "name": email.split("@")[0].title(),
                "password_hash": await hash_password(PASSWORD),
                "role": role,
                "manager_id": manager_id,
                "active": True,
                "created_at": utcnow(),
            }
        )
    await db.calls.insert_many(
        [
            analysed_call(1, manager_id="mgr_1", passed=2, applicable=2),
            analysed_call(2, manager_id="mgr_2", passed=0, applicable=2, days_ago=1),
        ]
    )
    await rollups.rebuild(db, settings.timezone)  # stored here, not through events
    await db.tables.insert_one(
        {
            "_id": "tbl_1",
            "name": "Сделки",
            "stage_id": None,
            "deal_stage_ids": [],
            "fields": [{"key": "budget", "type": "number", "method": "regex", "pattern": r"(\d+)"}],
            "webhook": {"url": "https://crm.example/hooks/table", "secret": SECRET},
            "created_at": utcnow(),
            "updated_at": utcnow(),
        }
    )
    yield db
    await client.close()


async def menu_items(page: Any) -> list[str]:
    await page.locator("nav[aria-label='Главное меню'] summary").click()
    return [
        text.strip()
        for text in await page.locator("nav[aria-label='Главное меню'] a").all_inner_texts()
    ]


async def test_each_role_sees_its_menu_and_pages(
    browser: Browser, live_ingest: str, people: Any
) -> None:
    admin = await log_in_as_admin(browser, live_ingest)
    assert await menu_items(admin) == [
        "Коммуникации", "Менеджеры", "Дашборд", "Оспаривания", "Качество оценки",
        "Подключение", "Шаблоны скриптов", "Скрипты и промты", "Таблицы", "Словари",
        "Уведомления", "Пользователи",
    ]  # fmt: skip
    await expect(admin.locator("#total")).to_have_text("2")
    options = await admin.get_by_label("Менеджер").locator("option").all_inner_texts()
    assert options == ["Все", "Менеджер mgr_1", "Менеджер mgr_2"]
    await screenshot(admin, "calls-admin")

    head = await log_in(browser, live_ingest, "head@example.ru", PASSWORD)
    items = await menu_items(head)
    assert "Подключение" not in items
    assert "Пользователи" not in items
    assert "Менеджеры" in items
    assert await status_of(head, f"{live_ingest}/settings/connection") == 403
    await expect(head.get_by_role("heading", name="Нет доступа")).to_be_visible()
    await head.goto(f"{live_ingest}/settings/tables/tbl_1")
    await expect(head.get_by_text("Секрет подписи задан; его видит администратор.")).to_be_visible()
    assert SECRET not in await head.content()
    await admin.goto(f"{live_ingest}/settings/tables/tbl_1")
    await expect(admin.get_by_label("Секрет подписи")).to_have_value(SECRET)

    anna = await log_in(browser, live_ingest, "anna@example.ru", PASSWORD)
    assert await anna.locator("nav[aria-label='Главное меню'] summary").count() == 0
    await expect(anna.locator("#total")).to_have_text("1")
    await expect(anna.locator("tbody tr")).to_have_count(1)
    options = await anna.get_by_label("Менеджер").locator("option").all_inner_texts()
    assert options == ["Все", "Менеджер mgr_1"]  # never another manager's name
    assert await status_of(anna, f"{live_ingest}/calls/task_000000000001") == 200
    assert await status_of(anna, f"{live_ingest}/calls/task_000000000002") == 403
    await expect(anna.get_by_text("Это звонок другого менеджера")).to_be_visible()
    for path in ("/settings/connection", "/managers", "/settings/templates"):
        assert await status_of(anna, f"{live_ingest}{path}") == 403, path


async def test_wrong_password_and_missing_csrf_are_refused(
    browser: Browser, live_ingest: str, people: Any
) -> None:
    context = await browser.new_context(locale="ru-RU")
    page = await context.new_page()
    await page.goto(f"{live_ingest}/calls")
    await page.wait_for_url("**/login?next=/calls")
    await page.get_by_label("Email").fill(ADMIN_EMAIL)
    await page.get_by_label("Пароль").fill("not the password")
    await page.get_by_role("button", name="Войти").click()
    await expect(page.get_by_role("alert")).to_have_text("Неверный email или пароль")
    await screenshot(page, "login-failed")
    # A login form posted from elsewhere has no token: refused, even with the right password.
    forged_login = await context.request.post(
        f"{live_ingest}/login",
        form={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
        max_redirects=0,
    )
    assert forged_login.status == 403
    assert "Форма входа устарела" in await forged_login.text()

    admin = await log_in_as_admin(browser, live_ingest)
    forged = await admin.request.post(
        f"{live_ingest}/settings/connection", form={"min_call_duration_s": "1"}
    )
    assert forged.status == 403
    assert "CSRF" in await forged.text()
    stale = await admin.request.post(
        f"{live_ingest}/settings/connection",
        form={"min_call_duration_s": "1", "csrf_token": "stale"},
    )
    assert stale.status == 403
    await admin.goto(f"{live_ingest}/settings/connection")
    minimum = admin.get_by_label("Минимальная длительность звонка, секунд")
    assert await minimum.input_value() != "1"


async def test_replay_only_of_the_call_s_own_deliveries(
    browser: Browser, live_ingest: str, people: Any
) -> None:
    now = utcnow()
    for delivery_id, task_id in (
        ("msg_own", "task_000000000001"),
        ("msg_other", "task_000000000002"),
    ):
        await people.deliveries.insert_one(
            {
                "_id": delivery_id,
                "task_id": task_id,
                "type": "checklist.completed",
                "url": "http://127.0.0.1:9/hooks",
                "status": "dead",
                "attempts": [],
                "created_at": now,
                "updated_at": now,
            }
        )
    admin = await log_in_as_admin(browser, live_ingest)
    await admin.goto(f"{live_ingest}/calls/task_000000000001")
    token = await admin.locator("input[name=csrf_token]").first.input_value()
    card = f"{live_ingest}/calls/task_000000000001"
    other = await admin.request.post(
        f"{card}/deliveries/msg_other/redeliver", form={"csrf_token": token}, max_redirects=0
    )
    assert other.status == 403
    assert (await people.deliveries.find_one({"_id": "msg_other"}))["status"] == "dead"
    own = await admin.request.post(
        f"{card}/deliveries/msg_own/redeliver", form={"csrf_token": token}, max_redirects=0
    )
    assert own.status == 303
    assert (await people.deliveries.find_one({"_id": "msg_own"}))["status"] == "pending"
