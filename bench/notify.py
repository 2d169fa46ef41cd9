"""`make bench-notify`: webhook deliveries per second, against the least a durable delivery needs.

1,000 analysed calls (one checklist each) wait as `CallAnalyzed` events; the notifier,
as its own process, delivers them to a local receiver (its own process). In the same
run a bare aiohttp loop at the same concurrency makes one database insert and one
signed POST per delivery. Both are timed from ready: the notifier from the moment it is
connected (its start, imports and indexes, is printed apart: a running notifier pays it
once). Prints both and the ratio (target ≥ 0.5); and where the difference comes from:
the CPU per delivery of the database, of the sending process and of the whole machine
(receiver and broker included), how many cores each path kept busy, and the most the
notifier's path could make with every core busy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from bench.ingest import AMQP_URL, wait_listening
from devtools.processes import free_port, port_open, spawn, start_secantus, stop
from shared.amqp import Broker
from shared.events import CallAnalyzed, Envelope, utcnow
from shared.mongo import connect_mongo, database, ensure_indexes
from shared.webhooks import new_webhook_secret, signed_headers

CONCURRENCY = 16


async def seed(db: object, count: int, receiver: str) -> list[Envelope]:
    secret = new_webhook_secret()
    await db.bindings.insert_one(  # type: ignore[attr-defined]
        {"_id": "bnd_bench", "webhook": {"url": receiver, "secret": secret}}
    )
    now = utcnow()
    envelopes, tasks = [], []
    for index in range(count):
        task_id = f"task_{index:012x}"
        meta = {"call_id": f"call_{index}", "deal_id": "deal", "manager_id": "mgr"}
        tasks.append(
            {
                "_id": task_id,
                **meta,
                "status": "delivering",
                "received_at": now,
                "updated_at": now,
                "timeline": [],
                "results": {
                    "checklists": [
                        {
                            "binding_id": "bnd_bench",
                            "template": {"id": "t", "name": "Скрипт"},
                            "score": {
                                "passed": 1,
                                "applicable": 1,
                                "percent": 100.0,
                                "text": "1/1",
                            },
                            "stages": [],
                        }
                    ],
                    "tables": [],
                    "metrics": {},
                },
            }
        )
        envelopes.append(
            Envelope.wrap(
                CallAnalyzed(**meta, duration_s=60, checklists=1, tables=0), task_id=task_id
            )
        )
    await db.calls.insert_many(tasks)  # type: ignore[attr-defined]
    return envelopes


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process, and the children it has waited for (the
    analyzer's ffmpeg), have used so far (Linux)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    own, children = int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])
    return (own + children) / os.sysconf("SC_CLK_TCK")


async def until(condition: Callable[[], Awaitable[bool]], interval_s: float) -> None:
    while True:
        if await condition():
            return
        await asyncio.sleep(interval_s)


async def received_count(session: aiohttp.ClientSession, receiver: str) -> int:
    """How many webhook-ids the receiver has had."""
    async with session.get(f"{receiver}/count") as response:
        return int(await response.json())


def machine_cpu_seconds() -> float:
    """CPU seconds the machine's cores have spent busy, every process's (Linux)."""
    with open("/proc/stat") as stat:
        user, nice, system, _idle, _iowait, irq, softirq = map(int, stat.readline().split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Usage:
    """What a path spent on its deliveries: seconds, and CPU seconds of the database,
    of the process that delivered, and of the whole machine (the receiver and broker
    included)."""

    seconds: float
    cpu_db: float
    cpu_sender: float
    cpu_machine: float


class Meter:
    """Measures from its creation to `stop`."""

    def __init__(self, db_pid: int, sender_pid: int) -> None:
        self._pids = (db_pid, sender_pid)
        self._start = self._read()

    def _read(self) -> tuple[float, float, float, float]:
        db, sender = (cpu_seconds(pid) for pid in self._pids)
        return time.perf_counter(), db, sender, machine_cpu_seconds()

    def stop(self) -> Usage:
        end = self._read()
        return Usage(*(after - before for after, before in zip(end, self._start, strict=True)))


async def through_notifier(
    mongo_url: str, count: int, receiver: str, mongo_pid: int
) -> tuple[Usage, float]:
    """What the notifier spent from the moment it was ready, as the bare loop is counted;
    and how long it took to start (imports, connections, indexes), which a running
    notifier pays once."""
    prefix = f"rop-bench-{uuid.uuid4().hex[:8]}"
    client = connect_mongo(mongo_url)
    db = database(client)
    await ensure_indexes(db)
    envelopes = await seed(db, count, receiver)
    broker = Broker(AMQP_URL, prefix=prefix)
    await broker.connect()
    for envelope in envelopes:  # queued before the notifier starts
        await broker.publish(envelope)
    health_port = free_port()
    env = {
        **os.environ,
        "ROP_MONGO_URL": mongo_url,
        "ROP_AMQP_URL": AMQP_URL,
        "ROP_AMQP_PREFIX": prefix,
        "ROP_FETCH_ALLOW_LOOPBACK": "true",
        "ROP_HEALTH_PORT": str(health_port),
        "ROP_LOG_LEVEL": "warning",
        "ROP_NOTIFIER_PREFETCH": str(CONCURRENCY * 2),
        "ROP_WEBHOOK_ENDPOINT_CONCURRENCY": str(CONCURRENCY),
    }
    async with aiohttp.ClientSession() as session:  # the bare loop's webhook-ids are there
        before = await received_count(session, receiver)
    spawned = time.perf_counter()
    notifier = spawn([sys.executable, "-m", "services.notifier"], env)
    try:
        # Its health port opens once it is connected, just before it consumes.
        async def ready() -> bool:
            return port_open("127.0.0.1", health_port)

        await until(ready, 0.01)
        start_s = time.perf_counter() - spawned
        meter = Meter(mongo_pid, notifier.pid)
        # Progress from the receiver, which costs the database nothing; then until every
        # delivery is recorded as succeeded (a few counts).
        async with aiohttp.ClientSession() as session:

            async def all_received() -> bool:
                return await received_count(session, receiver) >= before + count

            await until(all_received, 0.2)

        async def all_recorded() -> bool:
            return await db.deliveries.count_documents({"status": "succeeded"}) >= count

        await until(all_recorded, 0.05)
        return meter.stop(), start_s
    finally:
        stop(notifier)
        await broker.close()
        await Broker(AMQP_URL, prefix=prefix).delete_topology()
        await client.close()


async def bare_loop(mongo_url: str, count: int, receiver: str, mongo_pid: int) -> Usage:
    client = connect_mongo(mongo_url)
    collection = database(client).bare_deliveries
    secret = new_webhook_secret()
    work = iter(range(count))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as session:

        async def worker() -> None:
            for index in work:
                body = json.dumps({"type": "checklist.completed", "call_id": f"call_{index}"})
                webhook_id = f"msg_{index}"
                await collection.insert_one({"_id": webhook_id, "body": body, "status": "sent"})
                headers = signed_headers(secret, webhook_id=webhook_id, body=body, at=utcnow())
                async with session.post(receiver, data=body, headers=headers) as response:
                    await response.read()

        meter = Meter(mongo_pid, os.getpid())
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        usage = meter.stop()
    await client.close()
    return usage


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deliveries", type=int, default=1000)
    args = parser.parse_args()
    storage = tempfile.mkdtemp(prefix="rop-bench-notify-")
    mongo_port, receiver_port = free_port(), free_port()
    mongo = start_secantus(mongo_port, storage)
    receiver = spawn(
        [sys.executable, "-m", "bench.baselines", "receiver", "--port", str(receiver_port)],
        quiet=True,
    )
    url = f"http://127.0.0.1:{receiver_port}/hooks"
    try:
        wait_listening(receiver_port, receiver)
        bare = await bare_loop(
            f"mongodb://127.0.0.1:{mongo_port}/bench_bare", args.deliveries, url, mongo.pid
        )
        full, start_s = await through_notifier(
            f"mongodb://127.0.0.1:{mongo_port}/bench_notify", args.deliveries, url, mongo.pid
        )
    finally:
        stop(receiver)
        stop(mongo)
        shutil.rmtree(storage, ignore_errors=True)
    count, cores = args.deliveries, os.cpu_count() or 1
    rate_full, rate_bare = count / full.seconds, count / bare.seconds
    print(f"\n{count} deliveries at concurrency {CONCURRENCY}, on {cores} cores")
    print(f"notifier (queued events → stored, signed, delivered): {rate_full:8.0f} deliveries/s")
    print(f"bare loop (one insert + one signed POST each):        {rate_bare:8.0f} deliveries/s")
    print(f"ratio notifier/bare = {rate_full / rate_bare:.2f} (target ≥ 0.50)")
    print(f"(both timed from ready: the notifier's start, {start_s:.2f} s, is not counted)")
    print("CPU per delivery (ms)     database  sender  machine   cores busy")
    per = 1000 / count
    for name, usage in (("notifier", full), ("bare loop", bare)):
        print(
            f"  {name:<22}{usage.cpu_db * per:8.2f}{usage.cpu_sender * per:8.2f}"
            f"{usage.cpu_machine * per:9.2f}{usage.cpu_machine / usage.seconds:13.2f}"
        )
    print("(the notifier's database and machine figures include the benchmark's final counts)")
    # With every core busy the notifier's path could make no more than this.
    ceiling = cores / (full.cpu_machine / count)
    print(
        f"all {cores} cores busy, the notifier's path would make at most {ceiling:.0f}/s: "
        f"ratio ≤ {ceiling / rate_bare:.2f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
