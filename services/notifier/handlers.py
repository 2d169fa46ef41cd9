"""Results and failures become webhook deliveries, each stored before it is sent.

A delivery's id is its `webhook-id`: derived from the event and the endpoint, so a
redelivered event creates nothing twice, and stable across retries so the CRM can
deduplicate. Every attempt is recorded on the delivery. Retries wait in broker delay
queues (SPEC §3 schedule, jitter, `Retry-After`), never in memory; `410 Gone` stops
the endpoint; after the last attempt a delivery is dead. A task is `done` when all
its deliveries succeeded, died or were stopped.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

import aiohttp
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError
from yarl import URL

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
from shared.logging import get_logger
from shared.mongo import BINDINGS, DELIVERIES, ENDPOINTS, TABLES, Document, calls
from shared.url_policy import UrlPolicy, UrlRefused
from shared.webhooks import signed_headers

log = get_logger(__name__)

TERMINAL = ("succeeded", "dead", "stopped")
SNIPPET_BYTES = 2048
BUSY_RETRY_S = 1.0
MAX_RETRY_AFTER_S = 24 * 3600.0


@dataclass
class EndpointSlots:
    """At most `limit` deliveries in flight per endpoint, so a slow CRM cannot starve others."""

    limit: int
    in_flight: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def try_take(self, url: str) -> bool:
        if self.in_flight[url] >= self.limit:
            return False
        self.in_flight[url] += 1
        return True

    def give_back(self, url: str) -> None:
        self.in_flight[url] -= 1


@dataclass
class Directory:
    """Webhook endpoints of bindings and tables, and endpoints gone (410), read at most
    every `ttl_s`: one query per refresh instead of one per delivery."""

    ttl_s: float = 2.0
    webhooks: dict[str, Document] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    loaded_at: float = -1e9

    async def webhooks_for(
        self, db: AsyncDatabase[Document], owners: list[str]
    ) -> dict[str, Document]:
        """Webhooks of these bindings/tables; one not seen yet forces a fresh read."""
        await self.refresh(db)
        if any(owner not in self.webhooks for owner in owners):
            await self.refresh(db, force=True)
        return self.webhooks

    async def refresh(self, db: AsyncDatabase[Document], *, force: bool = False) -> None:
        if not force and time.monotonic() - self.loaded_at < self.ttl_s:
            return
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
    session: aiohttp.ClientSession
    policy: UrlPolicy
    schedule_s: tuple[float, ...]
    delay_queues: tuple[str, ...]
    timeout_s: float = 15.0
    jitter: float = 0.1
    slots: EndpointSlots = field(default_factory=lambda: EndpointSlots(4))
    directory: Directory = field(default_factory=Directory)


# What a webhook needs of a task: never the transcript, which can be large.
_TASK_FIELDS = {"results": 1, **{name: 1 for name in CallMeta.model_fields}}


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
            "table": {"id": row["table_id"], "name": row["name"], "row": row["row"]},
        }
        planned.append((webhook_id, "analytics.completed", webhooks[row["table_id"]], body))
    return [_delivery(envelope, *item) for item in planned]


def _delivery(
    envelope: Envelope, webhook_id: str, kind: str, endpoint: Document, body: Document
) -> Document:
    now = utcnow()
    return {
        "_id": webhook_id,
        "task_id": envelope.task_id,
        "call_id": body.get("call_id"),
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
    task = await calls(deps.db).find_one({"_id": envelope.task_id}, _TASK_FIELDS)
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
    if isinstance(event, CallAnalyzed):
        # How many deliveries must end before the task is done (set once per task).
        await calls(deps.db).update_one(
            {"_id": envelope.task_id, "deliveries_open": {"$exists": False}},
            {"$set": {"deliveries_open": len(deliveries)}},
        )
        if not deliveries:
            await _close_task(deps, envelope.task_id, entry=None)
            return
    fresh = await _store(deps, deliveries)
    await asyncio.gather(*(_attempt_stored(deps, delivery) for delivery in fresh))


async def _store(deps: Notifier, deliveries: list[Document]) -> list[Document]:
    """Insert the planned deliveries; return the ones still to attempt (new or unfinished)."""
    if not deliveries:
        return []
    try:
        await deps.db[DELIVERIES].insert_many(deliveries, ordered=False)
        return deliveries
    except BulkWriteError as exc:
        if any(error["code"] != 11000 for error in exc.details.get("writeErrors", [])):
            raise
    # Some existed: this event came before. Attempt what is not finished yet.
    return (
        await deps.db[DELIVERIES]
        .find({"_id": {"$in": [d["_id"] for d in deliveries]}, "status": {"$nin": list(TERMINAL)}})
        .to_list()
    )


async def attempt_later(deps: Notifier, webhook_id: str, *, step: int, delay_s: float) -> None:
    """Queue the next attempt: it waits in the broker's delay queue of `step`, not here."""
    envelope = Envelope.wrap(DeliveryDue(delivery_id=webhook_id), task_id=webhook_id)
    await deps.broker.send_to_queue(deps.delay_queues[step], envelope, delay_s=delay_s)


async def _close_task(deps: Notifier, task_id: str, *, entry: Document | None) -> None:
    """Count one finished delivery (if `entry`) and mark the task done when none is left.

    One write: the open count, the timeline entry and the status change together.
    """
    now = utcnow()
    added = [entry] if entry is not None else []
    left = {"$subtract": ["$deliveries_open", len(added)]}
    finishes = {"$and": [{"$lte": [left, 0]}, {"$eq": ["$status", "delivering"]}]}
    await calls(deps.db).update_one(
        {"_id": task_id} if entry is None else {"_id": task_id, "deliveries_open": {"$gt": 0}},
        [
            {
                "$set": {
                    "status": {"$cond": [finishes, "done", "$status"]},
                    "updated_at": now,
                    "timeline": {
                        "$concatArrays": [
                            "$timeline",
                            {"$literal": added},
                            {
                                "$cond": [
                                    finishes,
                                    {"$literal": [{"status": "done", "at": now}]},
                                    [],
                                ]
                            },
                        ]
                    },
                    "deliveries_open": {"$max": [0, left]},
                }
            }
        ],
    )


def _retry_after_s(header: str | None) -> float | None:
    if header and header.strip().isdigit():
        return min(float(header.strip()), MAX_RETRY_AFTER_S)
    return None


async def _send(deps: Notifier, delivery: Document) -> tuple[Document, float | None]:
    """One attempt: the record of it and any Retry-After the endpoint asked for."""
    at = utcnow()
    started = time.perf_counter()
    record: Document = {
        "at": at,
        "status_code": None,
        "latency_ms": None,
        "response": None,
        "error": None,
        "refused": False,
    }
    retry_after = None
    try:
        deps.policy.check_url(URL(delivery["url"]))
        headers = signed_headers(
            delivery["secret"], webhook_id=delivery["_id"], body=delivery["body"], at=at
        )
        async with deps.session.post(
            delivery["url"],
            data=delivery["body"].encode(),
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=deps.timeout_s),
        ) as response:
            snippet = await response.content.read(SNIPPET_BYTES)
            record["status_code"] = response.status
            record["response"] = snippet.decode(errors="replace")
            retry_after = _retry_after_s(response.headers.get("Retry-After"))
    except UrlRefused as exc:
        record["error"], record["refused"] = exc.message, True
    except (TimeoutError, aiohttp.ClientError) as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"[:500]
    record["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return record, retry_after


async def attempt(webhook_id: str, *, deps: Notifier) -> None:
    """Attempt a delivery and decide: succeeded, stopped, retry later, or dead."""
    delivery = await deps.db[DELIVERIES].find_one({"_id": webhook_id})
    if delivery is None or delivery["status"] in TERMINAL:
        return
    await _attempt_stored(deps, delivery)


async def _attempt_stored(deps: Notifier, delivery: Document) -> None:
    webhook_id = delivery["_id"]
    await deps.directory.refresh(deps.db)
    if delivery["url"] in deps.directory.gone:
        await _settle(deps, delivery, None, "stopped")
        return
    if not deps.slots.try_take(delivery["url"]):
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
    await deps.db[DELIVERIES].update_one({"_id": delivery["_id"]}, update)
    log.info(
        "delivery_attempted",
        delivery_id=delivery["_id"],
        status=status,
        status_code=record and record["status_code"],
    )
    if status in TERMINAL:
        entry = {
            "status": f"webhook_{status}",
            "at": now,
            "delivery_id": delivery["_id"],
            "type": delivery["type"],
        }
        if delivery["type"] == "call.failed":  # a failed task is already final
            await calls(deps.db).update_one(
                {"_id": delivery["task_id"]}, {"$push": {"timeline": entry}}
            )
        else:
            await _close_task(deps, delivery["task_id"], entry=entry)
