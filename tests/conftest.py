"""Real infrastructure for the tests: a SecantusDB process per session, the local RabbitMQ."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import aio_pika
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from openai import AsyncOpenAI
from pymongo import AsyncMongoClient

from devtools.processes import free_port, port_open, start_secantus, stop
from devtools.system import SERVICES, System
from services.analyzer.asr import WhisperTranscriber
from services.analyzer.llm import LlmJudge
from services.analyzer.voice_encoder import VoiceEncoder
from services.ingest.app import OPENAPI, create_app
from services.notifier.bootstrap import bootstrap as bootstrap_notifier
from services.notifier.handlers import Notifier, consume
from shared.amqp import Broker
from shared.errors import UnknownEvent
from shared.events import Envelope, Event, parse_envelope
from shared.settings import Settings
from tests.fakes import FakeCrm, FakeLlm
from tests.fileserver import FileServer
from tests.openapi_check import AnswerChecker, webhook_errors

AMQP_URL = os.environ.get("ROP_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
API_KEY = "test-api-key-0123456789abcdef"
ADMIN_EMAIL = "admin@test.local"
ADMIN_PASSWORD = "correct horse battery staple"
# The services as processes: the tests' key and admin, no samples, quick webhook retries;
# their calls are English (espeak-ng), which the English-only tiny.en hears as well as
# the multilingual default and faster.
SERVICE_ENV = {
    "ROP_ASR_MODEL": "tiny.en",
    "ROP_API_KEY": API_KEY,
    "ROP_ADMIN_EMAIL": ADMIN_EMAIL,
    "ROP_ADMIN_PASSWORD": ADMIN_PASSWORD,
    "ROP_SEED_SAMPLES": "false",
    "ROP_WEBHOOK_RETRY_SCHEDULE_S": "0.5,1,2",
}


@pytest.fixture(scope="session")
def mongo_server() -> Iterator[str]:
    """One SecantusDB process for the session; each test gets its own database."""
    port = free_port()
    process = start_secantus(port, ":memory:")
    yield f"mongodb://127.0.0.1:{port}"
    stop(process)


@pytest.fixture(scope="session")
def transcriber() -> WhisperTranscriber:
    """The shipped Whisper tiny.en (English only), loaded once: the English tests' model."""
    return WhisperTranscriber("tiny.en", device="cpu", compute_type="int8")


@pytest.fixture(scope="session")
def multilingual() -> WhisperTranscriber:
    """The shipped multilingual Whisper base (the default model), loaded once."""
    return WhisperTranscriber("base", device="cpu", compute_type="int8")


@pytest.fixture(scope="session")
def voice_encoder() -> VoiceEncoder:
    """The speaker embedding model (Resemblyzer's weights), loaded once."""
    return VoiceEncoder()


@pytest.fixture(scope="session")
def amqp_url() -> str:
    """The real broker every test publishes to."""
    if not port_open("127.0.0.1", 5672):
        pytest.fail("RabbitMQ is not running on 127.0.0.1:5672 (rabbitmq-server -detached)")
    return AMQP_URL


@pytest.fixture
async def settings(
    mongo_server: str, amqp_url: str, tmp_path: os.PathLike[str]
) -> AsyncIterator[Settings]:
    """Settings isolated per test: own database, own exchange and queue names."""
    mongo_url, prefix = isolated_names(mongo_server)
    settings = Settings(
        mongo_url=mongo_url,
        amqp_url=amqp_url,
        amqp_prefix=prefix,
        api_key=API_KEY,
        admin_email=ADMIN_EMAIL,
        admin_password=ADMIN_PASSWORD,
        state_dir=tmp_path,
        outbox_poll_interval_s=0.2,
        seed_samples=False,
        fetch_allow_loopback=True,  # the fakes of third parties listen on 127.0.0.1
    )
    yield settings
    await drop_isolated(mongo_url, amqp_url, prefix)


def isolated_names(mongo_server: str) -> tuple[str, str]:
    """A database and a prefix of exchanges and queues that no other test uses."""
    suffix = uuid.uuid4().hex[:10]
    return f"{mongo_server}/rop_test_{suffix}", f"rop-test-{suffix}"


async def drop_isolated(mongo_url: str, amqp_url: str, prefix: str) -> None:
    """Remove what `isolated_names` named: the database and the broker topology."""
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongo_url)
    await client.drop_database(client.get_default_database().name)
    await client.close()
    await Broker(amqp_url, prefix=prefix).delete_topology()


class EventTap:
    """A temporary queue bound to every event of a test's exchange."""

    def __init__(self) -> None:
        self.messages: list[aio_pika.abc.AbstractIncomingMessage] = []

    async def on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.messages.append(message)
        await message.ack()

    def events(self) -> list[tuple[Envelope, Event]]:
        """The valid events seen so far (tests of poison messages publish invalid ones)."""
        parsed = []
        for message in self.messages:
            with contextlib.suppress(UnknownEvent):
                parsed.append(parse_envelope(message.body))
        return parsed


@pytest.fixture
async def tap(settings: Settings, amqp_url: str) -> AsyncIterator[EventTap]:
    connection = await aio_pika.connect_robust(amqp_url)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(
        f"{settings.amqp_prefix}.events", aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, routing_key="#")
    tap = EventTap()
    await queue.consume(tap.on_message)
    yield tap
    await connection.close()


@pytest.fixture
async def files() -> AsyncIterator[FileServer]:
    server = FileServer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.dispatch)
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server()
    server.base_url = str(test_server.make_url("")).rstrip("/")
    yield server
    await test_server.close()


@pytest.fixture
async def fake_llm() -> AsyncIterator[tuple[FakeLlm, LlmJudge]]:
    llm = FakeLlm()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", llm.complete)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    client = AsyncOpenAI(
        base_url=str(server.make_url("/v1")), api_key="test-key", timeout=1.0, max_retries=0
    )
    judge = LlmJudge(client, "fake-model", attempts=2)
    yield llm, judge
    await judge.close()
    await server.close()


@pytest.fixture
async def crm() -> AsyncIterator[tuple[FakeCrm, str]]:
    """The CRM's webhook endpoints on 127.0.0.1, and their base URL; what they receive
    must be webhooks as the OpenAPI document describes them."""
    fake = FakeCrm()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.receive)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield fake, str(server.make_url("")).rstrip("/")
    await server.close()
    # Every webhook sent is one the OpenAPI document describes.
    assert [
        problem for item in fake.received for problem in webhook_errors(OPENAPI, item.body)
    ] == []


# The notifier of the tests: quick retries and timeouts.
FAST_WEBHOOKS = {
    "webhook_retry_schedule_s": ("0.3", "0.3", "0.5"),
    "webhook_retry_jitter": 0.0,
    "webhook_timeout_s": 1.0,
}


@contextlib.asynccontextmanager
async def running_notifier(settings: Settings) -> AsyncIterator[Notifier]:
    """The notifier consuming its queue in this process, until the block ends."""
    async with bootstrap_notifier(settings) as deps:
        consumer = asyncio.create_task(consume(deps, prefetch=8))
        try:
            yield deps
        finally:
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer


@pytest.fixture
async def notifier(settings: Settings) -> AsyncIterator[Notifier]:
    async with running_notifier(settings.model_copy(update=FAST_WEBHOOKS)) as deps:
        yield deps


@pytest.fixture
async def ingest_client(settings: Settings) -> AsyncIterator[TestClient[object, object]]:
    """The ingest gateway running on 127.0.0.1 with a real database and broker; every
    answer it gives must be one the OpenAPI document describes."""
    app = create_app(settings)
    checker = AnswerChecker(OPENAPI)
    app.middlewares.insert(0, checker.middleware)
    server = TestServer(app, host="127.0.0.1")
    # Like the gateway's own bound: a connection still open at the end is cut after 5 s,
    # not aiohttp's test default of 60 s twice (full runs hung here for 120 s).
    await server.start_server(shutdown_timeout=5)
    client: TestClient[object, object] = TestClient(server)
    await client.start_server()
    yield client
    await client.close()
    assert checker.violations == [], "answers the OpenAPI document does not describe"


@pytest.fixture
def system(settings: Settings) -> Iterator[System]:
    """All four services as processes, sharing the test's database and broker names."""
    running = System(
        mongo_url=settings.mongo_url,
        amqp_url=settings.amqp_url,
        prefix=settings.amqp_prefix,
        state_dir=str(settings.state_dir),
        extra_env={**SERVICE_ENV, "ROP_ANALYSIS_LEASE_S": "10"},
    )
    for name in SERVICES:
        running.start(name)
    yield running
    running.stop_all()
