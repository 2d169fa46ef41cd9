"""Alerts in the browser: the mail server is set on the Connection page, a rule is made
through its form, and the alert it raises on a call lights the bell of the top bar; the
notification opens the call and is read."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, expect

from devtools.samples import analysed_call
from services.notifier.handlers import Notifier
from shared.events import CallAnalyzed, Envelope, call_meta
from tests.helpers import wait_for
from tests.ui.conftest import log_in_as_admin, screenshot

pytestmark = pytest.mark.timeout(120)


async def test_a_rule_made_in_the_form_rings_the_bell_and_opens_the_call(
    browser: Browser, live_ingest: str, notifier: Notifier
) -> None:
    page = await log_in_as_admin(browser, live_ingest)
    await page.goto(f"{live_ingest}/settings/connection")
    await page.get_by_label("SMTP-сервер").fill("smtp.company.test")
    await page.get_by_label("Адрес отправителя").fill("rop@company.test")
    await page.get_by_label("Пароль").fill("mail secret")
    await page.get_by_role("button", name="Сохранить").click()
    await expect(page.get_by_role("status")).to_have_text("Сохранено")
    await expect(page.get_by_label("SMTP-сервер")).to_have_value("smtp.company.test")
    assert "mail secret" not in await page.content()
    await expect(page.get_by_text("Задан — оставьте пустым, чтобы не менять")).to_be_visible()

    await page.goto(f"{live_ingest}/settings/alerts")
    await page.get_by_role("link", name="Создать").click()
    await page.get_by_label("Название").fill("Низкая оценка")
    await page.get_by_label("Когда").select_option(label="Оценка ниже порога")
    await page.get_by_label("Оценка ниже, %").fill("60")
    await page.get_by_label("Пользователям").select_option(label="admin@test.local (Администратор)")
    await page.get_by_label("Руководителям команды менеджера").uncheck()
    await screenshot(page, "alert-rule-form")
    await page.get_by_role("button", name="Сохранить").click()
    await page.wait_for_url(re.compile(r"/settings/alerts\?notice=saved"))
    row = page.locator("tbody tr").first
    await expect(row).to_contain_text("Низкая оценка")
    await expect(row).to_contain_text("Оценка ниже порога 60%")
    await expect(row).to_contain_text("В приложении")

    bell = page.get_by_role("link", name=re.compile("^Уведомления"))
    await expect(bell).to_have_accessible_name("Уведомления")
    call = analysed_call(1, manager_id="mgr_1")  # 1 of 2 stages: 50 %
    await notifier.db.calls.insert_one(call)
    event = CallAnalyzed(**call_meta(call), duration_s=60, checklists=1, tables=0)
    await notifier.broker.publish(Envelope.wrap(event, task_id=call["_id"]))
    count = page.locator(".bell .count")
    await expect(count).to_have_count(0)

    async def rang() -> bool:
        await page.reload()
        return await count.count() == 1

    await wait_for(rang, interval_s=0.3)
    await expect(count).to_have_text("1")
    await expect(bell).to_have_accessible_name("Уведомления: непрочитанных 1")
    await bell.click()
    await expect(page.get_by_role("heading", name="Уведомления")).to_be_visible()
    item = page.get_by_role("link", name=re.compile("Низкая оценка: Оценка 50%"))
    await screenshot(page, "notifications")
    await item.click()
    await page.wait_for_url(f"**/calls/{call['_id']}")
    await expect(page.locator(".bell .count")).to_have_count(0)

    await page.goto(f"{live_ingest}/alerts")
    await expect(page.locator("tbody tr")).to_have_count(1)
    await expect(page.locator("tbody tr")).to_contain_text("admin@test.local — доставлено")
    await screenshot(page, "alert-log")
