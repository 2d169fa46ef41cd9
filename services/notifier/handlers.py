"""Results and failures become webhook deliveries, each stored with its first attempt.

A delivery's id is its `webhook-id`: derived from the event and the endpoint, so a
redelivered event creates nothing twice, and stable across retries so the CRM can
deduplicate. Every attempt is recorded on the delivery. Retries wait in the broker's
waiting rooms (SPEC §3 schedule, jitter, `Retry-After`), never in memory; `410 Gone` stops
the endpoint; after the last attempt a delivery is dead. A task is `done` when all
its deliveries succeeded, died or were stopped (`closing.py`).

Concurrent deliveries share their database round trips (`shared/group_commit.py`),
which is what lets one notifier keep up with a burst of results.

The same events raise alerts (`alerting.py`); their emails, webhooks and daily digests
are deliveries of the same kind, attempted and retried here, that no task waits for.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import aiohttp
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

from services.notifier import payloads
from services.notifier.alerting import Alerting, digest_sent, digests_due, raise_alerts
from services.notifier.closing import Closing, TaskClosings, closing_of
from services.notifier.endpoints import Directory, EndpointSlots
from services.notifier.retry import decide
from services.notifier.sending import attempt_record, send, send_email
from shared.amqp import Broker
from shared.connection import load_connection_settings
from shared.events import (
    CallAnalyzed,
    CallFailed,
    CallReviewed,
    CallSkipped,
    DeliveryDue,
    Envelope,
    Event,
    call_meta,
    utcnow,
)
from shared.group_commit import GroupFinder, GroupWriter
from shared.logging import get_logger
from shared.metrics import WorkerMetrics
from shared.mongo import CALLS, DELIVERIES, ENDPOINTS, Document
from shared.outbox import outbox_append
from shared.tasks import TaskStatus, moved
from shared.url_policy import UrlPolicy
from shared.webhooks import DELIVERY_FINISHED, counts_for_task

log = get_logger(__name__)

BUSY_RETRY_S = 1.0
DIGEST_CHECK_S = 60.0


@dataclass(frozen=True)
class Notifier:
    """What the handlers need, built by bootstrap."""

    db: AsyncDatabase[Document]
    broker: Broker
    writer: GroupWriter
    closings: TaskClosings
    task_reader: GroupFinder
    delivery_reader: GroupFinder  # whether a delivery is stored (by id)
    session: aiohttp.ClientSession
    policy: UrlPolicy
    schedule_s: tuple[float, ...]
    timeout_s: float = 15.0
    jitter: float = 0.1
    slots: EndpointSlots = field(default_factory=lambda: EndpointSlots(4))
    directory: Directory = field(default_factory=Directory)
    metrics: WorkerMetrics = field(default_factory=WorkerMetrics)
    public_url: str = ""  # of the web app, for the links in alerts
    timezone: str = "UTC"  # of the alerts' digest hour

    @property
    def alerting(self) -> Alerting:
        return Alerting(self.db, self.directory, self.public_url, self.timezone)


async def plan_deliveries(
    envelope: Envelope, event: Event, task: Document, *, deps: Notifier
) -> list[Document]:
    """The deliveries to the CRM an event needs (not stored yet)."""
    if isinstance(event, CallAnalyzed | CallReviewed):
        webhooks = await deps.directory.webhooks_for(deps.db, payloads.owners(task))
        reviewed = event.binding_ids if isinstance(event, CallReviewed) else None
        return payloads.analysis_deliveries(envelope, task, webhooks, reviewed=reviewed)
    if isinstance(event, CallFailed):
        connection = await load_connection_settings(deps.db)
        if connection.error_webhook is None:
            return []
        endpoint = connection.error_webhook.model_dump()
        return [payloads.error_delivery(envelope, task, event, endpoint)]
    return []


async def on_event(envelope: Envelope, event: Event, *, deps: Notifier) -> None:
    """Consumer of the notifier's queue: store an event's deliveries and make their first
    attempts, or make a due attempt.

    Acked once the deliveries are stored and attempted (or their retry is queued): a crash
    before only repeats idempotent steps, with the same webhook-ids.
    """
    if isinstance(event, DeliveryDue):
        await attempt(event.delivery_id, deps=deps)
        return
    if isinstance(event, CallSkipped):
        return  # reported on the task only
    task = await deps.task_reader.get(envelope.task_id)
    if task is None:
        log.error("task_missing")
        return
    deliveries = await plan_deliveries(envelope, event, task, deps=deps)
    if isinstance(event, CallAnalyzed | CallReviewed) and not deliveries:
        await deps.closings.close(Closing(envelope.task_id))
    deliveries += await raise_alerts(deps.alerting, envelope, event, task)
    await asyncio.gather(*(_store_and_attempt(deps, delivery) for delivery in deliveries))


async def send_digests(deps: Notifier, now: datetime | None = None) -> int:
    """Store and attempt the daily digests due by `now`; return how many."""
    due = await digests_due(deps.db, now or utcnow())
    for delivery, item_ids in due:
        await _store_and_attempt(deps, delivery)
        await digest_sent(deps.db, delivery["_id"], item_ids)
    return len(due)


async def send_digests_forever(deps: Notifier, *, every_s: float = DIGEST_CHECK_S) -> None:
    """Send the digests as they fall due, until cancelled; a database that blinked
    delays them to the next round."""
    while True:
        try:
            await send_digests(deps)
        except PyMongoError as exc:
            log.warning("digests_delayed", error=repr(exc))
        await asyncio.sleep(every_s)


async def consume(deps: Notifier, *, prefetch: int) -> None:
    """Consume the notifier's queue until cancelled; what cannot be processed is given up
    by `fail_poisoned`."""
    await deps.broker.consume(
        "notifier",
        functools.partial(on_event, deps=deps),
        prefetch=prefetch,
        on_dead_letter=functools.partial(fail_poisoned, deps),
        metrics=deps.metrics,
    )


async def fail_poisoned(deps: Notifier, subject_id: str, why: str) -> None:
    """Dead-letter hook; `subject_id` is a delivery's id (a due attempt) or a task's.

    An attempt that cannot be made kills its delivery, which the log shows and a person
    can replay, and closes it on its task. Results that cannot become deliveries fail
    their task with `delivery_failed`, announced by `call.failed` through the outbox.
    Nothing is left `delivering` for ever.
    """
    delivery = await deps.db[DELIVERIES].find_one({"_id": subject_id}, {"body": 0})
    if delivery is not None:
        if delivery["status"] not in DELIVERY_FINISHED:
            await _settle(deps, delivery, attempt_record(utcnow(), error=why), "dead")
        return
    task = await deps.db[CALLS].find_one({"_id": subject_id, "status": TaskStatus.DELIVERING})
    if task is None:
        return
    message = f"Не удалось отправить результаты в CRM: {why}"
    error = {"code": "delivery_failed", "message": message, "pipeline_stage": "delivery"}
    failed = Envelope.wrap(CallFailed(**call_meta(task), **error), task_id=subject_id)
    outbox_set, outbox_push = outbox_append(failed)
    await deps.db[CALLS].update_one(
        {"_id": subject_id, "status": TaskStatus.DELIVERING},
        moved(
            TaskStatus.FAILED,
            utcnow(),
            set_fields={"error": error, **outbox_set},
            push_fields=outbox_push,
        ),
    )
    log.error("delivery_failed", reason=why)


async def _store_and_attempt(deps: Notifier, delivery: Document) -> None:
    """Attempt a planned delivery, then store it with that attempt's outcome: one write
    where storing it first and recording the attempt took two.

    Until it is stored, the event that planned it stays unacknowledged: a crash in
    between sends the same webhook-id again when the event comes back, as a crash
    between an attempt and its record always did (receivers deduplicate on it). An
    event that comes again finds its delivery stored and carries on from there.
    """
    if await deps.delivery_reader.get(delivery["_id"]) is not None:
        await attempt(delivery["_id"], deps=deps)
        return
    await _attempt_stored(deps, delivery, stored=False)


async def attempt_later(deps: Notifier, webhook_id: str, *, delay_s: float) -> None:
    """Queue the next attempt: it waits in the broker, not here."""
    envelope = Envelope.wrap(DeliveryDue(delivery_id=webhook_id), task_id=webhook_id)
    await deps.broker.send_later("notifier", envelope, delay_s=delay_s)


async def attempt(webhook_id: str, *, deps: Notifier) -> None:
    """Attempt a delivery and decide: succeeded, stopped, retry later, or dead."""
    delivery = await deps.db[DELIVERIES].find_one({"_id": webhook_id})
    if delivery is None:
        return
    if delivery["status"] in DELIVERY_FINISHED:
        if not counts_for_task(delivery):
            return
        # Finished, but the notifier may have stopped before telling the task.
        await deps.closings.close(closing_of(delivery, delivery["status"], delivery["updated_at"]))
        return
    await _attempt_stored(deps, delivery)


async def _attempt_stored(deps: Notifier, delivery: Document, *, stored: bool = True) -> None:
    """Attempt a delivery and record the outcome; one not `stored` yet is stored with it."""
    webhook_id = delivery["_id"]
    await deps.directory.refresh(deps.db)
    if delivery["url"] in deps.directory.gone:
        await _settle(deps, delivery, None, "stopped", stored=stored)
        return
    if not await deps.slots.take(delivery["url"]):
        # The endpoint is busy: wait in the broker, not in a prefetch slot.
        if not stored:
            await _store(deps, delivery, {})
        await attempt_later(deps, webhook_id, delay_s=BUSY_RETRY_S)
        return
    try:
        if delivery.get("channel") == "email":
            smtp = (await load_connection_settings(deps.db)).smtp
            record = await send_email(smtp, deps.policy, delivery, timeout_s=deps.timeout_s)
            retry_after = None
        else:
            record, retry_after = await send(
                deps.session, deps.policy, delivery, timeout_s=deps.timeout_s
            )
    finally:
        deps.slots.give_back(delivery["url"])
    decision = decide(
        record["status_code"],
        refused=record["refused"],
        round_attempts=delivery["round_attempts"],
        schedule_s=deps.schedule_s,
        retry_after_s=retry_after,
        jitter=deps.jitter,
    )
    if decision.status == "stopped":  # the endpoint said 410 Gone: stop sending it anything
        await deps.db[ENDPOINTS].update_one(
            {"_id": delivery["url"]}, {"$set": {"gone": True, "since": utcnow()}}, upsert=True
        )
        deps.directory.gone.add(delivery["url"])
    retrying = decision.status == "retrying"
    await _settle(
        deps,
        delivery,
        record,
        decision.status,
        next_in_s=decision.delay_s if retrying else None,
        stored=stored,
    )
    if retrying:
        await attempt_later(deps, webhook_id, delay_s=decision.delay_s)


async def _store(deps: Notifier, delivery: Document, update: Document) -> None:
    """Insert a new delivery as `update` (of `_settle`) leaves it; if a second handling
    of its event stored it meanwhile, apply `update` to that one instead."""
    document = {**delivery, **update.get("$set", {})}
    if "$push" in update:
        document["attempts"] = [*delivery["attempts"], update["$push"]["attempts"]]
        document["round_attempts"] = delivery["round_attempts"] + 1
    try:
        await deps.writer.insert(DELIVERIES, document)
    except DuplicateKeyError:
        if update:
            await deps.writer.update(DELIVERIES, {"_id": delivery["_id"]}, update)


async def _settle(
    deps: Notifier,
    delivery: Document,
    record: Document | None,
    status: str,
    *,
    next_in_s: float | None = None,
    stored: bool = True,
) -> None:
    """Record an attempt's outcome (`record`: the attempt, if one was made) on a stored
    delivery, or store a new one with it; a finished delivery closes on its task."""
    now = utcnow()
    update: Document = {
        "$set": {
            "status": status,
            "updated_at": now,
            "next_attempt_at": None if next_in_s is None else now + timedelta(seconds=next_in_s),
        },
    }
    if record is not None:
        update["$push"] = {"attempts": record}
        update["$inc"] = {"round_attempts": 1}
    if stored:
        await deps.writer.update(DELIVERIES, {"_id": delivery["_id"]}, update)
    else:
        await _store(deps, delivery, update)
    log.info(
        "delivery_attempted",
        delivery_id=delivery["_id"],
        status=status,
        status_code=record and record["status_code"],
    )
    deps.metrics.outcomes.labels("delivery", status).inc()
    if status in DELIVERY_FINISHED and counts_for_task(delivery):
        await deps.closings.close(closing_of(delivery, status, now))
