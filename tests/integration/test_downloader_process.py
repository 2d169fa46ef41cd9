"""The downloader as a process on the real broker: crash recovery and poison messages."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import aio_pika
import pytest
from pymongo import AsyncMongoClient

from devtools.processes import free_port, spawn
from shared.amqp import Broker
from shared.settings import Settings
from tests.audio import tone
from tests.helpers import FAST_DOWNLOADS, new_task, wait_for

pytestmark = pytest.mark.timeout(120)


def service_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a service process the test's settings."""
    return {
        **os.environ,
        "ROP_MONGO_URL": settings.mongo_url,
        "ROP_AMQP_URL": settings.amqp_url,
        "ROP_AMQP_PREFIX": settings.amqp_prefix,
        "ROP_API_KEY": "test-api-key-0123456789abcdef",
        "ROP_FETCH_ALLOW_LOOPBACK": "true",
        "ROP_DOWNLOAD_READ_TIMEOUT_S": str(FAST_DOWNLOADS["download_read_timeout_s"]),
        "ROP_HEALTH_PORT": str(free_port()),
        "ROP_LOG_LEVEL": "warning",
    }


@pytest.fixture
def start_downloader(settings: Settings) -> Iterator[Any]:
    processes: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        process = spawn([sys.executable, "-m", "services.downloader"], service_env(settings))
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_killed_mid_download_ends_stored_exactly_once(
    settings: Settings, files: Any, start_downloader: Any
) -> None:
    source = tone("wav", sample_rate_hz=16000, channels=1, duration_s=60.0).read_bytes()
    url = files.stream("/slow.wav", data=source, chunk_bytes=32 * 1024, pause_s=0.02)
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo_url)
    db = mongo.get_default_database()
    broker = Broker(settings.amqp_url, prefix=settings.amqp_prefix)
    try:
        envelope, _ = await new_task(db, url)
        await broker.connect()
        await broker.publish(envelope)

        first = start_downloader()

        async def halfway() -> bool:
            return files.bytes_sent.get("/slow.wav", 0) > len(source) // 3

        await wait_for(halfway, timeout_s=30)
        first.send_signal(signal.SIGKILL)
        first.wait()

        start_downloader()

        async def stored() -> dict[str, Any] | None:
            task = await db.calls.find_one({"_id": envelope.task_id})
            return task if task and task["status"] in ("analyzing", "failed") else None

        task = await wait_for(stored, timeout_s=60)
        assert task["status"] == "analyzing", task.get("error")
        assert task["audio"]["size_bytes"] == len(source)
        assert await db["audio.files"].count_documents({}) == 1
        chunks = await db["audio.chunks"].count_documents({})
        assert chunks == -(-len(source) // (255 * 1024))
        orphans = await db["audio.chunks"].count_documents({"files_id": {"$ne": envelope.task_id}})
        assert orphans == 0
        assert len(files.hits_of("/slow.wav")) == 2
    finally:
        await broker.close()
        await mongo.close()


async def test_poison_message_goes_to_the_dead_letter_queue(
    settings: Settings, amqp_url: str, start_downloader: Any
) -> None:
    broker = Broker(amqp_url, prefix=settings.amqp_prefix)
    await broker.connect()
    await broker.close()
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(f"{settings.amqp_prefix}.events")
        for body in (b"not json", b'{"type": "call.received", "version": 99}'):
            await exchange.publish(aio_pika.Message(body), routing_key="call.received")
        start_downloader()
        dead = await channel.get_queue(f"{settings.amqp_prefix}.downloader.dead")

        async def dead_lettered() -> bool:
            declared = await channel.declare_queue(dead.name, passive=True)
            return declared.declaration_result.message_count == 2

        await wait_for(dead_lettered, timeout_s=30)
