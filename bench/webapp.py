"""`make bench-web`: the back office as the calls grow.

For each size (1,000, 10,000 and 50,000 calls by default; two fifths of them in the
default week, 20,000 of 50,000, the rest in the two months before: every size has the
same shape, so a page shows as many weeks at each), the gateway runs as its own process
on a fresh SecantusDB and answers the pages a head of sales opens, one request at a
time: the calls list, sorted by score, a deep page (100, or the last there is), the
dashboard, the managers' rating, the trust page and the disputes queue (with 1,000 people's
reviews and 300 disputes at every size; median and p95 of the server time), and the Excel
export of the week (time, and how far the gateway's memory rose above what it held
before). Then the growth of each page's cost from the smallest size to the largest, the
weight of the calls page and, when Chromium is installed, the browser's time to the load
event of /calls at the largest size.

The calls are stored as the analyzer leaves them: the call, and its transcript with word
times apart (`call_details`, about 6 KiB each).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from bench.ingest import AMQP_URL, wait_listening
from devtools.processes import free_port, spawn, start_secantus, stop
from devtools.samples import analysed_call, sample_details
from services.ingest.backoffice.filters import Position
from shared.mongo import connect_mongo, database

EMAIL, PASSWORD = "bench@rop.local", "bench password 1"
PER_PAGE = 50
DEEP_PAGE = 100
MANAGERS = 100
FIRST_START_TIMEOUT_S = 300.0
REVIEWS, DISPUTES = 1000, 300  # people's verdicts and disputes, at every size
TARGET_MEDIAN_MS, TARGET_P95_MS, TARGET_GROWTH = 300, 500, 1.5
WORDS = ["добрый", "день", "меня", "зовут", "анна", "компания", "ромашка", "удобно", "говорить"]


def _transcript() -> list[dict[str, Any]]:
    """Thirty lines of eight words each, with word times (what the analyzer stores)."""
    lines = []
    for line in range(30):
        start = line * 6.0
        texts = [WORDS[(line + n) % len(WORDS)] for n in range(8)]
        lines.append(
            {
                "speaker": "manager" if line % 2 == 0 else "client",
                "start_s": start,
                "end_s": start + 5.0,
                "text": " ".join(texts),
                "words": [
                    [text, start + n * 0.6, start + n * 0.6 + 0.5] for n, text in enumerate(texts)
                ],
            }
        )
    return lines


def _in_week(total: int) -> int:
    return total * 2 // 5


def _call(index: int, total: int) -> dict[str, Any]:
    in_week = _in_week(total)
    days_ago = (
        7 * (index / in_week) if index < in_week else 7 + 60 * (index - in_week) / (total - in_week)
    )
    call = analysed_call(
        index + 1,
        manager_id=f"mgr_{index % MANAGERS}",
        passed=index % 5,
        applicable=4,
        days_ago=days_ago,
        talk_ratio=(index % 10) / 10,
    )
    return call


def _review(index: int, call: dict[str, Any]) -> dict[str, Any]:
    """A person's verdict on a stage of a call, as the trust page counts it."""
    stage = call["results"]["checklists"][0]["stages"][index % 4]
    machine = "passed" if stage["passed"] else "failed"
    return {
        "_id": f"rev_{index:06d}",
        "kind": "blind" if index % 3 else "correction",
        "current": True,
        "task_id": call["_id"],
        "call_id": call["call_id"],
        "manager_id": call["manager_id"],
        "binding_id": "bnd_1",
        "template": {"id": "tpl_1", "name": "Первичный звонок", "version": 1 + index % 2},
        "stage": stage["name"],
        "method": "phrases",
        "machine": machine,
        "human": machine if index % 5 else ("failed" if machine == "passed" else "passed"),
        "by": {"id": "usr_lead", "email": "lead@rop.local", "name": "Руководитель"},
        "at": call["received_at"],
    }


def _dispute(index: int, call: dict[str, Any]) -> dict[str, Any]:
    """A manager's dispute of a stage; one in three still open."""
    status = ("open", "accepted", "rejected")[index % 3]
    at = call["received_at"]
    dispute = {
        "_id": f"dsp_{int(at.timestamp() * 1000):012x}{index:08x}",
        "task_id": call["_id"],
        "call_id": call["call_id"],
        "manager_id": call["manager_id"],
        "manager_name": call["manager_name"],
        "binding_id": "bnd_1",
        "template": {"id": "tpl_1", "name": "Первичный звонок", "version": 1},
        "stage": "Этап 2",
        "disputed_verdict": "failed",
        "comment": "Этап выполнен: клиент согласился на встречу",
        "by": {"id": "usr_mgr", "email": "mgr@rop.local", "name": "Менеджер"},
        "at": at,
        "status": status,
    }
    if status == "open":
        dispute["open_key"] = f"{call['_id']}/bnd_1/Этап 2"
    else:
        dispute |= {"answer": "Проверено", "answered_by": dispute["by"], "answered_at": at}
    return dispute


async def seed(mongo_url: str, total: int) -> list[Position]:
    """Store the calls with their details, as the analyzer leaves them, and REVIEWS
    people's verdicts on them (DISPUTES of them disputes) among the calls of the week;
    the position of each call of the last six days (inside the default week in any zone)."""
    client = connect_mongo(mongo_url)
    db = database(client)
    step = max(1, _in_week(total) // REVIEWS)
    week = [_call(index, total) for index in range(0, _in_week(total), step)]
    await db.reviews.insert_many([_review(n, week[n % len(week)]) for n in range(REVIEWS)])
    await db.disputes.insert_many([_dispute(n, week[n % len(week)]) for n in range(DISPUTES)])
    since = datetime.now(UTC) - timedelta(days=6)
    recent = []
    for start in range(0, total, 2000):
        batch = [_call(index, total) for index in range(start, min(total, start + 2000))]
        for call in batch:  # as stored: milliseconds
            at = call["received_at"]
            call["received_at"] = at.replace(microsecond=at.microsecond // 1000 * 1000)
        await db.calls.insert_many(batch)
        await db.call_details.insert_many(
            [sample_details(call, transcript=_transcript()) for call in batch]
        )
        recent += [Position.of(call) for call in batch if call["received_at"] >= since]
    await client.close()
    return recent


def deep_page(recent: list[Position]) -> tuple[int, str]:
    """The page DEEP_PAGE of the newest-first list (or the last one) and its `after`,
    where following `next` from the first page gets to."""
    rows = sorted(recent, key=lambda row: (row.received_at, row.task_id), reverse=True)
    page = min(DEEP_PAGE, len(rows) // PER_PAGE)
    return page, rows[(page - 1) * PER_PAGE - 1].encode()


async def log_in(session: aiohttp.ClientSession, base: str) -> None:
    """Through the login form, as a browser does (it carries a CSRF token)."""
    async with session.get(f"{base}/login") as response:
        token = re.search(r'name="csrf_token" value="([^"]+)"', await response.text())
    assert token is not None
    form = {"email": EMAIL, "password": PASSWORD, "csrf_token": token.group(1)}
    async with session.post(f"{base}/login", data=form, allow_redirects=False) as response:
        assert response.status == 303, response.status


def _rss_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)


def _reset_peak(pid: int) -> None:
    """Make the process's peak RSS its current RSS (Linux: writing 5 to clear_refs)."""
    with open(f"/proc/{pid}/clear_refs", "w") as refs:
        refs.write("5")


async def server_times(base: str, pages: dict[str, str], rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in pages}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        await log_in(session, base)
        for _ in range(rounds):
            for name, path in pages.items():
                started = time.perf_counter()
                async with session.get(f"{base}{path}", allow_redirects=False) as response:
                    await response.read()
                    assert response.status == 200, (path, response.status)
                times[name].append((time.perf_counter() - started) * 1000)
    return times


async def export(base: str, pid: int) -> tuple[float, int, int]:
    """Seconds to download the week's Excel file, its bytes, and KiB the gateway's memory
    rose above what it held before."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        await log_in(session, base)
        before = _rss_kib(pid, "VmRSS")
        _reset_peak(pid)
        started = time.perf_counter()
        async with session.get(f"{base}/calls/export.xlsx") as response:
            body = await response.read()
            assert response.status == 200, response.status
        seconds = time.perf_counter() - started
        return seconds, len(body), _rss_kib(pid, "VmHWM") - before


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
        assert await page.locator("tbody tr").count() == PER_PAGE
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


@dataclass
class Gateway:
    """A gateway process on a fresh SecantusDB: `seed` the database, then `start` it."""

    mongo_url: str
    env: dict[str, str]
    http_port: int
    process: subprocess.Popen[bytes] | None = None
    first_start_s: float = 0.0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> int:
        """Start the gateway and wait until it listens (a first start on a filled database
        builds its indexes and rollups first); its pid."""
        self.process = spawn([sys.executable, "-m", "services.ingest"], self.env)
        started = time.perf_counter()
        wait_listening(self.http_port, self.process, timeout_s=FIRST_START_TIMEOUT_S)
        self.first_start_s = time.perf_counter() - started
        return self.process.pid


@contextlib.asynccontextmanager
async def fresh_gateway() -> AsyncIterator[Gateway]:
    """A fresh SecantusDB and a gateway for it, both gone on exit."""
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
    gateway = Gateway(mongo_url, env, http_port)
    try:
        yield gateway
    finally:
        if gateway.process is not None:
            stop(gateway.process)
        stop(mongo)
        shutil.rmtree(storage, ignore_errors=True)


async def measure(total: int, rounds: int, *, last: bool) -> dict[str, Any]:
    """One size: a fresh database and gateway."""
    async with fresh_gateway() as gateway:
        started = time.perf_counter()
        recent = await seed(gateway.mongo_url, total)
        seeded_s = time.perf_counter() - started
        number, after = deep_page(recent)
        pid = gateway.start()
        pages = {
            "/calls": "/calls",
            "/calls?sort=score_asc": "/calls?sort=score_asc",
            "/calls page N": f"/calls?after={after}",
            "/dashboard": "/dashboard",
            "/managers": "/managers",
            "/trust": "/trust",
            "/disputes": "/disputes",
        }
        result: dict[str, Any] = {
            "times": await server_times(gateway.base, pages, rounds),
            "deep_page": number,
            "export": await export(gateway.base, pid),
            "seeded_s": seeded_s,
            "first_start_s": gateway.first_start_s,
        }
        if last:
            result["weights"] = await page_weight(gateway.base)
            result["loads"] = await browser_load_ms(gateway.base, 10)
        return result


def report(sizes: list[int], results: dict[int, dict[str, Any]], rounds: int) -> None:
    print(f"\nserver time of each page, {rounds} sequential requests: median / p95 ms")
    names = list(results[sizes[0]]["times"])
    header = "".join(f"{size:>18,}" for size in sizes)
    print(f"  {'calls in the database':24}{header}   growth")
    for name in names:
        cells = ""
        for size in sizes:
            values = results[size]["times"][name]
            cells += f"{statistics.median(values):9.0f} /{_p95(values):6.0f}"
        first = statistics.median(results[sizes[0]]["times"][name])
        growth = statistics.median(results[sizes[-1]]["times"][name]) / first
        print(f"  {name:24}{cells}   {growth:5.2f}×")
    deep = ", ".join(f"{size:,}: {results[size]['deep_page']}" for size in sizes)
    print(f"  (page N is the page {DEEP_PAGE} or the last there is: {deep})")
    print("Excel export of the week: seconds, rows' file size, gateway memory above before")
    for size in sizes:
        seconds, size_bytes, rise_kib = results[size]["export"]
        rows = _in_week(size)
        print(
            f"  {size:>7,} calls ({rows:,} in the week): {seconds:6.2f} s, "
            f"{size_bytes / 1024:7.0f} KiB, +{rise_kib / 1024:5.1f} MiB"
        )
    largest = results[sizes[-1]]
    worst = max(statistics.median(values) for values in largest["times"].values())
    worst_p95 = max(_p95(values) for values in largest["times"].values())
    growth = max(
        statistics.median(largest["times"][name])
        / statistics.median(results[sizes[0]]["times"][name])
        for name in names
    )
    print(
        f"at {sizes[-1]:,} calls: slowest median {worst:.0f} ms (target ≤ {TARGET_MEDIAN_MS}), "
        f"slowest p95 {worst_p95:.0f} ms (target ≤ {TARGET_P95_MS}), "
        f"largest growth {growth:.2f}× (target ≤ {TARGET_GROWTH})"
    )
    weights = largest["weights"]
    parts = ", ".join(f"{kind} {size / 1024:.1f} KiB" for kind, size in weights.items())
    print(
        f"calls page weight: {sum(weights.values()) / 1024:.1f} KiB ({parts}; nothing from "
        "other hosts)"
    )
    if largest["loads"] is None:
        print("browser load time: skipped (chromium is not installed)")
    else:
        print(f"browser load event of /calls: median {statistics.median(largest['loads']):.0f} ms")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 50_000])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    results = {}
    for size in args.sizes:
        results[size] = await measure(size, args.rounds, last=size == args.sizes[-1])
        print(
            f"{size:,} calls measured (seeded in {results[size]['seeded_s']:.0f} s, the "
            f"gateway's first start on them {results[size]['first_start_s']:.0f} s)",
            flush=True,
        )
    report(args.sizes, results, args.rounds)


if __name__ == "__main__":
    asyncio.run(main())
