"""`make bench-e2e`: the whole chain, CRM request to CRM webhook, with every service a process.

(1) One generated 1-minute stereo call on an idle system: seconds from its POST to its
    checklist webhook (target ≤ 15 s).
(2) 20 such calls posted at once: audio minutes processed per wall-clock minute, from the
    first POST to the last webhook (target ≥ 8).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
from aiohttp import web

from bench.analyze import RUSSIAN_VOICES, russian_conversation
from bench.ingest import AMQP_URL
from devtools.processes import free_port, start_secantus, stop
from devtools.samples import write_call
from devtools.system import SERVICES, System
from services.ingest.backoffice.samples import SAMPLE_TEMPLATE
from shared.amqp import Broker

API_KEY = "bench-api-key-0123456789abcdef"
PASSWORD = "bench-password"
CALL_S = 60.0
BATCH = 20


class Crm:
    """Serves the recording and counts checklist webhooks by call id."""

    def __init__(self, recording: Path) -> None:
        self.recording = recording
        self.arrived: dict[str, float] = {}
        self.event = asyncio.Event()

    async def file(self, _request: web.Request) -> web.StreamResponse:
        return web.FileResponse(self.recording)

    async def hook(self, request: web.Request) -> web.Response:
        payload = await request.json()
        self.arrived.setdefault(payload["call_id"], time.perf_counter())
        self.event.set()
        return web.Response(text="ok")


async def wait_webhooks(crm: Crm, call_ids: set[str], timeout_s: float = 600) -> float:
    deadline = time.perf_counter() + timeout_s
    while not call_ids <= set(crm.arrived):
        if time.perf_counter() > deadline:
            raise RuntimeError(f"webhooks missing for {call_ids - set(crm.arrived)}")
        crm.event.clear()
        try:
            await asyncio.wait_for(crm.event.wait(), timeout=1.0)
        except TimeoutError:
            continue
    return max(crm.arrived[call_id] for call_id in call_ids)


def start_system(
    mongo_url: str, work: Path, *, log_dir: Path | None = None, env: dict[str, str] | None = None
) -> tuple[System, str]:
    """The four services as processes on queues of their own (the prefix, returned), with
    the benchmarks' API key and admin password, no demo data, and `env` on top."""
    prefix = f"rop-bench-{uuid.uuid4().hex[:8]}"
    system = System(
        mongo_url=mongo_url,
        amqp_url=AMQP_URL,
        prefix=prefix,
        state_dir=str(work),
        extra_env={
            "ROP_API_KEY": API_KEY,
            "ROP_ADMIN_PASSWORD": PASSWORD,
            "ROP_SEED_SAMPLES": "false",
            **(env or {}),
        },
        log_dir=log_dir,
    )
    for name in SERVICES:
        system.start(name)
    return system, prefix


async def bind_sample_template(session: aiohttp.ClientSession, api: str, hooks_url: str) -> None:
    """As the admin: the sample script as a template, bound to the CRM's checklist webhook."""
    async with session.post(
        f"{api}/auth/login", json={"email": "admin@rop.local", "password": PASSWORD}
    ) as response:
        admin = {"Authorization": f"Bearer {(await response.json())['token']}"}
    template = SAMPLE_TEMPLATE.model_dump(mode="json")
    async with session.post(f"{api}/templates", headers=admin, json=template) as response:
        template_id = (await response.json())["id"]
    binding = {"template_id": template_id, "webhook": {"url": hooks_url}}
    async with session.post(f"{api}/bindings", headers=admin, json=binding) as response:
        assert response.status == 201, await response.text()


async def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="rop-bench-e2e-"))
    recording = work / "call.mp3"
    write_call(recording, russian_conversation(CALL_S, 1), duration_s=CALL_S, voices=RUSSIAN_VOICES)
    crm = Crm(recording)
    app = web.Application()
    app.router.add_get("/call.mp3", crm.file)
    app.router.add_post("/hooks/checklist", crm.hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    crm_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", crm_port).start()
    mongo_port = free_port()
    mongo = start_secantus(mongo_port, str(work / "db"))
    system, prefix = start_system(f"mongodb://127.0.0.1:{mongo_port}/bench_e2e", work)
    try:
        api = await system.api()
        async with aiohttp.ClientSession() as session:
            await bind_sample_template(session, api, f"http://127.0.0.1:{crm_port}/hooks/checklist")

            async def submit(call_id: str) -> None:
                async with session.post(
                    f"{api}/calls",
                    params={"apiKey": API_KEY},
                    json={
                        "call_id": call_id,
                        "duration": CALL_S,
                        "manager_id": "mgr",
                        "deal_id": "deal",
                        "audio_url": f"http://127.0.0.1:{crm_port}/call.mp3",
                    },
                ) as response:
                    assert response.status == 200, await response.text()

            started = time.perf_counter()
            await submit("single")
            single_s = await wait_webhooks(crm, {"single"}) - started

            batch = {f"batch_{i}" for i in range(BATCH)}
            started = time.perf_counter()
            await asyncio.gather(*(submit(call_id) for call_id in batch))
            batch_s = await wait_webhooks(crm, batch) - started
    finally:
        system.stop_all()
        stop(mongo)
        await runner.cleanup()
        await Broker(AMQP_URL, prefix=prefix).delete_topology()
    audio_minutes = BATCH * CALL_S / 60
    print(
        f"\n(1) one {CALL_S / 60:.0f}-minute call, POST to checklist webhook: {single_s:.1f} s "
        "(target ≤ 15 s)"
    )
    print(
        f"(2) {BATCH} calls at once: {batch_s:.1f} s for {audio_minutes:.0f} audio minutes = "
        f"{audio_minutes / (batch_s / 60):.1f} audio minutes per minute (target ≥ 8)"
    )


if __name__ == "__main__":
    asyncio.run(main())
