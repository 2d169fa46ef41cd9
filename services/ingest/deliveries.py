"""The webhook delivery log of SPEC §4.1: list with filters, and replay."""

from __future__ import annotations

from pymongo.asynchronous.database import AsyncDatabase

from services.ingest.handlers import iso
from shared.amqp import Broker
from shared.errors import InvalidRequest, NotFound, Unavailable
from shared.events import DeliveryDue, Envelope, utcnow
from shared.mongo import DELIVERIES, ENDPOINTS, Document, calls

STATUSES = ("pending", "retrying", "succeeded", "dead", "stopped")
FINISHED = ("succeeded", "dead", "stopped")
MAX_PAGE = 200
_HIDDEN = {"secret": 0, "body": 0}


def view(delivery: Document) -> Document:
    """A delivery as the log shows it: no secret, times in ISO."""
    return {
        "id": delivery["_id"],
        "task_id": delivery["task_id"],
        "call_id": delivery.get("call_id"),
        "type": delivery["type"],
        "url": delivery["url"],
        "status": delivery["status"],
        "next_attempt_at": iso(delivery.get("next_attempt_at")),
        "created_at": iso(delivery["created_at"]),
        "updated_at": iso(delivery["updated_at"]),
        "attempts": [
            {**attempt, "at": iso(attempt["at"])} for attempt in delivery.get("attempts", [])
        ],
    }


async def list_deliveries(
    db: AsyncDatabase[Document], *, filters: dict[str, str], limit: int, offset: int
) -> Document:
    """Newest first, filtered by status, endpoint URL, call or task."""
    query: Document = {}
    if "status" in filters:
        if filters["status"] not in STATUSES:
            raise InvalidRequest(
                "Неизвестный статус доставки",
                details=[{"field": "status", "message": f"один из: {', '.join(STATUSES)}"}],
            )
        query["status"] = filters["status"]
    for field, key in (("endpoint", "url"), ("call_id", "call_id"), ("task_id", "task_id")):
        if field in filters:
            query[key] = filters[field]
    if not (1 <= limit <= MAX_PAGE) or offset < 0:
        raise InvalidRequest(
            "Некорректная страница",
            details=[{"field": "limit", "message": f"от 1 до {MAX_PAGE}; offset ≥ 0"}],
        )
    cursor = db[DELIVERIES].find(query, _HIDDEN).sort("created_at", -1).skip(offset).limit(limit)
    items = [view(delivery) for delivery in await cursor.to_list()]
    return {"items": items, "total": await db[DELIVERIES].count_documents(query)}


async def redeliver(db: AsyncDatabase[Document], broker: Broker, delivery_id: str) -> Document:
    """Send a delivery again from the first step of the schedule (same webhook-id)."""
    delivery = await db[DELIVERIES].find_one(
        {"_id": delivery_id}, {"url": 1, "task_id": 1, "status": 1}
    )
    if delivery is None:
        raise NotFound("Доставка не найдена")
    if delivery["status"] in FINISHED:
        # The task waits for this delivery again (a failed task stays failed).
        await calls(db).update_one(
            {"_id": delivery["task_id"]},
            [
                {
                    "$set": {
                        "deliveries_closed": {
                            "$setDifference": [
                                {"$ifNull": ["$deliveries_closed", []]},
                                [delivery_id],
                            ]
                        },
                        "status": {
                            "$cond": [{"$eq": ["$status", "done"]}, "delivering", "$status"]
                        },
                    }
                }
            ],
        )
    # Replaying is how an admin says the endpoint works again.
    await db[ENDPOINTS].update_one({"_id": delivery["url"]}, {"$set": {"gone": False}})
    await db[DELIVERIES].update_one(
        {"_id": delivery_id},
        {
            "$set": {
                "status": "pending",
                "round_attempts": 0,
                "next_attempt_at": None,
                "updated_at": utcnow(),
            }
        },
    )
    try:
        await broker.send_to_queue(
            broker.queue_name("notifier"),
            Envelope.wrap(DeliveryDue(delivery_id=delivery_id), task_id=delivery_id),
        )
    except Exception as exc:
        raise Unavailable("Очередь доставки недоступна, повторите позже") from exc
    updated = await db[DELIVERIES].find_one({"_id": delivery_id}, _HIDDEN)
    assert updated is not None
    return view(updated)
