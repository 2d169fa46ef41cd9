"""SIGTERM, as Kubernetes stops a pod, to each service in the middle of its work: it
exits within its pod's grace period, finishes or hands back what it holds, and nothing
is lost or done twice."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from pymongo import AsyncMongoClient

from devtools.processes import free_port, start_secantus
from devtools.processes import stop as stop_process
from devtools.system import System
from shared.settings import Settings
from tests.audio import GOOD_CALL, call
from tests.conftest import API_KEY
from tests.crm_client import a_call
from tests.e2e.test_faults import LONG_CALL, _system, serving
from tests.fakes import FakeCrm, reply
from tests.fileserver import FileServer
from tests.helpers import wait_for
from tests.system_client import call_statuses, scrape, submit_calls

pytestmark = pytest.mark.timeout(420)

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "k8s"


def grace_s(service: str) -> float:
    """The grace period of the service's pods: how long Kubernetes waits after SIGTERM."""
    for document in yaml.safe_load_all((DEPLOY / f"{service}.yaml").read_text()):
        if document and document["kind"] == "Deployment":
            return float(document["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])
    raise AssertionError(f"no Deployment in {service}.yaml")


async def stop(system: System, name: str) -> tuple[float, int]:
    """SIGTERM a service (`System.terminate`) without blocking this loop, where the fakes
    of the CRM answer; the seconds it took and its exit code."""
    service = name.split("-")[0]
    return await asyncio.to_thread(system.terminate, name, grace_s=grace_s(service))


async def analysis_of(settings: Settings, call_id: str) -> dict[str, Any]:
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo_url)
    try:
        task = await mongo.get_default_database().calls.find_one({"call_id": call_id})
    finally:
        await mongo.close()
    return dict((task or {}).get("analysis") or {})


async def test_a_stopped_analyzer_hands_its_job_to_another_at_once(
    settings: Settings, crm: tuple[FakeCrm, str], files: FileServer
) -> None:
    """Heartbeats every 30 s: the job would wait minutes for a silent worker to be
    declared gone; handed back, the other analyzer takes it within its 5 s poll."""
    fake, hooks = crm
    system = _system(
        settings,
        mongo_url=settings.mongo_url,
        amqp_url=settings.amqp_url,
        ROP_ANALYSIS_LEASE_S="300",
        ROP_ANALYSIS_HEARTBEAT_S="30",
    )
    async with serving(system, hooks) as (session, api):
        url = files.file("/long.mp3", call(LONG_CALL, duration_s=180))
        await submit_calls(session, api, url, ["long"], 180)

        async def running() -> dict[str, Any] | None:
            analysis = await analysis_of(settings, "long")
            return analysis if analysis.get("state") == "running" else None

        first = await wait_for(running, timeout_s=60, interval_s=0.1)
        system.start("analyzer", replica="analyzer-2")
        system.wait_listening("analyzer-2")

        took_s, code = await stop(system, "analyzer")
        assert code == 0

        async def taken_over() -> dict[str, Any] | None:
            analysis = await analysis_of(settings, "long")
            moved = analysis.get("worker") != first["worker"]
            return analysis if analysis.get("state") == "running" and moved else None

        await wait_for(taken_over, timeout_s=10, interval_s=0.1)

        async def done() -> bool:
            return (await call_statuses(session, api, ["long"]))["long"] == "done"

        await wait_for(done, timeout_s=120, interval_s=0.5)
    assert (await analysis_of(settings, "long"))["attempts"] == 1  # handing back is no attempt
    assert len(fake.at("/checklist")) == 1
    print(f"analyzer stopped in {took_s:.1f} s of its {grace_s('analyzer'):.0f} s grace")


async def test_a_stopped_notifier_finishes_the_deliveries_it_holds(
    settings: Settings, crm: tuple[FakeCrm, str], files: FileServer
) -> None:
    fake, hooks = crm
    fake.replies["/checklist"] = [reply(200, delay_s=3.0)]  # each delivery in flight 3 s
    system = _system(settings, mongo_url=settings.mongo_url, amqp_url=settings.amqp_url)
    names = [f"held_{i}" for i in range(3)]
    async with serving(system, hooks) as (session, api):
        url = files.file("/good.mp3", call(GOOD_CALL, duration_s=22))
        await submit_calls(session, api, url, names, 22)

        async def in_flight() -> bool:
            return len(fake.at("/checklist")) >= 1

        await wait_for(in_flight, timeout_s=120, interval_s=0.05)
        # In a thread: the fake CRM, in this loop, must answer meanwhile.
        took_s, code = await stop(system, "notifier")
        assert code == 0
        assert took_s >= 2.0  # it waited for the answer of the delivery it held
        system.start("notifier")

        async def done() -> bool:
            return set((await call_statuses(session, api, names)).values()) == {"done"}

        await wait_for(done, timeout_s=180, interval_s=0.5)
    ids = [request.headers["webhook-id"] for request in fake.at("/checklist")]
    assert sorted(set(ids)) == sorted(ids)  # none sent twice, the one in flight included
    assert len(ids) == len(names)


async def test_a_stopped_gateway_answers_the_requests_it_has_open(
    settings: Settings, tmp_path: Path
) -> None:
    """A request held up in the database when SIGTERM comes is still answered; new
    connections are refused meanwhile (the pod is leaving the Service)."""
    port = free_port()
    database = start_secantus(port, str(tmp_path / "db"))
    system = _system(
        settings, mongo_url=f"mongodb://127.0.0.1:{port}/rop_drain", amqp_url=settings.amqp_url
    )
    try:
        system.start("ingest")
        await asyncio.to_thread(system.wait_listening, "ingest")
        base = f"http://127.0.0.1:{system.http_port}"
        async with aiohttp.ClientSession() as session:
            os.kill(database.pid, signal.SIGSTOP)  # the next insert waits for it
            try:
                posting = asyncio.create_task(
                    session.post(f"{base}/api/v1/calls?apiKey={API_KEY}", json=a_call())
                )

                async def handling() -> bool:
                    samples = await scrape(system.http_port)
                    return samples.get(("rop_http_requests_in_progress",), 0) >= 2  # + scrape

                await wait_for(handling)
                stopping = asyncio.create_task(stop(system, "ingest"))

                async def refuses_new_connections() -> bool:
                    try:
                        async with aiohttp.ClientSession() as other:
                            await other.get(f"{base}/healthz")
                    except aiohttp.ClientConnectionError:
                        return True
                    return False

                await wait_for(refuses_new_connections)
                assert not stopping.done()  # it waits for the request it holds
            finally:
                os.kill(database.pid, signal.SIGCONT)
            response = await asyncio.wait_for(posting, timeout=10)
            assert response.status == 200
            assert (await response.json())["status"] == "success"
            _, code = await stopping
            assert code == 0
    finally:
        system.stop_all()
        stop_process(database)
