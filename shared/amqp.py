"""RabbitMQ plumbing on aio-pika: a robust connection, the topology, confirmed publishing.

Topology (every name starts with the configured prefix):
- `<prefix>.events`: durable topic exchange; an event's routing key is its type.
- `<prefix>.dead`: durable topic exchange receiving what consumers reject.
- `<prefix>.<consumer>`: the queue of each consumer, bound to the event types it
  handles, dead-lettering to `<prefix>.<consumer>.dead`.
- `<prefix>.<consumer>.wait.<N>s` (consumers that schedule work, the notifier): waiting
  rooms, each holding a message exactly N seconds before it expires back into the
  consumer's queue (see `send_later`).

Every queue is a quorum queue (replicated over the cluster's nodes; on one node it is
the same queue) with at-least-once dead-lettering, so neither a rejected message nor a
waiting one is lost when a node goes down between the two queues. Every service declares
the whole topology at start, so an event published before its consumer first runs still
waits in that consumer's queue.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from aio_pika.exceptions import AMQPConnectionError, AMQPError, ChannelInvalidStateError
from aiormq.exceptions import ChannelPreconditionFailed
from prometheus_client import Histogram
from pymongo.errors import PyMongoError

from shared.errors import RetryableError, UnknownEvent
from shared.events import (
    AudioStored,
    CallAnalyzed,
    CallDisputed,
    CallFailed,
    CallReceived,
    CallReviewed,
    CallSkipped,
    Envelope,
    Event,
    parse_envelope,
    utcnow,
)
from shared.logging import get_logger
from shared.metrics import WorkerMetrics
from shared.patience import patiently

log = get_logger(__name__)

PUBLISH_TIMEOUT_S = 10.0
# How long a publish waits for a dropped connection to come back before it gives up (the
# caller's outcome stays stored and is published again later).
PUBLISH_WAIT_S = 30.0
RESEND_PAUSE_S = 0.1


@dataclass(frozen=True)
class ConsumerQueue:
    """A consumer's durable queue and the event types routed to it."""

    consumer: str
    routing_keys: tuple[str, ...]
    single_active: bool = False  # one consumer at a time, whatever the replicas
    schedules: bool = False  # has waiting rooms for `send_later`


CONSUMER_QUEUES = (
    ConsumerQueue("downloader", (CallReceived.TYPE,)),
    ConsumerQueue("analyzer", (AudioStored.TYPE,)),
    ConsumerQueue(
        "notifier",
        (
            CallAnalyzed.TYPE,
            CallReviewed.TYPE,
            CallSkipped.TYPE,
            CallFailed.TYPE,
            CallDisputed.TYPE,
        ),
        schedules=True,
    ),
    # The reports: every event that adds a call or changes its results.
    ConsumerQueue(
        "reports",
        (
            CallReceived.TYPE,
            CallSkipped.TYPE,
            CallAnalyzed.TYPE,
            CallReviewed.TYPE,
            CallFailed.TYPE,
        ),
        single_active=True,
    ),
)
REQUEUE_DELAY_S = 5.0
# How long a stopping consumer finishes what it holds: under the pods' grace period (30 s).
DRAIN_S = 20.0
# The waiting rooms' lengths: any delay is a few hops down this ladder, each room a
# queue TTL, so a message never waits behind a longer one (on quorum queues, as on
# classic ones, a per-message TTL only expires at the head of its queue). Fixed, not
# taken from settings: a changed retry schedule needs no new queues.
WAITING_ROOMS_S = (1, 5, 30, 120, 600, 3600, 14400)
NOT_BEFORE_HEADER = "not_before"  # epoch milliseconds a waiting message is due at
# Quorum queues everywhere; dead-lettering at least once (which needs reject-publish).
QUORUM: dict[str, Any] = {
    "x-queue-type": "quorum",
    "x-dead-letter-strategy": "at-least-once",
    "x-overflow": "reject-publish",
}

EventHandler = Callable[[Envelope, Event], Awaitable[None]]
DeadLetterHook = Callable[[str, str], Awaitable[None]]
# The broker's connection or channel went away (it comes back by itself).
BROKER_DOWN: tuple[type[BaseException], ...] = (
    AMQPConnectionError,
    ChannelInvalidStateError,
    ConnectionError,
    TimeoutError,
)


class OutdatedQueue(Exception):
    """A queue exists with other arguments than this version declares."""

    def __init__(self, queue: str) -> None:
        super().__init__(queue)
        self.queue = queue


# What a step needing the broker raises while it is away, restarting or being upgraded.
BROKER_ERRORS: tuple[type[BaseException], ...] = (AMQPError, *BROKER_DOWN, OSError, OutdatedQueue)
# Failures of a dependency, not of the message: the same message succeeds later.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    RetryableError,
    PyMongoError,
    AMQPError,
    *BROKER_DOWN,
)


class Broker:
    """A robust AMQP connection with the system's topology and publisher confirms."""

    def __init__(self, url: str, *, prefix: str = "rop") -> None:
        self._url = url
        self.prefix = prefix
        self.exchange_name = f"{prefix}.events"
        self.dead_exchange_name = f"{prefix}.dead"
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._lock = asyncio.Lock()
        self._reconnect_listeners: list[Callable[[], None]] = []

    @property
    def is_connected(self) -> bool:
        """True while the connection to the broker is up (it reconnects by itself)."""
        return self._connection is not None and self._connection.connected.is_set()

    def on_reconnect(self, listener: Callable[[], None]) -> None:
        """Call `listener` each time the connection comes back after a loss."""
        self._reconnect_listeners.append(listener)

    def _reconnected(self, *_: object) -> None:
        for listener in self._reconnect_listeners:
            listener()

    def queue_name(self, consumer: str) -> str:
        """Name of a consumer's durable queue."""
        return f"{self.prefix}.{consumer}"

    async def connect(self) -> None:
        """Connect once and declare the topology; the connection then recovers by itself.
        Raises when the broker cannot be reached now (see `connect_patiently`)."""
        async with self._lock:
            if self._connection is not None:
                return
            connection = await aio_pika.connect_robust(self._url)
            try:
                await self._declare_topology(connection)
                channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                self._exchange = await channel.get_exchange(self.exchange_name, ensure=False)
            except BaseException:
                await connection.close()
                raise
            connection.reconnect_callbacks.add(self._reconnected)
            self._connection, self._channel = connection, channel

    async def connect_patiently(self) -> None:
        """Connect, waiting with backoff for as long as the broker is away: a service that
        starts during a broker restart waits for it instead of exiting."""
        await patiently(self.connect, errors=BROKER_ERRORS, dependency="broker")

    async def _declare_topology(self, connection: AbstractRobustConnection) -> None:
        """Declare everything; a queue left by an earlier version with other arguments
        (a classic queue) is replaced when it is empty and unused, and otherwise
        refused with a message saying what to do (`connect_patiently` keeps trying)."""
        outdated = ""
        for _ in range(2 * len(CONSUMER_QUEUES) + len(WAITING_ROOMS_S) + 1):
            try:
                async with connection.channel() as channel:
                    exchange = await channel.declare_exchange(
                        self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
                    )
                    dead = await channel.declare_exchange(
                        self.dead_exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
                    )
                    for spec in CONSUMER_QUEUES:
                        await self._declare_consumer_queue(channel, exchange, dead, spec)
                return
            except OutdatedQueue as exc:
                outdated = exc.queue
                await _replace_outdated(connection, outdated)
        raise OutdatedQueue(outdated)  # replaced, yet declared again with other arguments

    async def _declare_consumer_queue(
        self,
        channel: AbstractChannel,
        exchange: AbstractExchange,
        dead: AbstractExchange,
        spec: ConsumerQueue,
    ) -> AbstractQueue:
        name = self.queue_name(spec.consumer)
        dead_queue = await _declare_quorum(channel, f"{name}.dead", {"x-queue-type": "quorum"})
        await dead_queue.bind(dead, routing_key=spec.consumer)
        queue = await _declare_quorum(
            channel,
            name,
            {
                **QUORUM,
                "x-dead-letter-exchange": self.dead_exchange_name,
                "x-dead-letter-routing-key": spec.consumer,
                **({"x-single-active-consumer": True} if spec.single_active else {}),
            },
        )
        for key in spec.routing_keys:
            await queue.bind(exchange, routing_key=key)
        if spec.schedules:
            for wait_s in WAITING_ROOMS_S:
                await _declare_quorum(
                    channel,
                    self._room(spec.consumer, wait_s),
                    {
                        **QUORUM,
                        "x-message-ttl": wait_s * 1000,
                        "x-dead-letter-exchange": "",
                        "x-dead-letter-routing-key": name,
                    },
                )
        return queue

    def _room(self, consumer: str, wait_s: int) -> str:
        return f"{self.queue_name(consumer)}.wait.{wait_s}s"

    async def delete_topology(self) -> None:
        """Delete every exchange and queue of this prefix (tests and benchmarks clean up)."""
        connection = await aio_pika.connect(self._url)
        async with connection:
            channel = await connection.channel()
            for spec in CONSUMER_QUEUES:
                name = self.queue_name(spec.consumer)
                await channel.queue_delete(name)
                await channel.queue_delete(f"{name}.dead")
                for wait_s in WAITING_ROOMS_S if spec.schedules else ():
                    await channel.queue_delete(self._room(spec.consumer, wait_s))
            await channel.exchange_delete(self.exchange_name)
            await channel.exchange_delete(self.dead_exchange_name)

    async def message_count(self, queue: str) -> int:
        """Messages waiting in `<prefix>.<queue>` (operations and tests)."""
        if self._connection is None:
            raise ConnectionError("broker not connected")
        channel = await self._connection.channel()
        try:
            declared = await channel.declare_queue(f"{self.prefix}.{queue}", passive=True)
            return int(declared.declaration_result.message_count or 0)
        finally:
            await channel.close()

    async def send_to_queue(self, queue: str, envelope: Envelope) -> None:
        """Publish straight to a queue (confirmed)."""
        await self._send(queue, _message(envelope))

    async def send_later(self, consumer: str, envelope: Envelope, *, delay_s: float) -> None:
        """Deliver to a scheduling consumer's queue in `delay_s` seconds: the message waits
        in the broker (the waiting rooms), never in a process's memory."""
        await self._send_due(consumer, _message(envelope), time.time() + delay_s)

    async def _send_due(self, consumer: str, message: aio_pika.Message, due_s: float) -> None:
        """Send a message due at `due_s` (epoch) on its next hop: into the longest
        waiting room that does not overshoot, or to the consumer when (nearly) due."""
        remaining = due_s - time.time()
        rooms = [wait for wait in WAITING_ROOMS_S if wait <= remaining]
        if rooms:
            queue = self._room(consumer, rooms[-1])
        elif remaining >= WAITING_ROOMS_S[0] / 2:
            queue = self._room(consumer, WAITING_ROOMS_S[0])
        else:
            queue = self.queue_name(consumer)
        message.headers[NOT_BEFORE_HEADER] = round(due_s * 1000)
        await self._send(queue, message)

    async def _send(self, queue: str, message: aio_pika.Message) -> None:
        await self._confirmed(
            lambda channel, _: channel.default_exchange.publish(
                message, routing_key=queue, mandatory=True, timeout=PUBLISH_TIMEOUT_S
            )
        )

    async def publish(self, envelope: Envelope, *, wait_s: float = PUBLISH_WAIT_S) -> None:
        """Publish persistently; returns once the broker confirmed it was routed to a queue.
        A dropped connection is waited for up to `wait_s` (0: fail at once, for a caller
        that retries by itself, like the outbox relay)."""
        message = _message(envelope)
        await self._confirmed(
            lambda _, exchange: exchange.publish(
                message, routing_key=envelope.type, mandatory=True, timeout=PUBLISH_TIMEOUT_S
            ),
            wait_s,
        )

    async def _confirmed(
        self,
        send: Callable[[AbstractRobustChannel, AbstractExchange], Awaitable[object]],
        wait_s: float = PUBLISH_WAIT_S,
    ) -> None:
        """Send on the publishing channel; when the connection dropped, wait for it to come
        back and send again, for at most `wait_s` (then ConnectionError). A send whose
        confirm was lost may reach the broker twice: consumers are idempotent."""
        if self._channel is None or self._exchange is None:
            raise ConnectionError("broker not connected")
        channel, exchange = self._channel, self._exchange
        deadline = asyncio.get_running_loop().time() + wait_s
        while True:
            try:
                await send(channel, exchange)
                return
            except BROKER_DOWN as exc:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    raise ConnectionError(f"broker unavailable: {exc!r}") from exc
                log.info("publish_waits_for_broker", error=repr(exc))
                try:
                    await asyncio.wait_for(channel.ready(), remaining)
                except TimeoutError:
                    raise ConnectionError(f"broker unavailable: {exc!r}") from exc
                await asyncio.sleep(RESEND_PAUSE_S)  # a channel ready again may drop again

    async def consume(
        self,
        consumer: str,
        handle: EventHandler,
        *,
        prefetch: int,
        requeue_delay_s: float = REQUEUE_DELAY_S,
        on_dead_letter: DeadLetterHook | None = None,
        metrics: WorkerMetrics | None = None,
        drain_s: float = DRAIN_S,
    ) -> None:
        """Consume a consumer's queue until cancelled, up to `prefetch` messages at once.

        A message is acked only after `handle` returned, i.e. after its work is durable.
        Unknown or malformed events are dead-lettered at once. A failing dependency
        (database, broker, RetryableError) requeues the message after a pause. Any other
        exception requeues it once and dead-letters it when it fails again. Before a
        message is dead-lettered, `on_dead_letter(task_id, reason)` may mark its task
        failed (when the body names a task). `metrics` counts each message's outcome, its
        handling time and its lag.

        Cancelled (the service stops), it takes no more messages and gives those it holds
        up to `drain_s` to finish; what is still unfinished then goes back to the queue
        when the connection closes, for another replica.
        """
        metrics = metrics or WorkerMetrics()
        in_flight: set[asyncio.Task[Any]] = set()
        consuming: list[tuple[AbstractQueue, str]] = []

        async def on_message(message: AbstractIncomingMessage) -> None:
            task = asyncio.current_task()
            assert task is not None
            in_flight.add(task)
            started = time.perf_counter()
            try:
                outcome = await self._process(
                    consumer,
                    message,
                    handle,
                    requeue_delay_s,
                    on_dead_letter,
                    metrics.lag.labels(consumer),
                )
            finally:
                in_flight.discard(task)
            metrics.messages.labels(consumer, outcome).inc()
            metrics.handling.labels(consumer).observe(time.perf_counter() - started)

        async def start_consuming() -> None:
            await self.connect()
            assert self._connection is not None
            channel = await self._connection.channel()
            await channel.set_qos(prefetch_count=prefetch)
            queue = await channel.get_queue(self.queue_name(consumer), ensure=True)
            consuming.append((queue, await queue.consume(on_message)))

        await patiently(start_consuming, errors=BROKER_ERRORS, dependency="broker")
        try:
            await asyncio.Future()  # until cancelled; the robust channel restores the consumer
        except asyncio.CancelledError:
            await asyncio.shield(_drain(consuming, in_flight, drain_s))
            raise

    async def _process(
        self,
        consumer: str,
        message: AbstractIncomingMessage,
        handle: EventHandler,
        requeue_delay_s: float,
        on_dead_letter: DeadLetterHook | None,
        lag: Histogram,
    ) -> str:
        """Handle one message and settle it; what became of it."""
        due_s = _due_s(message)
        if due_s is not None and due_s - time.time() >= WAITING_ROOMS_S[0] / 2:
            # Out of a waiting room, not yet due: on to the next room.
            await self._pass_on(message, self._send_due(consumer, _forwarded(message), due_s))
            return "waiting"
        try:
            envelope, event = parse_envelope(message.body)
        except UnknownEvent as exc:
            log.error("event_dead_lettered", reason="unknown event", details=exc.details)
            await _dead_letter(message, "неизвестное или повреждённое событие", on_dead_letter)
            return "dead_lettered"
        lag.observe(max(0.0, (utcnow() - envelope.occurred_at).total_seconds()))
        structlog.contextvars.bind_contextvars(task_id=envelope.task_id, event_id=envelope.event_id)
        try:
            await handle(envelope, event)
        except TRANSIENT_ERRORS as exc:
            log.warning("event_requeued", error=repr(exc), retry_in_s=requeue_delay_s)
            await asyncio.sleep(requeue_delay_s)
            # To the back of the queue as a new message, not returned: RabbitMQ 4's quorum
            # queues dead-letter a message returned 20 times, which must count crashes,
            # not the minutes a dependency is away.
            await self._pass_on(message, self._send(self.queue_name(consumer), _forwarded(message)))
            return "requeued"
        except Exception as exc:
            dead = message.redelivered
            log.exception("event_failed", dead_lettered=dead)
            if not dead:
                await _settle(message.reject(requeue=True))
                return "retried"
            await _dead_letter(message, f"ошибка обработки: {type(exc).__name__}", on_dead_letter)
            return "dead_lettered"
        else:
            await _settle(message.ack())
            return "ok"
        finally:
            structlog.contextvars.unbind_contextvars("task_id", "event_id")

    async def _pass_on(self, message: AbstractIncomingMessage, send: Awaitable[None]) -> None:
        """Ack a message once `send` has put its copy in a queue (confirmed); if the broker
        is away, return it instead. A crash in between leaves both: consumers are
        idempotent."""
        try:
            await send
        except BROKER_ERRORS as exc:
            log.info("message_returned", error=repr(exc))
            await _settle(message.nack(requeue=True))
        else:
            await _settle(message.ack())

    async def close(self) -> None:
        """Close the connection; safe to call twice."""
        connection, self._connection, self._channel, self._exchange = (
            self._connection,
            None,
            None,
            None,
        )
        if connection is not None:
            await connection.close()


def _message(envelope: Envelope) -> aio_pika.Message:
    """A persistent message carrying an envelope, its identity and version in properties."""
    return aio_pika.Message(
        body=envelope.model_dump_json().encode(),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=envelope.event_id,
        type=envelope.type,
        timestamp=envelope.occurred_at,
        headers={"version": envelope.version, "task_id": envelope.task_id},
    )


def _forwarded(message: AbstractIncomingMessage) -> aio_pika.Message:
    """The same message, to be sent on (the broker's own headers left behind)."""
    headers = {k: v for k, v in (message.headers or {}).items() if not k.startswith("x-")}
    return aio_pika.Message(
        body=message.body,
        content_type=message.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message.message_id,
        type=message.type,
        timestamp=message.timestamp,
        headers=headers,
    )


def _due_s(message: AbstractIncomingMessage) -> float | None:
    due_ms = (message.headers or {}).get(NOT_BEFORE_HEADER)
    return due_ms / 1000 if isinstance(due_ms, int) else None


async def _declare_quorum(
    channel: AbstractChannel, name: str, arguments: dict[str, Any]
) -> AbstractQueue:
    try:
        return await channel.declare_queue(name, durable=True, arguments=arguments)
    except ChannelPreconditionFailed as exc:
        raise OutdatedQueue(name) from exc


async def _replace_outdated(connection: AbstractRobustConnection, queue: str) -> None:
    """Delete an outdated queue so that it is declared again, only if it holds nothing
    and nobody consumes it (the broker checks both); otherwise say how to upgrade."""
    try:
        async with connection.channel() as channel:
            await channel.queue_delete(queue, if_unused=True, if_empty=True)
    except ChannelPreconditionFailed as exc:
        log.error(
            "queue_needs_upgrade",
            queue=queue,
            hint="stop what publishes to it, let its consumers of the earlier version "
            "empty it, then start this version (docs/architecture.md, Upgrading)",
        )
        raise OutdatedQueue(queue) from exc
    log.info("outdated_queue_replaced", queue=queue)


async def _drain(
    consuming: list[tuple[AbstractQueue, str]], in_flight: set[asyncio.Task[Any]], drain_s: float
) -> None:
    """Stop taking messages, then wait up to `drain_s` for those being handled."""
    for queue, tag in consuming:
        try:
            await asyncio.wait_for(queue.cancel(tag), PUBLISH_TIMEOUT_S)
        except BROKER_ERRORS as exc:
            log.info("consumer_cancel_failed", error=repr(exc))
    if in_flight:
        log.info("draining", messages=len(in_flight), drain_s=drain_s)
        _, unfinished = await asyncio.wait(set(in_flight), timeout=drain_s)
        if unfinished:
            log.warning("drain_incomplete", handed_back=len(unfinished))


def _task_id_of(body: bytes) -> str | None:
    try:
        task_id = json.loads(body).get("task_id")
    except (ValueError, AttributeError):
        return None
    return task_id if isinstance(task_id, str) else None


async def _dead_letter(
    message: AbstractIncomingMessage, reason: str, on_dead_letter: DeadLetterHook | None
) -> None:
    task_id = _task_id_of(message.body)
    if on_dead_letter is not None and task_id is not None:
        try:
            await on_dead_letter(task_id, reason)
        except Exception:
            log.exception("dead_letter_hook_failed")
    await _settle(message.reject(requeue=False))


async def _settle(settlement: Awaitable[None]) -> None:
    """Ack, nack or reject; on a channel that died meanwhile the broker has already put
    the message back for redelivery, so there is nothing left to do."""
    try:
        await settlement
    except BROKER_DOWN as exc:
        log.info("message_redelivered_by_broker", error=repr(exc))
