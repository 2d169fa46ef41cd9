"""Results and failures become webhook deliveries, each stored before it is sent.

A delivery's id is its `webhook-id`: derived from the event and the endpoint, so a
redelivered event creates nothing twice, and stable across retries so the CRM can
deduplicate. Every attempt is recorded on the delivery. Retries wait in broker delay
queues (SPEC §3 schedule, jitter, `Retry-After`), never in memory; `410 Gone` stops
the endpoint; after the last attempt a delivery is dead. A task is `done` when all
its deliveries succeeded, died or were stopped: each finished delivery adds its id to
the task's `deliveries_closed` (idempotent) and carries how many the task has.

Concurrent deliveries share their database round trips (`shared/group_commit.py`),
which is what lets one notifier keep up with a burst of results.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import aiohttp
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from shared.amqp import Broker
from shared.connection import load_connection_settings
from shared.events import (
    CallAnalyzed,
    CallFailed,
    CallMeta,
    CallSkipped,
    DeliveryDue,
    Envelope,
    Event,
    call_meta,
    utcnow,
)
from shared.group_commit import GroupFinder, GroupWriter
from shared.http import retry_after_s
from shared.logging import get_logger
from shared.metrics import WorkerMetrics
from shared.mongo import BINDINGS, CALLS, DELIVERIES, ENDPOINTS, TABLES, Document
from shared.outbox import outbox_append
from shared.tasks import TaskStatus, moved, timeline_entry
from shared.url_policy import UrlPolicy, UrlRefused, parse_url
from shared.webhooks import DELIVERY_FINISHED, signed_headers

log = get_logger(__name__)

SNIPPET_BYTES = 2048
BUSY_RETRY_S = 1.0
MAX_RETRY_AFTER_S = 24 * 3600.0


class EndpointSlots:
    """At most `limit` deliveries in flight per endpoint, so a slow CRM cannot starve others.

    As many more may wait here for a free slot; past that, `take` says no and the
    delivery waits in the broker instead of holding a prefetch slot.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._gates: dict[str, asyncio.Semaphore] = {}
        self._holders: dict[str, int] = defaultdict(int)  # in flight or waiting

    async def take(self, url: str) -> bool:
        if self._holders[url] >= 2 * self.limit:
            return False
        self._holders[url] += 1
        try:
            await self._gates.setdefault(url, asyncio.Semaphore(self.limit)).acquire()
        except BaseException:
            self._holders[url] -= 1
            raise
        return True

    def give_back(self, url: str) -> None:
        self._gates[url].release()
        self._holders[url] -= 1


@dataclass
class Directory:
    """Webhook endpoints of bindings and tables, and endpoints gone (410), read at most
    every `ttl_s`: a few queries per refresh instead of one per delivery, and one
    refresh shared by every delivery that finds the cache stale."""

    ttl_s: float = 2.0
    webhooks: dict[str, Document] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    loaded_at: float = -1e9
    _loading: asyncio.Task[None] | None = None

    async def webhooks_for(
        self, db: AsyncDatabase[Document], owners: list[str]
    ) -> dict[str, Document]:
        """Webhooks of these bindings/tables; one not seen yet forces a fresh read."""
        await self.refresh(db)
        if any(owner not in self.webhooks for owner in owners):
            await self._load(db)
        return self.webhooks

    async def refresh(self, db: AsyncDatabase[Document]) -> None:
        if time.monotonic() - self.loaded_at < self.ttl_s:
            return
        if self._loading is None:
            self._loading = asyncio.create_task(self._load(db))
        loading = self._loading
        try:
            await asyncio.shield(loading)
        finally:
            if self._loading is loading and loading.done():
                self._loading = None

    async def _load(self, db: AsyncDatabase[Document]) -> None:
        webhooks: dict[str, Document] = {}
        for collection in (BINDINGS, TABLES):
            async for item in db[collection].find({}, {"webhook": 1}):
                webhooks[item["_id"]] = item["webhook"]
        gone = {item["_id"] async for item in db[ENDPOINTS].find({"gone": True}, {"_id": 1})}
        self.webhooks, self.gone, self.loaded_at = webhooks, gone, time.monotonic()


@dataclass(frozen=True)
class Notifier:
    """What the handlers need, built by bootstrap."""

    db: AsyncDatabase[Document]
    broker: Broker
    writer: GroupWriter
    task_reader: GroupFinder
    session: aiohttp.ClientSession
    policy: UrlPolicy
    schedule_s: tuple[float, ...]
    delay_queues: tuple[str, ...]
    timeout_s: float = 15.0
    jitter: float = 0.1
    slots: EndpointSlots = field(default_factory=lambda: EndpointSlots(4))
    directory: Directory = field(default_factory=Directory)
    metrics: WorkerMetrics = field(default_factory=WorkerMetrics)


# What a webhook needs of a task: never the transcript, which can be large.
TASK_FIELDS = {
    "results": 1,
    "revision": 1,
    "reviewed_by": 1,
    **{name: 1 for name in CallMeta.model_fields},
}


def delivery_id(event_id: str, owner: str) -> str:
    """The stable webhook-id of one endpoint's copy of one event."""
    return "msg_" + hashlib.sha256(f"{event_id}:{owner}".encode()).hexdigest()[:24]


def _common(envelope: Envelope, task: Document, kind: str, webhook_id: str) -> Document:
    return {
        "type": kind,
        "event_id": webhook_id,
        "occurred_at": envelope.occurred_at.isoformat(),
        "task_id": envelope.task_id,
        **call_meta(task),
    }


def _revision(task: Document) -> Document:
    """Which version of the call's results this is: 1 first, one more at every re-analysis
    or correction; `reviewed_by` names the person behind a correction."""
    return {"revision": task.get("revision") or 1, "reviewed_by": task.get("reviewed_by")}


async def _analysis_deliveries(
    envelope: Envelope, task: Document, deps: Notifier
) -> list[Document]:
    results = task.get("results") or {}
    owners = [c["binding_id"] for c in results.get("checklists", [])] + [
        t["table_id"] for t in results.get("tables", [])
    ]
    webhooks = await deps.directory.webhooks_for(deps.db, owners)
    planned = []
    for checklist in results.get("checklists", []):
        if checklist["binding_id"] not in webhooks:
            continue  # deleted since the analysis: nowhere to send
        webhook_id = delivery_id(envelope.event_id, checklist["binding_id"])
        body = {
            **_common(envelope, task, "checklist.completed", webhook_id),
            **_revision(task),
            "checklist": checklist,
            "metrics": results.get("metrics"),
        }
        planned.append((webhook_id, "checklist.completed", webhooks[checklist["binding_id"]], body))
    for row in results.get("tables", []):
        if row["table_id"] not in webhooks:
            continue
        webhook_id = delivery_id(envelope.event_id, row["table_id"])
        body = {
            **_common(envelope, task, "analytics.completed", webhook_id),
            **_revision(task),
            "table": {"id": row["table_id"], "name": row["name"], "row": row["row"]},
        }
        planned.append((webhook_id, "analytics.completed", webhooks[row["table_id"]], body))
    return [_delivery(envelope, *item, of=len(planned)) for item in planned]


def _delivery(
    envelope: Envelope,
    webhook_id: str,
    kind: str,
    endpoint: Document,
    body: Document,
    *,
    of: int = 1,
) -> Document:
    now = utcnow()
    return {
        "_id": webhook_id,
        "task_id": envelope.task_id,
        "task_deliveries": of,
        "call_id": body.get("call_id"),
        "manager_id": body.get("manager_id"),  # who may see it (the back office's rule)
        "type": kind,
        "url": endpoint["url"],
        "secret": endpoint["secret"],
        "body": json.dumps(body, ensure_ascii=False, separators=(",", ":")),
        "status": "pending",
        "attempts": [],
        "round_attempts": 0,
        "created_at": now,
        "updated_at": now,
    }


async def plan_deliveries(envelope: Envelope, event: Event, *, deps: Notifier) -> list[Document]:
    """The deliveries an event needs (not stored yet)."""
    task = await deps.task_reader.get(envelope.task_id)
    if task is None:
        log.error("task_missing")
        return []
    if isinstance(event, CallAnalyzed):
        return await _analysis_deliveries(envelope, task, deps)
    if isinstance(event, CallFailed):
        connection = await load_connection_settings(deps.db)
        if connection.error_webhook is None:
            return []
        webhook_id = delivery_id(envelope.event_id, "error_webhook")
        body = {
            **_common(envelope, task, "call.failed", webhook_id),
            "error": {"code": event.code, "message": event.message, "stage": event.pipeline_stage},
        }
        return [
            _delivery(
                envelope, webhook_id, "call.failed", connection.error_webhook.model_dump(), body
            )
        ]
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
    deliveries = await plan_deliveries(envelope, event, deps=deps)
    if isinstance(event, CallAnalyzed) and not deliveries:
        await _close_task(deps, envelope.task_id)
        return
    await asyncio.gather(*(_store_and_attempt(deps, delivery) for delivery in deliveries))


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
            await _settle(deps, delivery, _attempt_record(utcnow(), error=why), "dead")
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
    """Store a planned delivery, then attempt it; if it exists (this event came before),
    carry on from where the stored one is."""
    try:
        await deps.writer.insert(DELIVERIES, delivery)
    except DuplicateKeyError:
        await attempt(delivery["_id"], deps=deps)
        return
    await _attempt_stored(deps, delivery)


async def attempt_later(deps: Notifier, webhook_id: str, *, step: int, delay_s: float) -> None:
    """Queue the next attempt: it waits in the broker's delay queue of `step`, not here."""
    envelope = Envelope.wrap(DeliveryDue(delivery_id=webhook_id), task_id=webhook_id)
    await deps.broker.send_to_queue(deps.delay_queues[step], envelope, delay_s=delay_s)


async def _close_task(
    deps: Notifier,
    task_id: str,
    *,
    delivery: Document | None = None,
    status: str = "",
    at: datetime | None = None,
) -> None:
    """Record one finished delivery (if any) on its task's timeline, and mark a
    delivering task done when all of its deliveries are finished (a failed task stays
    failed).

    One write: the closed list, the timeline entry and the status change together. A
    delivery already on the list matches nothing, so closing twice is harmless; a
    redelivery takes it off the list again.
    """
    now = utcnow()
    closed: Document = {"$ifNull": ["$deliveries_closed", []]}
    query: Document = {"_id": task_id}
    total, added = 0, []
    if delivery is not None:
        query["deliveries_closed"] = {"$ne": delivery["_id"]}
        closed = {"$concatArrays": [closed, [delivery["_id"]]]}
        total = delivery["task_deliveries"]
        added = [
            {
                "status": f"webhook_{status}",
                "at": at or now,
                "delivery_id": delivery["_id"],
                "type": delivery["type"],
            }
        ]
    finishes = {
        "$and": [
            {"$gte": [{"$size": closed}, total]},
            {"$eq": ["$status", TaskStatus.DELIVERING.value]},
        ]
    }
    await deps.writer.update(
        CALLS,
        query,
        [
            {
                "$set": {
                    "status": {"$cond": [finishes, TaskStatus.DONE.value, "$status"]},
                    "updated_at": now,
                    "timeline": {
                        "$concatArrays": [
                            "$timeline",
                            {"$literal": added},
                            {
                                "$cond": [
                                    finishes,
                                    {"$literal": [timeline_entry(TaskStatus.DONE, now)]},
                                    [],
                                ]
                            },
                        ]
                    },
                    "deliveries_closed": closed,
                }
            }
        ],
    )


def _attempt_record(at: datetime, *, error: str | None = None) -> Document:
    """An attempt as the delivery log keeps it; `_send` fills in what the endpoint said."""
    return {
        "at": at,
        "status_code": None,
        "latency_ms": None,
        "response": None,
        "error": error,
        "refused": False,
    }


async def _send(deps: Notifier, delivery: Document) -> tuple[Document, float | None]:
    """One attempt: the record of it and any Retry-After the endpoint asked for."""
    at = utcnow()
    started = time.perf_counter()
    record = _attempt_record(at)
    retry_after = None
    try:
        url = parse_url(delivery["url"])  # what is checked is what is sent to
        deps.policy.check_url(url)
        headers = signed_headers(
            delivery["secret"], webhook_id=delivery["_id"], body=delivery["body"], at=at
        )
        async with deps.session.post(
            url,
            data=delivery["body"].encode(),
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=deps.timeout_s),
        ) as response:
            snippet = await response.content.read(SNIPPET_BYTES)
            record["status_code"] = response.status
            record["response"] = snippet.decode(errors="replace")
            retry_after = retry_after_s(
                response.headers.get("Retry-After"), at_most_s=MAX_RETRY_AFTER_S
            )
    except UrlRefused as exc:
        record["error"], record["refused"] = exc.message, True
    except (TimeoutError, aiohttp.ClientError) as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"[:500]
    record["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return record, retry_after


async def attempt(webhook_id: str, *, deps: Notifier) -> None:
    """Attempt a delivery and decide: succeeded, stopped, retry later, or dead."""
    delivery = await deps.db[DELIVERIES].find_one({"_id": webhook_id})
    if delivery is None:
        return
    if delivery["status"] in DELIVERY_FINISHED:
        # Finished, but the notifier may have stopped before telling the task.
        await _close_task(
            deps,
            delivery["task_id"],
            delivery=delivery,
            status=delivery["status"],
            at=delivery["updated_at"],
        )
        return
    await _attempt_stored(deps, delivery)


async def _attempt_stored(deps: Notifier, delivery: Document) -> None:
    webhook_id = delivery["_id"]
    await deps.directory.refresh(deps.db)
    if delivery["url"] in deps.directory.gone:
        await _settle(deps, delivery, None, "stopped")
        return
    if not await deps.slots.take(delivery["url"]):
        # The endpoint is busy: wait in the broker, not in a prefetch slot.
        await attempt_later(deps, webhook_id, step=0, delay_s=BUSY_RETRY_S)
        return
    try:
        record, retry_after = await _send(deps, delivery)
    finally:
        deps.slots.give_back(delivery["url"])
    code = record["status_code"]
    if code is not None and 200 <= code < 300:
        await _settle(deps, delivery, record, "succeeded")
    elif code == 410:
        await deps.db[ENDPOINTS].update_one(
            {"_id": delivery["url"]}, {"$set": {"gone": True, "since": utcnow()}}, upsert=True
        )
        deps.directory.gone.add(delivery["url"])
        await _settle(deps, delivery, record, "stopped")
    elif record["refused"] or delivery["round_attempts"] >= len(deps.schedule_s):
        await _settle(deps, delivery, record, "dead")
    else:
        step = delivery["round_attempts"]
        base = deps.schedule_s[step]
        delay = max(retry_after or 0.0, base * (1 + random.uniform(-deps.jitter, deps.jitter)))
        await _settle(deps, delivery, record, "retrying", next_in_s=delay)
        await attempt_later(deps, webhook_id, step=step, delay_s=delay)


async def _settle(
    deps: Notifier,
    delivery: Document,
    record: Document | None,
    status: str,
    *,
    next_in_s: float | None = None,
) -> None:
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
    await deps.writer.update(DELIVERIES, {"_id": delivery["_id"]}, update)
    log.info(
        "delivery_attempted",
        delivery_id=delivery["_id"],
        status=status,
        status_code=record and record["status_code"],
    )
    deps.metrics.outcomes.labels("delivery", status).inc()
    if status in DELIVERY_FINISHED:
        await _close_task(deps, delivery["task_id"], delivery=delivery, status=status, at=now)
