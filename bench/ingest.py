"""`make bench-ingest`: POST /api/v1/calls at 50 concurrent clients, against two baselines.

Each server runs as its own process against one SecantusDB; the load comes from
this process. Prints calls/s and p50/p99 latency of each, and the ratios
ingest/(b) (target ≥ 0.7) and ingest/(a).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from devtools.processes import free_port, port_open, spawn, start_secantus, stop
from devtools.samples import sample_call
from shared.amqp import Broker
from shared.mongo import connect_mongo, database, ensure_indexes

API_KEY = "bench-api-key-0123456789abcdef"
AMQP_URL = os.environ.get("ROP_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
READY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Result:
    name: str
    calls_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


async def load(url: str, *, requests: int, concurrency: int) -> tuple[float, list[float], int]:
    """Send `requests` POSTs from `concurrency` workers; return elapsed s, latencies, errors."""
    latencies: list[float] = []
    errors = 0
    remaining = iter(range(requests))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal errors
            for _ in remaining:
                started = time.perf_counter()
                async with session.post(url, json=sample_call()) as response:
                    await response.read()
                    if response.status != 200:
                        errors += 1
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, latencies, errors


def wait_listening(
    port: int, process: subprocess.Popen[bytes], *, timeout_s: float = READY_TIMEOUT_S
) -> None:
    deadline = time.monotonic() + timeout_s
    while not port_open("127.0.0.1", port):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"server on port {port} did not start")
        time.sleep(0.05)


async def measure(
    name: str, start: Callable[[int], subprocess.Popen[bytes]], args: argparse.Namespace
) -> Result:
    port = free_port()
    process = start(port)
    try:
        wait_listening(port, process)
        url = f"http://127.0.0.1:{port}/api/v1/calls?apiKey={API_KEY}"
        await load(url, requests=args.warmup, concurrency=args.concurrency)
        elapsed, latencies, errors = await load(
            url, requests=args.requests, concurrency=args.concurrency
        )
    finally:
        stop(process)
    quantiles = statistics.quantiles(latencies, n=100)
    return Result(
        name=name,
        calls_per_s=len(latencies) / elapsed,
        p50_ms=quantiles[49] * 1000,
        p99_ms=quantiles[98] * 1000,
        errors=errors,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()

    storage = tempfile.mkdtemp(prefix="rop-bench-")
    mongo_port = free_port()
    mongo = start_secantus(mongo_port, storage)
    mongo_base = f"mongodb://127.0.0.1:{mongo_port}"
    prefix = f"rop-bench-{uuid.uuid4().hex[:8]}"

    def ingest(port: int) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "ROP_MONGO_URL": f"{mongo_base}/bench_ingest",
            "ROP_AMQP_URL": AMQP_URL,
            "ROP_AMQP_PREFIX": prefix,
            "ROP_API_KEY": API_KEY,
            "ROP_ADMIN_PASSWORD": "bench-password",
            "ROP_STATE_DIR": storage,
            "ROP_HTTP_PORT": str(port),
        }
        return spawn([sys.executable, "-m", "services.ingest"], env, quiet=True)

    def baseline(kind: str, db: str = "") -> Callable[[int], subprocess.Popen[bytes]]:
        def start(port: int) -> subprocess.Popen[bytes]:
            command = [sys.executable, "-m", "bench.baselines", kind, "--port", str(port)]
            return spawn([*command, "--mongo-url", f"{mongo_base}/{db}"], quiet=True)

        return start

    client = connect_mongo(f"{mongo_base}/bench_insert")
    await ensure_indexes(database(client))  # the baseline insert pays for the same indexes
    await client.close()
    try:
        bare = await measure("(a) bare aiohttp handler", baseline("bare"), args)
        insert = await measure(
            "(b) bare handler + insert_one", baseline("insert", "bench_insert"), args
        )
        full = await measure("ingest POST /api/v1/calls", ingest, args)
    finally:
        stop(mongo)
        await Broker(AMQP_URL, prefix=prefix).delete_topology()

    print(f"\n{args.requests} requests at {args.concurrency} concurrent clients each\n")
    print(f"{'server':34} {'calls/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for result in (bare, insert, full):
        print(
            f"{result.name:34} {result.calls_per_s:9.0f} {result.p50_ms:8.1f} "
            f"{result.p99_ms:8.1f} {result.errors:7d}"
        )
    ratio_b = full.calls_per_s / insert.calls_per_s
    ratio_a = full.calls_per_s / bare.calls_per_s
    print(f"\ningest/(b) = {ratio_b:.2f}  (target ≥ 0.70)")
    print(f"ingest/(a) = {ratio_a:.2f}")
    print(f"ingest p99 = {full.p99_ms:.0f} ms  (target < 250 ms)")


if __name__ == "__main__":
    asyncio.run(main())
