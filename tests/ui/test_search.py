"""Search and trackers in the browser: a head of sales searches from the top bar, opens a
hit and the card's player is at the moment the words were said; a tracker is made through
the settings form and applied to the week's calls."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from gridfs.asynchronous import AsyncGridFSBucket
from playwright.async_api import Browser, expect
from pymongo import AsyncMongoClient

from devtools.samples import analysed_call, sample_details, write_tone
from shared import search_index
from shared.mongo import AUDIO_BUCKET
from shared.settings import Settings
from tests.transcripts import stored_line as line
from tests.ui.conftest import log_in_as_admin, screenshot

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def call_with_audio(
    settings: Settings, live_ingest: str, tmp_path: Path
) -> AsyncIterator[Any]:
    """An analysed call with 30 s of audio whose client says «дорого» at 14.5 s."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo_url, tz_aware=True)
    db = client.get_default_database()
    call = analysed_call(1, manager_id="mgr_1")
    call["audio"] = {"file_id": call["_id"], "container": "wav", "channels": 1}
    transcript = [
        line("manager", 2.0, "Добрый день, компания Ромашка"),
        line("client", 12.0, "Для нас это дорого, нужна скидка"),
    ]
    await db.calls.insert_one(call)
    await db.call_details.insert_one(sample_details(call, transcript=transcript))
    tone = write_tone(tmp_path / "call.wav", sample_rate_hz=8000, channels=1, duration_s=30.0)
    bucket = AsyncGridFSBucket(db, bucket_name=AUDIO_BUCKET)
    await bucket.upload_from_stream_with_id(call["_id"], "call.wav", tone.read_bytes())
    await search_index.index_calls(
        db, [search_index.Indexed(call["_id"], call["received_at"], "mgr_1", transcript)]
    )
    yield db
    await client.close()


async def test_a_hit_found_from_the_top_bar_plays_from_its_time(
    browser: Browser, live_ingest: str, call_with_audio: Any
) -> None:
    page = await log_in_as_admin(browser, live_ingest)
    await page.get_by_role("searchbox", name="Поиск по разговорам").fill("дорогой")
    await page.keyboard.press("Enter")
    await page.wait_for_url(re.compile(r"/search\?q="))
    await expect(page.locator("#total")).to_have_text("1")
    hit = page.locator("a.snippet").first
    await expect(hit).to_contain_text("Клиент:")
    await expect(hit.locator("mark")).to_have_text("дорого,")
    await screenshot(page, "search-results")
    await hit.click()
    await page.wait_for_url(f"{live_ingest}/calls/task_000000000001?t=13.5#player")
    await page.wait_for_function("document.getElementById('player').currentTime > 13")
    position = await page.evaluate("document.getElementById('player').currentTime")
    assert position == pytest.approx(13.5, abs=0.1)


async def test_a_tracker_is_made_and_applied_through_the_forms(
    browser: Browser, live_ingest: str, call_with_audio: Any
) -> None:
    page = await log_in_as_admin(browser, live_ingest)
    await page.goto(f"{live_ingest}/settings/trackers")
    await page.get_by_role("link", name="Создать").click()
    await page.get_by_label("Название").fill("Возражение: дорого")
    await page.get_by_label("Кто говорит").select_option("client")
    await page.get_by_label("Фразы (по одной в строке)").fill("дорого\nслишком дорого")
    await page.get_by_role("button", name="Сохранить").click()
    await expect(page.get_by_role("status")).to_contain_text("Сохранено")
    await page.get_by_role("link", name="Возражение: дорого").click()
    await page.get_by_role("button", name="Применить").click()
    await expect(page.get_by_role("status")).to_contain_text("анализаторы сделают это в фоне")
    await expect(page.get_by_text("Звонков за период: 1")).to_be_visible()
    await screenshot(page, "tracker-applied")
    marked = await call_with_audio.calls.find_one({"_id": "task_000000000001"})
    assert marked["retag"] == [(await call_with_audio.trackers.find_one({}))["_id"]]
