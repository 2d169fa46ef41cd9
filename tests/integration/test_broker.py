"""The broker topology on the real RabbitMQ: quorum queues, waiting rooms, requeues and
the upgrade from the classic queues of earlier versions."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest
from aiormq.exceptions import ChannelPreconditionFailed
from pymongo.errors import AutoReconnect

from shared.amqp import CONSUMER_QUEUES, QUORUM, WAITING_ROOMS_S, Broker, OutdatedQueue
from shared.events import DeliveryDue, Envelope, Event
from shared.settings import Settings
from tests.helpers import wait_for


@contextlib.asynccontextmanager
async def connected(settings: Settings) -> AsyncIterator[Broker]:
    broker = Broker(settings.amqp_url, prefix=settings.amqp_prefix)
    await broker.connect()
    try:
        yield broker
    finally:
        await broker.close()


async def declares(amqp_url: str, queue: str, arguments: dict[str, Any]) -> bool:
    """Whether declaring `queue` with these arguments is accepted: the broker refuses
    arguments that differ from the queue's own."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        try:
            await channel.declare_queue(queue, durable=True, arguments=arguments)
        except ChannelPreconditionFailed:
            return False
        return True


def due(delivery_id: str) -> Envelope:
    return Envelope.wrap(DeliveryDue(delivery_id=delivery_id), task_id=delivery_id)


async def test_every_queue_is_a_quorum_queue_that_dead_letters_at_least_once(
    settings: Settings,
) -> None:
    async with connected(settings) as broker:
        pass
    url = settings.amqp_url
    for spec in CONSUMER_QUEUES:
        name = broker.queue_name(spec.consumer)
        assert not await declares(url, name, {"x-queue-type": "classic"})
        assert not await declares(url, f"{name}.dead", {"x-queue-type": "classic"})
        expected = {
            **QUORUM,
            "x-dead-letter-exchange": broker.dead_exchange_name,
            "x-dead-letter-routing-key": spec.consumer,
            **({"x-single-active-consumer": True} if spec.single_active else {}),
        }
        assert await declares(url, name, expected)
        assert not await declares(url, name, {**expected, "x-dead-letter-strategy": "at-most-once"})
    for wait_s in WAITING_ROOMS_S:
        room = f"{broker.queue_name('notifier')}.wait.{wait_s}s"
        assert await declares(
            url,
            room,
            {
                **QUORUM,
                "x-message-ttl": wait_s * 1000,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": broker.queue_name("notifier"),
            },
        )


async def test_a_message_sent_later_arrives_when_due_and_never_waits_behind_a_longer_one(
    settings: Settings,
) -> None:
    arrived: dict[str, float] = {}

    async def handle(envelope: Envelope, _: Event) -> None:
        arrived[envelope.task_id] = time.monotonic()

    async with connected(settings) as broker:
        consumer = asyncio.create_task(broker.consume("notifier", handle, prefetch=4))
        sent = time.monotonic()
        # 7.3 s: the 5 s room, then the 1 s room twice; 1.2 s: the 1 s room.
        await broker.send_later("notifier", due("long"), delay_s=7.3)
        await broker.send_later("notifier", due("short"), delay_s=1.2)
        await broker.send_later("notifier", due("now"), delay_s=0.2)

        async def all_arrived() -> bool:
            return len(arrived) == 3

        await wait_for(all_arrived, timeout_s=20)
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
    waited = {key: at - sent for key, at in arrived.items()}
    assert waited["now"] < 0.5
    assert 0.7 <= waited["short"] < 2.5
    assert 6.8 <= waited["long"] < 9.5


async def test_a_dependency_outage_requeues_a_message_as_new_without_counting_returns(
    settings: Settings,
) -> None:
    """A delivery limit (RabbitMQ 4 sets one on quorum queues) must not count outages."""
    seen: list[aio_pika.abc.AbstractIncomingMessage] = []
    done = asyncio.Event()

    async def handle(envelope: Envelope, _: Event) -> None:
        if len(seen) < 4:
            raise AutoReconnect("the database blinked")
        done.set()

    async with connected(settings) as broker:
        original = broker._process

        async def spying(consumer: str, message: Any, *args: Any) -> str:
            seen.append(message)
            return await original(consumer, message, *args)

        broker._process = spying  # type: ignore[method-assign]
        consumer = asyncio.create_task(
            broker.consume("analyzer", handle, prefetch=1, requeue_delay_s=0.01)
        )
        await broker.send_to_queue(broker.queue_name("analyzer"), due("blinked"))
        await asyncio.wait_for(done.wait(), timeout=15)
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
    assert len(seen) == 4
    assert [m.redelivered for m in seen] == [False] * 4
    assert all(not (m.headers or {}).get("x-delivery-count") for m in seen)
    assert len({m.message_id for m in seen}) == 1


async def test_an_empty_classic_queue_of_an_earlier_version_is_replaced(
    settings: Settings,
) -> None:
    name = f"{settings.amqp_prefix}.downloader"
    assert await declares(settings.amqp_url, name, {"x-queue-type": "classic"})
    async with connected(settings):
        pass
    assert not await declares(settings.amqp_url, name, {"x-queue-type": "classic"})


async def test_a_classic_queue_still_holding_work_is_kept_until_it_is_emptied(
    settings: Settings,
) -> None:
    name = f"{settings.amqp_prefix}.downloader"
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, durable=True)
        await channel.default_exchange.publish(aio_pika.Message(b"waiting"), routing_key=name)
        broker = Broker(settings.amqp_url, prefix=settings.amqp_prefix)
        with pytest.raises(OutdatedQueue):
            await broker.connect()
        message = await queue.get(fail=False)
        assert message is not None
        assert message.body == b"waiting"
        await message.ack()
    async with connected(settings):
        pass
    assert not await declares(settings.amqp_url, name, {"x-queue-type": "classic"})


async def test_a_stopping_consumer_finishes_what_it_holds_and_takes_nothing_more(
    settings: Settings,
) -> None:
    handled: list[str] = []
    release = asyncio.Event()

    async def handle(envelope: Envelope, _: Event) -> None:
        await release.wait()
        handled.append(envelope.task_id)

    async with connected(settings) as broker:
        queue = broker.queue_name("downloader")
        consumer = asyncio.create_task(broker.consume("downloader", handle, prefetch=4))
        await broker.send_to_queue(queue, due("held"))
        await wait_for(lambda: _holds(broker, queue))
        consumer.cancel()
        await asyncio.sleep(0)  # the consumer is cancelled before the next message comes
        await broker.send_to_queue(queue, due("later"))
        assert not consumer.done()
        release.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(consumer, timeout=10)
        assert handled == ["held"]

        async def later_waits() -> bool:
            return await broker.message_count("downloader") == 1

        await wait_for(later_waits)


async def test_what_a_stopping_consumer_cannot_finish_in_time_goes_back_to_the_queue(
    settings: Settings,
) -> None:
    async def handle(envelope: Envelope, _: Event) -> None:
        await asyncio.Future()  # never finishes

    async with connected(settings) as broker:
        queue = broker.queue_name("downloader")
        consumer = asyncio.create_task(
            broker.consume("downloader", handle, prefetch=4, drain_s=0.3)
        )
        await broker.send_to_queue(queue, due("stuck"))
        await wait_for(lambda: _holds(broker, queue))
        started = time.monotonic()
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(consumer, timeout=10)
        assert time.monotonic() - started < 3
    async with connected(settings) as broker:

        async def back() -> bool:
            return await broker.message_count("downloader") == 1

        await wait_for(back)


async def _holds(broker: Broker, queue: str) -> bool:
    """Whether the queue's one message has been taken (it waits for no consumer)."""
    return await broker.message_count(queue.removeprefix(f"{broker.prefix}.")) == 0
