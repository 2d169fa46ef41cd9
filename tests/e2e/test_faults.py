"""What production throws at the system, with every service as its own process: broker
connections dropped mid-batch, the database killed and restarted, a worker killed.

Each service must ride through it: its process stays alive, and every accepted call
still reaches `done` with its webhook, once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from pymongo import AsyncMongoClient

from devtools.processes import free_port, start_secantus, stop
from devtools.system import SERVICES, System
from shared.settings import Settings
from tests.audio import GOOD_CALL, call
from tests.conftest import API_KEY, SERVICE_ENV
from tests.fakes import FakeCrm
from tests.fileserver import FileServer
from tests.helpers import TcpProxy, wait_for
from tests.system_client import bind_script, call_statuses, post, submit_calls, webhooks_once

pytestmark = pytest.mark.timeout(420)

# Eight times the good call (180 s): long enough to be caught in the middle of its analysis.
LONG_CALL = [
    (side, start_s + 22.0 * k, text) for k in range(8) for side, start_s, text in GOOD_CALL
]


def _system(
    settings: Settings, *, mongo_url: str, amqp_url: str, log_dir: Path | None = None, **env: str
) -> System:
    return System(
        mongo_url=mongo_url,
        amqp_url=amqp_url,
        prefix=settings.amqp_prefix,
        state_dir=str(settings.state_dir),
        extra_env={**SERVICE_ENV, **env},
        log_dir=log_dir,
    )


@contextlib.asynccontextmanager
async def serving(system: System, hooks: str) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    """The four services started and healthy, the test script bound to the fake CRM: a
    client session and the API's base URL."""
    for name in SERVICES:
        system.start(name)
    try:
        api = await system.api()
        async with aiohttp.ClientSession() as session:
            await bind_script(session, api, f"{hooks}/checklist")
            yield session, api
    finally:
        system.stop_all()


@pytest.fixture
async def broker_proxy() -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy("127.0.0.1", 5672, free_port())
    await proxy.start()
    yield proxy
    await proxy.cut()


def _alive(system: System) -> dict[str, int | None]:
    return {name: process.poll() for name, process in system.processes.items()}


async def _all_done(
    session: aiohttp.ClientSession, api: str, names: list[str], system: System, timeout_s: float
) -> None:
    """Until every call is `done`; a service that exits, or the deadline, fails the test
    with what each call's status was."""
    statuses: dict[str, str] = {}

    async def done() -> bool:
        nonlocal statuses
        assert all(code is None for code in _alive(system).values()), _alive(system)
        statuses = await call_statuses(session, api, names)
        return set(statuses.values()) == {"done"}

    try:
        await wait_for(done, timeout_s=timeout_s, interval_s=0.5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; statuses: {statuses}") from None


async def test_broker_connections_dropped_every_2_s_during_a_batch(
    settings: Settings,
    broker_proxy: TcpProxy,
    crm: tuple[FakeCrm, str],
    files: FileServer,
) -> None:
    fake, hooks = crm
    amqp_url = f"amqp://guest:guest@127.0.0.1:{broker_proxy.port}/?reconnect_interval=0.5"
    system = _system(settings, mongo_url=settings.mongo_url, amqp_url=amqp_url)
    names = [f"drop_{i}" for i in range(12)]
    drops = 0
    async with serving(system, hooks) as (session, api):
        url = files.file("/good.mp3", call(GOOD_CALL, duration_s=22))

        async def dropping() -> None:
            nonlocal drops
            while True:
                await asyncio.sleep(2)
                drops += broker_proxy.drop() > 0

        dropper = asyncio.create_task(dropping())
        try:
            await submit_calls(session, api, url, names, 22)

            await _all_done(session, api, names, system, 300)
        finally:
            dropper.cancel()
        assert all(code is None for code in _alive(system).values()), _alive(system)
    assert drops >= 5
    print(f"broker drops: {drops} survived; {webhooks_once(fake, names)}")


async def test_the_database_killed_and_restarted_mid_batch(
    settings: Settings, tmp_path: Path, crm: tuple[FakeCrm, str], files: FileServer
) -> None:
    fake, hooks = crm
    port, storage = free_port(), str(tmp_path / "db")
    database = start_secantus(port, storage)
    mongo_url = f"mongodb://127.0.0.1:{port}/rop_faults"
    system = _system(settings, mongo_url=mongo_url, amqp_url=settings.amqp_url)
    names = [f"outage_{i}" for i in range(8)]
    try:
        async with serving(system, hooks) as (session, api):
            url = files.file("/good.mp3", call(GOOD_CALL, duration_s=22))
            await submit_calls(session, api, url, names, 22)

            async def some_analysed() -> bool:
                return len(fake.at("/checklist")) >= 1

            await wait_for(some_analysed, timeout_s=120)
            # Stopped, not killed: what SecantusDB has not flushed a SIGKILL loses, and
            # its durability is not what this tests.
            stop(database)

            async def refused() -> bool:
                status, _ = await post(
                    session,
                    f"{api}/calls",
                    params={"apiKey": API_KEY},
                    json={
                        "call_id": "late",
                        "audio_url": url,
                        "duration": 22,
                        "manager_id": "mgr_001",
                        "deal_id": "deal_1",
                    },
                )
                return status == 503

            await wait_for(refused, timeout_s=30, interval_s=0.5)
            database = start_secantus(port, storage)

            await _all_done(session, api, names, system, 240)
            assert all(code is None for code in _alive(system).values()), _alive(system)
    finally:
        stop(database)
    print(f"database outage: {webhooks_once(fake, names)}")


async def test_every_service_waits_for_a_database_that_starts_late(
    settings: Settings, tmp_path: Path, crm: tuple[FakeCrm, str], files: FileServer
) -> None:
    """What a cluster's first start does: the services come up before MongoDB."""
    fake, hooks = crm
    port = free_port()
    system = _system(
        settings,
        mongo_url=f"mongodb://127.0.0.1:{port}/rop_late",
        amqp_url=settings.amqp_url,
        log_dir=tmp_path,
    )
    for name in SERVICES:
        system.start(name)
    database = None
    try:
        logs = [log for name in SERVICES if (log := system.log_of(name))]

        async def all_waiting() -> bool:
            assert all(code is None for code in _alive(system).values()), _alive(system)
            return all(log.exists() and "database_unavailable" in log.read_text() for log in logs)

        await wait_for(all_waiting, timeout_s=60, interval_s=0.5)
        database = start_secantus(port, str(tmp_path / "db"))
        api = await system.api()
        async with aiohttp.ClientSession() as session:
            await bind_script(session, api, f"{hooks}/checklist")
            url = files.file("/good.mp3", call(GOOD_CALL, duration_s=22))
            await submit_calls(session, api, url, ["late"], 22)
            await _all_done(session, api, ["late"], system, 120)
    finally:
        system.stop_all()
        if database is not None:
            stop(database)
    webhooks_once(fake, ["late"])


async def test_a_fresh_analyzer_takes_over_a_dead_workers_job_at_once(
    settings: Settings, crm: tuple[FakeCrm, str], files: FileServer
) -> None:
    """The lease is 5 minutes; the job must not wait for it."""
    fake, hooks = crm
    system = _system(
        settings,
        mongo_url=settings.mongo_url,
        amqp_url=settings.amqp_url,
        ROP_ANALYSIS_LEASE_S="300",
        ROP_ANALYSIS_HEARTBEAT_S="1",
    )
    async with serving(system, hooks) as (session, api):
        url = files.file("/long.mp3", call(LONG_CALL, duration_s=180))
        await submit_calls(session, api, url, ["long"], 180)
        mongo = AsyncMongoClient(settings.mongo_url)
        try:
            tasks = mongo.get_default_database().calls

            async def running_job() -> bool:
                task = await tasks.find_one({"call_id": "long"})
                return task is not None and task.get("analysis", {}).get("state") == "running"

            await wait_for(running_job, timeout_s=60, interval_s=0.1)
        finally:
            await mongo.close()
        system.kill("analyzer")
        system.start("analyzer")

        async def done() -> bool:
            return (await call_statuses(session, api, ["long"]))["long"] == "done"

        await wait_for(done, timeout_s=90, interval_s=0.5)
    assert len(fake.at("/checklist")) == 1
