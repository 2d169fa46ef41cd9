"""`make bench-web`: the calls page with 1,000 calls in the database.

The gateway runs as its own process on one SecantusDB holding 1,000 analysed calls of
the last week. Prints the server time of the pages a head of sales opens (median and
p95 of sequential requests), the weight of the calls page (HTML, stylesheet, script),
and, when Chromium is installed, the browser's time to the load event.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import sys
import tempfile
import time

import aiohttp

from bench.ingest import AMQP_URL, wait_listening
from devtools.processes import free_port, spawn, start_secantus, stop
from devtools.samples import analysed_call
from shared.mongo import connect_mongo, database

EMAIL, PASSWORD = "bench@rop.local", "bench password 1"
PAGES = ("/calls", "/calls?sort=score_asc", "/dashboard", "/managers")


async def seed(mongo_url: str, count: int) -> None:
    client = connect_mongo(mongo_url)
    calls = [
        analysed_call(
            index,
            manager_id=f"mgr_{index % 12}",
            passed=index % 5,
            applicable=4,
            days_ago=(index % 168) / 24,
            talk_ratio=(index % 10) / 10,
        )
        for index in range(1, count + 1)
    ]
    await database(client).calls.insert_many(calls)
    await client.close()


async def log_in(session: aiohttp.ClientSession, base: str) -> None:
    """Through the login form, as a browser does (it carries a CSRF token)."""
    async with session.get(f"{base}/login") as response:
        token = re.search(r'name="csrf_token" value="([^"]+)"', await response.text())
    assert token is not None
    form = {"email": EMAIL, "password": PASSWORD, "csrf_token": token.group(1)}
    async with session.post(f"{base}/login", data=form, allow_redirects=False) as response:
        assert response.status == 303, response.status


async def server_times(base: str, rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {page: [] for page in PAGES}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        await log_in(session, base)
        for _ in range(rounds):
            for page in PAGES:
                started = time.perf_counter()
                async with session.get(f"{base}{page}", allow_redirects=False) as response:
                    await response.read()
                    assert response.status == 200, (page, response.status)
                times[page].append((time.perf_counter() - started) * 1000)
    return times


async def page_weight(base: str) -> dict[str, int]:
    """Bytes of the calls page and of every asset it loads (all from this server)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        await log_in(session, base)
        async with session.get(f"{base}/calls", allow_redirects=False) as response:
            html = await response.text()
        assert "Найдено звонков" in html, "not logged in"
        weights = {"html": len(html.encode())}
        for path in re.findall(r'(?:href|src)="(/static/[^"]+)"', html):
            async with session.get(f"{base}{path}") as asset:
                weights[path.split("?")[0].rsplit(".", 1)[-1]] = len(await asset.read())
    return weights


async def browser_load_ms(base: str, rounds: int) -> list[float] | None:
    """Navigation start to the load event of /calls in headless Chromium."""
    chromium = shutil.which("chromium")
    if chromium is None:
        return None
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = await browser.new_page()
        await page.goto(f"{base}/login")
        await page.fill("#email", EMAIL)
        await page.fill("#password", PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_url(f"{base}/calls")
        assert await page.locator("tbody tr").count() == 50
        loads = []
        for _ in range(rounds):
            await page.goto(f"{base}/calls", wait_until="load")
            timing = await page.evaluate(
                "() => { const t = performance.getEntriesByType('navigation')[0];"
                " return t.loadEventEnd - t.startTime; }"
            )
            loads.append(float(timing))
        await browser.close()
    return loads


def _p95(values: list[float]) -> float:
    return sorted(values)[max(0, round(len(values) * 0.95) - 1)]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    storage = tempfile.mkdtemp(prefix="rop-bench-web-")
    mongo_port, http_port = free_port(), free_port()
    mongo = start_secantus(mongo_port, storage)
    mongo_url = f"mongodb://127.0.0.1:{mongo_port}/bench_web"
    env = {
        **os.environ,
        "ROP_MONGO_URL": mongo_url,
        "ROP_AMQP_URL": AMQP_URL,
        "ROP_AMQP_PREFIX": f"rop-bench-web-{http_port}",
        "ROP_HTTP_PORT": str(http_port),
        "ROP_STATE_DIR": storage,
        "ROP_ADMIN_EMAIL": EMAIL,
        "ROP_ADMIN_PASSWORD": PASSWORD,
        "ROP_SEED_SAMPLES": "false",
        "ROP_LOG_LEVEL": "warning",
    }
    await seed(mongo_url, args.calls)
    gateway = spawn([sys.executable, "-m", "services.ingest"], env)
    base = f"http://127.0.0.1:{http_port}"
    try:
        wait_listening(http_port, gateway)
        times = await server_times(base, args.rounds)
        weights = await page_weight(base)
        loads = await browser_load_ms(base, 10)
    finally:
        stop(gateway)
        stop(mongo)
    print(f"\n{args.calls} calls in the database; {args.rounds} sequential requests per page")
    for page, values in times.items():
        print(
            f"  {page:24} median {statistics.median(values):6.1f} ms   p95 {_p95(values):6.1f} ms"
        )
    total = sum(weights.values())
    parts = ", ".join(f"{kind} {size / 1024:.1f} KiB" for kind, size in weights.items())
    print(f"calls page weight: {total / 1024:.1f} KiB ({parts}; nothing from other hosts)")
    if loads is None:
        print("browser load time: skipped (chromium is not installed)")
    else:
        print(f"browser load event of /calls: median {statistics.median(loads):.0f} ms")


if __name__ == "__main__":
    asyncio.run(main())
