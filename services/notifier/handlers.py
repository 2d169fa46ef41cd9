"""Results and failures become webhook deliveries, each stored before it is sent.

A delivery's id is its `webhook-id`: derived from the event and the endpoint, so a
redelivered event creates nothing twice, and stable across retries so the CRM can
deduplicate. Every attempt is recorded on the delivery. Retries wait in broker delay
queues (SPEC §3 schedule, jitter, `Retry-After`), never in memory; `410 Gone` stops
the endpoint; after the last attempt a delivery is dead. A task is `done` when all
its deliveries succeeded, died or were stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

import aiohttp
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError
from yarl import URL

from shared.amqp import Broker
from shared.connection import load_connection_settings
from shared.events import (
    CallAnalyzed,
    CallFailed,
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
    envelope: Envelope, task: Document, db: AsyncDatabase[Document]
) -> list[Document]:
    results = task.get("results") or {}
    planned = []
    for checklist in results.get("checklists", []):
        binding = await db[BINDINGS].find_one({"_id": checklist["binding_id"]})
        if binding is None:
            continue  # deleted since the analysis: nowhere to send
        webhook_id = delivery_id(envelope.event_id, checklist["binding_id"])
        body = {
            **_common(envelope, task, "checklist.completed", webhook_id),
            "checklist": checklist,
            "metrics": results.get("metrics"),
        }
        planned.append((webhook_id, "checklist.completed", binding["webhook"], body))
    for row in results.get("tables", []):
        table = await db[TABLES].find_one({"_id": row["table_id"]})
        if table is None:
            continue
        webhook_id = delivery_id(envelope.event_id, row["table_id"])
        body = {
            **_common(envelope, task, "analytics.completed", webhook_id),
            "table": {"id": row["table_id"], "name": row["name"], "row": row["row"]},
        }
        planned.append((webhook_id, "analytics.completed", table["webhook"], body))
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
    task = await calls(deps.db).find_one({"_id": envelope.task_id})
    if task is None:
        log.error("task_missing")
        return []
    if isinstance(event, CallAnalyzed):
        return await _analysis_deliveries(envelope, task, deps.db)
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
    """Consumer of the notifier's queue: plan and store deliveries, or attempt one.

    Acked after the deliveries are stored and their first attempts are queued, so a crash
    in between only repeats idempotent steps.
    """
    if isinstance(event, DeliveryDue):
        await attempt(event.delivery_id, deps=deps)
        return
    if isinstance(event, CallSkipped):
        return  # reported on the task only
    deliveries = await plan_deliveries(envelope, event, deps=deps)
    for delivery in deliveries:
        # A duplicate key: stored by an earlier delivery of this same event.
        with contextlib.suppress(DuplicateKeyError):
            await deps.db[DELIVERIES].insert_one(delivery)
    pending = (
        await deps.db[DELIVERIES]
        .find(
            {"_id": {"$in": [d["_id"] for d in deliveries]}, "status": {"$nin": list(TERMINAL)}},
            {"_id": 1},
        )
        .to_list()
    )
    for delivery in pending:
        await queue_attempt(deps, delivery["_id"])
    if isinstance(event, CallAnalyzed):
        await finish_task_if_delivered(deps, envelope.task_id)


async def queue_attempt(
    deps: Notifier, webhook_id: str, *, delay_queue: str | None = None, delay_s: float | None = None
) -> None:
    """Ask for an attempt now, or after a delay in a broker delay queue."""
    envelope = Envelope.wrap(DeliveryDue(delivery_id=webhook_id), task_id=webhook_id)
    queue = delay_queue or deps.broker.queue_name("notifier")
    await deps.broker.send_to_queue(queue, envelope, delay_s=delay_s)


async def finish_task_if_delivered(deps: Notifier, task_id: str) -> None:
    """Mark an analysed task done once none of its deliveries is still under way."""
    open_count = await deps.db[DELIVERIES].count_documents(
        {"task_id": task_id, "status": {"$nin": list(TERMINAL)}}
    )
    if open_count:
        return
    now = utcnow()
    await calls(deps.db).update_one(
        {"_id": task_id, "status": "delivering"},
        {
            "$set": {"status": "done", "updated_at": now},
            "$push": {"timeline": {"status": "done", "at": now}},
        },
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
    if await deps.db[ENDPOINTS].find_one({"_id": delivery["url"], "gone": True}):
        await _settle(deps, delivery, None, "stopped")
        return
    if not deps.slots.try_take(delivery["url"]):
        # The endpoint is busy: wait in the broker, not in a prefetch slot.
        await queue_attempt(
            deps, webhook_id, delay_queue=deps.delay_queues[0], delay_s=BUSY_RETRY_S
        )
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
        await _settle(deps, delivery, record, "stopped")
    elif record["refused"] or delivery["round_attempts"] >= len(deps.schedule_s):
        await _settle(deps, delivery, record, "dead")
    else:
        step = delivery["round_attempts"]
        base = deps.schedule_s[step]
        delay = max(retry_after or 0.0, base * (1 + random.uniform(-deps.jitter, deps.jitter)))
        await _settle(deps, delivery, record, "retrying", next_in_s=delay)
        await queue_attempt(deps, webhook_id, delay_queue=deps.delay_queues[step], delay_s=delay)


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
        await calls(deps.db).update_one(
            {"_id": delivery["task_id"]},
            {
                "$push": {
                    "timeline": {
                        "status": f"webhook_{status}",
                        "at": now,
                        "delivery_id": delivery["_id"],
                        "type": delivery["type"],
                    }
                }
            },
        )
        await finish_task_if_delivered(deps, delivery["task_id"])
