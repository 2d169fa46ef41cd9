"""Headless Chromium (Debian's package) driven by Playwright against the real gateway."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import Browser, Dialog, Page, async_playwright

from devtools.processes import free_port
from services.ingest.app import create_app
from shared.settings import Settings
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD

SCREENSHOTS = Path(__file__).resolve().parents[2] / ".artifacts" / "screenshots"


def chromium_path() -> str:
    """The system Chromium: Playwright never downloads a browser here."""
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    if os.environ.get("ROP_REQUIRE_ALL_TOOLS"):
        pytest.fail("chromium is not installed (apt-get install chromium)")
    pytest.skip("chromium is not installed")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium_path(), args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield launched
        await launched.close()


@pytest.fixture
async def live_ingest(settings: Settings) -> AsyncIterator[str]:
    """The gateway alone, listening on 127.0.0.1 (pages that need no pipeline)."""
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def log_in(browser: Browser, base: str, email: str, password: str) -> Page:
    """A fresh browser context logged in as this user, on the calls page."""
    context = await browser.new_context(locale="ru-RU", viewport={"width": 1360, "height": 900})
    page = await context.new_page()
    await page.goto(f"{base}/login")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Пароль").fill(password)
    await page.get_by_role("button", name="Войти").click()
    await page.wait_for_url(f"{base}/calls")
    return page


async def log_in_as_admin(browser: Browser, base: str) -> Page:
    return await log_in(browser, base, ADMIN_EMAIL, ADMIN_PASSWORD)


async def screenshot(page: Page, name: str) -> None:
    """Keep a picture of the page for people (ignored by git)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


async def status_of(page: Page, url: str) -> int:
    """Open a URL in the page and return the HTTP status of the document."""
    response = await page.goto(url)
    assert response is not None
    return response.status


@contextlib.asynccontextmanager
async def confirming(page: Page, *, accept: bool = True) -> AsyncIterator[list[str]]:
    """Answer the confirmation that what is done in the block asks for; what it said."""
    said: list[str] = []

    async def answer(dialog: Dialog) -> None:
        said.append(dialog.message)
        await (dialog.accept() if accept else dialog.dismiss())

    page.once("dialog", answer)
    yield said
