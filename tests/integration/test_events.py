"""Accepted calls become events on the real broker, even across a broker outage."""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
from aiohttp.test_utils import TestClient, TestServer
from pymongo import AsyncMongoClient

from devtools.processes import free_port
from services.ingest.app import create_app
from shared.events import CallReceived, CallSkipped, parse_envelope
from shared.settings import Settings
from tests.conftest import API_KEY, EventTap
from tests.crm_client import a_call, post_json
from tests.helpers import TcpProxy, wait_for

Client = TestClient[Any, Any]


async def test_accepted_call_is_published_as_a_valid_event(
    ingest_client: Client, tap: EventTap, settings: Settings
) -> None:
    call = a_call()
    task_id = (await (await post_json(ingest_client, call)).json())["task_id"]

    async def delivered() -> bool:
        return len(tap.messages) == 1

    await wait_for(delivered)
    message = tap.messages[0]
    envelope, event = parse_envelope(message.body)
    assert isinstance(event, CallReceived)
    assert envelope.task_id == task_id
    assert envelope.type == message.routing_key == "call.received"
    assert envelope.version == 1
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.message_id == envelope.event_id
    assert event.call_id == call["call_id"]
    assert event.audio_url == call["audio_url"]
    assert event.declared_duration_s == 900
    assert event.manager_name == call["manager_name"]

    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo_url)
    document = await mongo.get_default_database().calls.find_one({"_id": task_id})
    await mongo.close()
    assert document is not None
    assert document["outbox"] == []
    assert document["outbox_pending"] is False


async def test_event_waits_in_the_downloader_queue_before_it_runs(
    ingest_client: Client, settings: Settings, amqp_url: str
) -> None:
    task_id = (await (await post_json(ingest_client, a_call())).json())["task_id"]

    async def broker_ready() -> bool:
        body = await (await ingest_client.get("/readyz")).json()
        return bool(body["status"] == "ready")

    await wait_for(broker_ready)
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(f"{settings.amqp_prefix}.downloader", passive=True)

        async def waiting() -> aio_pika.abc.AbstractIncomingMessage | None:
            return await queue.get(fail=False, no_ack=True)

        message = await wait_for(waiting)
    envelope, _ = parse_envelope(message.body)
    assert envelope.task_id == task_id


async def test_short_call_is_skipped_and_announced(ingest_client: Client, tap: EventTap) -> None:
    login = await ingest_client.post(
        "/api/v1/auth/login",
        json={"email": "admin@test.local", "password": "correct horse battery staple"},
    )
    token = (await login.json())["token"]
    updated = await ingest_client.put(
        "/api/v1/settings/connection",
        json={"min_call_duration_s": 30},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert updated.status == 200

    response = await post_json(ingest_client, a_call(duration=29.5))
    body = await response.json()
    assert response.status == 200
    assert body["status"] == "skipped"
    assert "30" in body["message"]
    assert set(body) == {"status", "message", "task_id"}
    long_enough = await (await post_json(ingest_client, a_call(duration=30))).json()
    assert long_enough["status"] == "success"

    task = await (
        await ingest_client.get(f"/api/v1/tasks/{body['task_id']}", params={"apiKey": API_KEY})
    ).json()
    assert task["status"] == "skipped"
    assert task["skip_reason"]["code"] == "too_short"

    async def both_published() -> bool:
        return len(tap.messages) == 2

    await wait_for(both_published)
    events = {parse_envelope(m.body)[0].task_id: parse_envelope(m.body)[1] for m in tap.messages}
    assert isinstance(events[body["task_id"]], CallSkipped)
    assert isinstance(events[long_enough["task_id"]], CallReceived)


async def test_calls_accepted_while_the_broker_is_down_are_published_when_it_returns(
    settings: Settings, amqp_url: str, tap: EventTap
) -> None:
    proxy = TcpProxy("127.0.0.1", 5672, free_port())
    await proxy.start()
    via_proxy = settings.model_copy(
        update={"amqp_url": f"amqp://guest:guest@127.0.0.1:{proxy.port}/?reconnect_interval=0.3"}
    )
    client: Client = TestClient(TestServer(create_app(via_proxy), host="127.0.0.1"))
    await client.start_server()
    try:

        async def broker_up() -> bool:
            body = await (await client.get("/readyz")).json()
            return bool(body["checks"]["broker"] == "ok")

        await wait_for(broker_up)
        await proxy.cut()

        async def broker_down() -> bool:
            body = await (await client.get("/readyz")).json()
            return bool(body["checks"]["broker"] == "down")

        await wait_for(broker_down)
        responses = await asyncio.gather(*(post_json(client, a_call()) for _ in range(20)))
        task_ids = {(await r.json())["task_id"] for r in responses}
        assert {r.status for r in responses} == {200}
        ready = await client.get("/readyz")
        assert ready.status == 200  # still accepting calls
        assert (await ready.json())["status"] == "degraded"
        assert tap.messages == []

        async def backlog_reported() -> bool:
            return "rop_outbox_backlog 20.0" in await (await client.get("/metrics")).text()

        await wait_for(backlog_reported)
        await proxy.start()

        async def all_published() -> bool:
            return {parse_envelope(m.body)[0].task_id for m in tap.messages} == task_ids

        await wait_for(all_published, timeout_s=30)
        # At least once, never with a new identity: one event id per task.
        by_task: dict[str, set[str]] = {}
        for message in tap.messages:
            envelope, _ = parse_envelope(message.body)
            by_task.setdefault(envelope.task_id, set()).add(envelope.event_id)
        assert all(len(ids) == 1 for ids in by_task.values())
    finally:
        await client.close()
        await proxy.cut()


async def test_gateway_starts_with_the_broker_unreachable(
    settings: Settings, tap: EventTap
) -> None:
    proxy = TcpProxy("127.0.0.1", 5672, free_port())
    via_proxy = settings.model_copy(
        update={"amqp_url": f"amqp://guest:guest@127.0.0.1:{proxy.port}/?reconnect_interval=0.3"}
    )
    client: Client = TestClient(TestServer(create_app(via_proxy), host="127.0.0.1"))
    await client.start_server()
    try:
        response = await post_json(client, a_call())
        assert response.status == 200
        task_id = (await response.json())["task_id"]
        await proxy.start()

        async def published() -> bool:
            return any(parse_envelope(m.body)[0].task_id == task_id for m in tap.messages)

        await wait_for(published, timeout_s=30)
    finally:
        await client.close()
        await proxy.cut()
