"""`make bench-day`: a day of calls for a 100-manager team, compressed, through the whole system.

2,000 generated calls (`--calls`) of 1 to 10 minutes, 8 kHz stereo MP3, mostly silence (a
short exchange opens each, so ASR stays cheap), from 100 managers, are posted in a burst;
every service is its own process on this machine, on one embedded SecantusDB and the local
RabbitMQ. The run is made twice on a fresh database: with one analyzer process, then with
two, each analyzer running as many threads as it has cores to itself (`--threads`; in
`deploy/k8s/` a pod's requested cores set them). Each prints the time to drain the backlog
(first POST to last checklist webhook), calls per minute, POST to checklist webhook p50 /
p95, peak RSS and CPU seconds per process with the database's share, and whether every
call got exactly its one checklist webhook (by `webhook-id`: none lost, none duplicated).
Then the scaling from one analyzer to two, and what limits it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from bench.analyze import RUSSIAN_VOICES, russian_conversation
from bench.e2e import API_KEY, bind_sample_template, start_system
from bench.ingest import AMQP_URL
from bench.notify import cpu_seconds
from devtools.processes import free_port, start_secantus, stop
from devtools.samples import write_call
from shared.amqp import Broker
from shared.mongo import calls, connect_mongo, database

MANAGERS = 100
MINUTES = range(1, 11)  # one recording of each length, shared by the calls
TALK_S = 10.0  # the exchange that opens every call; the rest is silence
POSTING = 32  # POSTs in flight at once: the burst
STALL_S = 600.0  # no webhook for this long: the rest are lost


def record_all(directory: Path) -> dict[int, Path]:
    """The recordings, by length in minutes."""
    recordings = {}
    for minutes in MINUTES:
        path = directory / f"call-{minutes}m.mp3"
        write_call(
            path,
            russian_conversation(TALK_S, minutes),
            duration_s=minutes * 60.0,
            voices=RUSSIAN_VOICES,
            sample_rate_hz=8000,
            encoding="mp3-16k",
        )
        recordings[minutes] = path
    return recordings


@dataclass
class Crm:
    """Serves the recordings and keeps every checklist webhook: when, and its webhook-id."""

    recordings: dict[int, Path]
    hooks: dict[str, list[tuple[str, float]]] = field(default_factory=lambda: defaultdict(list))
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def file(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(self.recordings[int(request.match_info["minutes"])])

    async def hook(self, request: web.Request) -> web.Response:
        payload = await request.json()
        self.hooks[payload["call_id"]].append(
            (request.headers.get("webhook-id", ""), time.perf_counter())
        )
        self.arrived.set()
        return web.Response(text="ok")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/rec/{minutes}.mp3", self.file)
        app.router.add_post("/hooks/checklist", self.hook)
        return app

    async def wait_all(self, call_ids: set[str]) -> None:
        """Until every call has a webhook, or none came for STALL_S."""
        while not call_ids <= self.hooks.keys():
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), STALL_S)
            except TimeoutError:
                return


@dataclass
class Run:
    analyzers: int
    threads: int
    calls: int
    drain_s: float
    latencies_s: list[float]
    lost: int
    duplicated: int
    statuses: dict[str, int]
    peak_rss_mb: dict[str, float]
    cpu_s: dict[str, float]
    audio_min: float

    def report(self) -> None:
        latencies = sorted(self.latencies_s)
        p95 = latencies[int(0.95 * (len(latencies) - 1))] if latencies else float("nan")
        p50 = statistics.median(latencies) if latencies else float("nan")
        minutes = self.drain_s / 60
        print(
            f"\n{self.analyzers} analyzer(s) of {self.threads} thread(s): {self.calls} calls, "
            f"{self.audio_min:.0f} audio min"
        )
        print(
            f"  drained in {self.drain_s:.0f} s: {self.calls / minutes:.1f} calls/min, "
            f"{self.audio_min / minutes:.0f} audio min/min"
        )
        print(f"  POST → checklist webhook: p50 {p50:.0f} s, p95 {p95:.0f} s")
        print(f"  tasks by status: {dict(sorted(self.statuses.items()))}")
        print(
            f"  lost (no webhook): {self.lost}; duplicated (more than one webhook, by "
            f"webhook-id): {self.duplicated}"
        )
        total = sum(self.cpu_s.values())
        for name, cpu_s in self.cpu_s.items():
            print(
                f"  {name:12s} peak RSS {self.peak_rss_mb[name]:6.0f} MB, CPU {cpu_s:6.0f} s "
                f"= {cpu_s / self.drain_s:.2f} cores, {100 * cpu_s / total:4.1f} % of all"
            )
        print(f"  all processes: {total / self.drain_s:.2f} of {os.cpu_count()} cores")


def peak_rss_mb(pid: int) -> float:
    """The most resident memory a process has had (Linux VmHWM)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def day(analyzers: int, threads: int, calls: int, crm: Crm, crm_url: str, work: Path) -> Run:
    crm.hooks.clear()
    mongo_port = free_port()
    mongo = start_secantus(mongo_port, str(work / f"db-{analyzers}"))
    mongo_url = f"mongodb://127.0.0.1:{mongo_port}/bench_day"
    # CTranslate2 and OpenBLAS read it (otherwise 4 threads, or one a core, each).
    threading = {"OMP_NUM_THREADS": str(threads)}
    system, prefix = start_system(mongo_url, work, log_dir=work, env=threading)
    for number in range(2, analyzers + 1):
        system.start("analyzer", replica=f"analyzer-{number}")
    minutes = {f"call_{index:05d}": MINUTES[index * 7 % len(MINUTES)] for index in range(calls)}
    posted: dict[str, float] = {}
    try:
        api = await system.api()
        async with aiohttp.ClientSession() as session:
            await bind_sample_template(session, api, f"{crm_url}/hooks/checklist")
            slots = asyncio.Semaphore(POSTING)

            async def post(index: int, call_id: str) -> None:
                body = {
                    "call_id": call_id,
                    "duration": minutes[call_id] * 60,
                    "manager_id": f"mgr_{index % MANAGERS:03d}",
                    "deal_id": f"deal_{index}",
                    "audio_url": f"{crm_url}/rec/{minutes[call_id]}.mp3",
                }
                async with slots:
                    posted[call_id] = time.perf_counter()
                    async with session.post(
                        f"{api}/calls", params={"apiKey": API_KEY}, json=body
                    ) as response:
                        assert response.status == 200, await response.text()

            started = time.perf_counter()
            await asyncio.gather(*(post(i, call_id) for i, call_id in enumerate(minutes)))
            await crm.wait_all(set(minutes))
            last = max((at for hooks in crm.hooks.values() for _, at in hooks), default=started)
            drain_s = last - started
            await asyncio.sleep(5)  # anything sent twice would come now
            statuses = await task_statuses(mongo_url)
        processes = {key: process.pid for key, process in system.processes.items()}
        processes["database"] = mongo.pid
        rss = {name: peak_rss_mb(pid) for name, pid in processes.items()}
        cpu = {name: cpu_seconds(pid) for name, pid in processes.items()}
    finally:
        system.stop_all()
        stop(mongo)
        await Broker(AMQP_URL, prefix=prefix).delete_topology()
    lost = sum(1 for call_id in minutes if call_id not in crm.hooks)
    duplicated = sum(1 for hooks in crm.hooks.values() if len(hooks) > 1)
    latencies = [crm.hooks[c][0][1] - posted[c] for c in minutes if c in crm.hooks]
    return Run(
        analyzers,
        threads,
        calls,
        drain_s,
        latencies,
        lost,
        duplicated,
        statuses,
        rss,
        cpu,
        float(sum(minutes.values())),
    )


async def task_statuses(mongo_url: str) -> dict[str, int]:
    client = connect_mongo(mongo_url)
    try:
        found = await calls(database(client)).aggregate(
            [{"$group": {"_id": "$status", "n": {"$sum": 1}}}]
        )
        return {group["_id"]: group["n"] async for group in found}
    finally:
        await client.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--analyzers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--threads", type=int, help="threads of each analyzer (default: the cores it has alone)"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rop-bench-day-"))
    crm = Crm(record_all(work))
    runner = web.AppRunner(crm.app(), access_log=None)
    await runner.setup()
    crm_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", crm_port).start()
    runs = []
    try:
        crm_url = f"http://127.0.0.1:{crm_port}"
        for analyzers in args.analyzers:
            threads = args.threads or max(1, (os.cpu_count() or 1) // analyzers)
            run = await day(analyzers, threads, args.calls, crm, crm_url, work)
            run.report()
            runs.append(run)
    finally:
        await runner.cleanup()
    if len(runs) > 1:
        one, more = runs[0], runs[-1]
        print(
            f"\nscaling {one.analyzers} → {more.analyzers} analyzers: drain "
            f"{one.drain_s / more.drain_s:.2f}× faster"
        )
        analyzer_cpu = sum(s for name, s in more.cpu_s.items() if name.startswith("analyzer"))
        print(
            f"  with {more.analyzers}: analyzers {analyzer_cpu / more.drain_s:.2f} cores, all "
            f"processes {sum(more.cpu_s.values()) / more.drain_s:.2f} of {os.cpu_count()} cores"
        )


if __name__ == "__main__":
    asyncio.run(main())
