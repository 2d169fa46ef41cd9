"""The calls' language in the web app: set on the Connection page, shown on the card, and a
call that sounded like another language marked there."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Browser, expect
from pymongo import AsyncMongoClient

from devtools.samples import analysed_call, sample_details
from shared.settings import Settings
from tests.ui.conftest import log_in_as_admin, screenshot

pytestmark = pytest.mark.timeout(120)


async def test_the_language_is_set_on_the_connection_page_and_shown_on_the_card(
    browser: Browser, live_ingest: str, settings: Settings
) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo_url, tz_aware=True)
    db = client.get_default_database()
    call = analysed_call(1)
    call["results"]["language"] = {
        "code": "ru",
        "setting": "ru",
        "detected": "en",
        "probability": 0.97,
        "mismatch": True,
    }
    await db.calls.insert_one(call)
    await db.call_details.insert_one(sample_details(call))
    await client.close()
    page = await log_in_as_admin(browser, live_ingest)

    await page.goto(f"{live_ingest}/calls/{call['_id']}")
    await expect(page.locator(".meta")).to_contain_text("ЯзыкРусский")
    warning = page.locator("p.warning")
    await expect(warning).to_contain_text("говорили по-английски (уверенность модели 97%)")
    await expect(warning).to_contain_text("распознавалась как русский")
    await screenshot(page, "card-language-mismatch")

    await page.goto(f"{live_ingest}/settings/connection")
    language = page.get_by_label("Язык звонков")
    await expect(language).to_have_value("ru")
    await language.select_option(label="Определять по звонку")
    await page.get_by_role("button", name="Сохранить").click()
    await expect(page.get_by_role("status")).to_be_visible()
    await expect(page.get_by_label("Язык звонков")).to_have_value("auto")
