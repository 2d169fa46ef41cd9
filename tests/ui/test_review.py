"""People in the loop in the browser: a supervisor corrects a verdict on the card; a
manager disputes one, the supervisor accepts it from the queue, the manager sees it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, expect
from pymongo import AsyncMongoClient

from devtools.samples import analysed_call, sample_details
from services.ingest.backoffice.accounts import hash_password, new_user_id
from shared.events import utcnow
from shared.settings import Settings
from tests.ui.conftest import confirming, log_in, screenshot

pytestmark = pytest.mark.timeout(120)

PASSWORD = "long enough 1"
CARD = "/calls/task_000000000001"


@pytest.fixture
async def team(settings: Settings, live_ingest: str) -> AsyncIterator[Any]:
    """Ирина leads mgr_1 (Анна), whose call passed 1 of its 2 stages."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo_url, tz_aware=True)
    db = client.get_default_database()
    for email, name, role, manager_id, team in (
        ("head@example.ru", "Ирина", "supervisor", None, ["mgr_1"]),
        ("anna@example.ru", "Анна", "manager", "mgr_1", []),
    ):
        await db.users.insert_one(
            {
                "_id": new_user_id(),
                "email": email,
                "name": name,
                "password_hash": await hash_password(PASSWORD),
                "role": role,
                "manager_id": manager_id,
                "team_manager_ids": team,
                "active": True,
                "created_at": utcnow(),
            }
        )
    call = analysed_call(1, manager_id="mgr_1", passed=1, applicable=2)
    await db.calls.insert_one(call)
    await db.call_details.insert_one(sample_details(call))
    yield db
    await client.close()


async def test_a_supervisor_corrects_a_stage_and_the_score_changes(
    browser: Browser, live_ingest: str, team: Any
) -> None:
    page = await log_in(browser, live_ingest, "head@example.ru", PASSWORD)
    await page.goto(f"{live_ingest}{CARD}")
    await expect(page.locator(".score.big")).to_contain_text("1/2")
    stage = page.locator("li.stage").nth(1)
    await stage.get_by_text("Исправить вердикт").click()
    await expect(stage.get_by_label("выполнен", exact=True)).to_be_checked()  # the opposite
    await stage.get_by_label("Причина").fill("Компанию назвал, ASR не расслышал")
    async with confirming(page):
        await stage.get_by_role("button", name="Сохранить исправление").click()

    await expect(page.get_by_role("status")).to_contain_text("Вердикт исправлен")
    await expect(page.locator(".score.big")).to_contain_text("2/2")
    corrected = page.locator("li.stage").nth(1)
    await expect(corrected).to_have_class("stage pass")
    await expect(corrected.locator(".review")).to_contain_text("Оценка ИИ: не выполнен")
    await expect(corrected.locator(".review")).to_contain_text("Ирина")
    await expect(page.locator("#corrections")).to_contain_text("не выполнен → выполнен")
    await screenshot(page, "review-corrected-card")


async def test_a_manager_disputes_and_the_supervisor_accepts_from_the_queue(
    browser: Browser, live_ingest: str, team: Any
) -> None:
    manager = await log_in(browser, live_ingest, "anna@example.ru", PASSWORD)
    await manager.goto(f"{live_ingest}{CARD}")
    stage = manager.locator("li.stage").nth(1)
    await expect(stage.get_by_text("Исправить вердикт")).to_have_count(0)  # not a manager's
    await stage.get_by_text("Оспорить вердикт").click()
    await stage.get_by_label("Почему вердикт неверен").fill("Я назвал компанию на 5-й секунде")
    await stage.get_by_role("button", name="Отправить руководителю").click()
    await expect(manager.get_by_role("status")).to_contain_text("Оспаривание отправлено")
    await expect(manager.locator("li.stage").nth(1).locator(".disputed")).to_contain_text("Открыто")

    lead = await log_in(browser, live_ingest, "head@example.ru", PASSWORD)
    menu = lead.locator("nav[aria-label='Главное меню']")
    await expect(menu.get_by_role("link", name="Оспаривания")).to_contain_text("1")
    await menu.get_by_role("link", name="Оспаривания").click()
    dispute = lead.locator("li.dispute")
    await expect(dispute).to_contain_text("Я назвал компанию на 5-й секунде")
    await screenshot(lead, "review-disputes-queue")
    await dispute.get_by_label("Ответ менеджеру").fill("Согласна, слышно в записи")
    async with confirming(lead) as said:
        await dispute.get_by_role("button", name="Принять").click()
    assert "CRM получит оценку заново" in said[0]
    await expect(lead.get_by_role("status")).to_contain_text("Оспаривание принято")
    await expect(lead.locator("li.dispute")).to_have_count(0)  # the open ones: none left

    await manager.goto(f"{live_ingest}/calls")
    await expect(manager.locator(".dispute-flag")).to_contain_text("принято")
    await manager.goto(f"{live_ingest}{CARD}")
    await expect(manager.locator(".score.big")).to_contain_text("2/2")
    answered = manager.locator("li.stage").nth(1).locator(".disputed")
    await expect(answered).to_contain_text("Принято")
    await expect(answered).to_contain_text("Согласна, слышно в записи")
    await screenshot(manager, "review-dispute-accepted")


async def test_the_trust_page_shows_the_numbers_of_the_reviews(
    browser: Browser, live_ingest: str, team: Any
) -> None:
    template = {"id": "tpl_1", "name": "Первичный звонок", "version": 3}
    now = utcnow()

    def record(n: int, stage: str, machine: str, human: str, kind: str = "blind") -> Any:
        return {
            "_id": f"r{n}",
            "kind": kind,
            "current": True,
            "task_id": "task_000000000001",
            "call_id": "call_1",
            "manager_id": "mgr_1",
            "binding_id": "bnd_1",
            "template": template,
            "stage": stage,
            "method": "phrases",
            "machine": machine,
            "human": human,
            "by": {"id": "u", "email": "head@example.ru", "name": "Ирина"},
            "at": now,
        }

    # «Бюджет»: 3 of 4 agree, one the machine passed and people failed; «Приветствие»: all.
    await team.reviews.insert_many(
        [
            record(1, "Бюджет", "passed", "passed"),
            record(2, "Бюджет", "failed", "failed"),
            record(3, "Бюджет", "failed", "failed"),
            record(4, "Бюджет", "passed", "failed"),
            record(5, "Приветствие", "passed", "passed"),
            record(6, "Приветствие", "failed", "failed"),
            record(7, "Бюджет", "failed", "passed", kind="correction"),
        ]
    )
    page = await log_in(browser, live_ingest, "head@example.ru", PASSWORD)
    await page.get_by_role("link", name="Качество оценки").click()
    rows = page.locator("table.trust tbody tr")
    await expect(rows).to_have_count(3)
    cells = [
        [cell.strip() for cell in await rows.nth(n).locator("td").all_inner_texts()]
        for n in range(3)
    ]
    assert [row[1:4] for row in cells] == [
        ["Бюджет", "фразы", "исправления"],  # 0 % agreement: the lowest first
        ["Бюджет", "фразы", "слепая проверка"],
        ["Приветствие", "фразы", "слепая проверка"],
    ]
    assert cells[1][4:] == ["4", "75.0%", "0.5", "1", "0", "0"]
    assert cells[2][4:7] == ["2", "100.0%", "1.0"]
    assert cells[0][0] == "Первичный звонок v3"
    await screenshot(page, "review-trust-page")
    await rows.nth(1).get_by_role("link", name="Бюджет").click()
    await expect(page.locator("tbody tr")).to_have_count(5)  # «Бюджет»: blind and corrected
    await expect(page.locator("tbody tr.differs")).to_have_count(2)
