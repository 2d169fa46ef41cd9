"""`make bench-download`: the downloader storing a large file, against two baselines.

For a 200 MB and a 20 MB WAV served by a local file host: the downloader (its own
process, through the broker, until the task is stored and probed), (a) reading the
same file over HTTP into nothing, (b) a bare `upload_from_stream` of the same bytes
from memory into the same GridFS bucket. Prints MB/s (best of
`--repeats`), downloader/(b), and the downloader's peak RSS per size (target: ≤ 150 MB
for both).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from gridfs import AsyncGridFSBucket

from bench.ingest import AMQP_URL, wait_listening
from devtools.processes import free_port, spawn, start_secantus, stop
from devtools.samples import write_tone
from shared.amqp import Broker
from shared.events import CallReceived, Envelope, utcnow
from shared.mongo import connect_mongo, database

MB = 1_000_000
WAV_BYTES_PER_S = 16000 * 2  # 16 kHz mono, 16-bit


@dataclass(frozen=True)
class Row:
    size_mb: float
    downloader_mb_s: float
    http_mb_s: float
    gridfs_mb_s: float
    peak_rss_mb: float


def make_wav(directory: Path, size_bytes: int) -> Path:
    path = directory / f"call-{size_bytes // MB}mb.wav"
    seconds = round(size_bytes / WAV_BYTES_PER_S)
    return write_tone(path, sample_rate_hz=16000, channels=1, duration_s=seconds)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


async def http_only(url: str) -> float:
    started = time.perf_counter()
    size = 0
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        async for chunk in response.content.iter_chunked(256 * 1024):
            size += len(chunk)
    return size / MB / (time.perf_counter() - started)


async def gridfs_only(mongo_url: str, data: bytes) -> float:
    client = connect_mongo(mongo_url)
    bucket = AsyncGridFSBucket(database(client), bucket_name="audio")
    started = time.perf_counter()
    file_id = await bucket.upload_from_stream("baseline.wav", data)
    elapsed = time.perf_counter() - started
    await bucket.delete(file_id)
    await client.close()
    return len(data) / MB / elapsed


async def through_downloader(
    mongo_url: str, prefix: str, url: str, size: int, repeats: int
) -> tuple[float, float]:
    """Best MB/s of `repeats` downloads by one downloader process, and its peak RSS."""
    env = {
        **os.environ,
        "ROP_MONGO_URL": mongo_url,
        "ROP_AMQP_URL": AMQP_URL,
        "ROP_AMQP_PREFIX": prefix,
        "ROP_API_KEY": "bench-api-key-0123456789abcdef",
        "ROP_FETCH_ALLOW_LOOPBACK": "true",
        "ROP_HEALTH_PORT": str(free_port()),
        "ROP_LOG_LEVEL": "warning",
        "ROP_MAX_CALL_DURATION_S": "86400",
    }
    process = spawn([sys.executable, "-m", "services.downloader"], env)
    client = connect_mongo(mongo_url)
    db = database(client)
    broker = Broker(AMQP_URL, prefix=prefix)
    try:
        await broker.connect()
        speeds = [await _download_once(db, broker, url, size) for _ in range(repeats)]
        return max(speeds), peak_rss_mb(process.pid)
    finally:
        stop(process)
        await broker.close()
        await client.close()


async def _download_once(db: Any, broker: Broker, url: str, size: int) -> float:
    """Publish one CallReceived; time it until the task is stored and probed."""
    task_id = f"task_{uuid.uuid4().hex[:12]}"
    now = utcnow()
    await db.calls.insert_one(
        {
            "_id": task_id,
            "call_id": task_id,
            "status": "queued",
            "received_at": now,
            "updated_at": now,
            "timeline": [],
        }
    )
    event = CallReceived(call_id=task_id, deal_id="d", manager_id="m", audio_url=url)
    started = time.perf_counter()
    await broker.publish(Envelope.wrap(event, task_id=task_id))
    while True:
        task = await db.calls.find_one({"_id": task_id}, {"status": 1, "error": 1})
        if task and task["status"] not in ("queued", "downloading"):
            break
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - started
    if task["status"] != "analyzing":
        raise RuntimeError(f"download failed: {task.get('error')}")
    await db["audio.files"].delete_one({"_id": task_id})
    await db["audio.chunks"].delete_many({"files_id": task_id})
    return size / MB / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[200, 20])
    parser.add_argument("--repeats", type=int, default=3, help="best of N per measurement")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="rop-bench-download-"))
    mongo_port, files_port = free_port(), free_port()
    mongo = start_secantus(mongo_port, str(workdir / "db"))
    mongo_url = f"mongodb://127.0.0.1:{mongo_port}/bench_download"
    prefix = f"rop-bench-{uuid.uuid4().hex[:8]}"
    files = spawn(
        [
            sys.executable,
            "-m",
            "bench.baselines",
            "files",
            "--port",
            str(files_port),
            "--directory",
            str(workdir),
        ],
        quiet=True,
    )
    rows: list[Row] = []
    try:
        wait_listening(files_port, files)
        for size_mb in args.sizes_mb:
            path = make_wav(workdir, size_mb * MB)
            url = f"http://127.0.0.1:{files_port}/{path.name}"
            size = path.stat().st_size
            downloader_mb_s, rss_mb = await through_downloader(
                mongo_url, prefix, url, size, args.repeats
            )
            http_mb_s = max([await http_only(url) for _ in range(args.repeats)])
            data = path.read_bytes()
            gridfs_mb_s = max([await gridfs_only(mongo_url, data) for _ in range(args.repeats)])
            del data
            rows.append(Row(size / MB, downloader_mb_s, http_mb_s, gridfs_mb_s, rss_mb))
    finally:
        stop(files)
        stop(mongo)
        await Broker(AMQP_URL, prefix=prefix).delete_topology()

    print(
        f"\n{'file MB':>8} {'downloader':>11} {'(a) HTTP':>9} {'(b) GridFS':>11} "
        f"{'dl/(b)':>7} {'peak RSS MB':>12}"
    )
    for row in rows:
        print(
            f"{row.size_mb:8.0f} {row.downloader_mb_s:9.1f}/s {row.http_mb_s:7.1f}/s "
            f"{row.gridfs_mb_s:9.1f}/s {row.downloader_mb_s / row.gridfs_mb_s:7.2f} "
            f"{row.peak_rss_mb:12.0f}"
        )
    print(
        "\ntargets: downloader/(b) ≥ 0.70, peak RSS ≤ 150 MB for every size (MB/s in MB = 10^6 B)"
    )


if __name__ == "__main__":
    asyncio.run(main())
