"""The webhook delivery log of SPEC §4.1: list with filters, and replay."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from pymongo.asynchronous.database import AsyncDatabase
from typing_extensions import TypedDict

from services.ingest.apidoc import IsoTime
from services.ingest.backoffice.accounts import User, find_visible
from services.ingest.intake.tasks import iso
from shared.amqp import Broker
from shared.errors import NotFound, Unavailable
from shared.events import DeliveryDue, Envelope, utcnow
from shared.mongo import DELIVERIES, ENDPOINTS, Document, all_of, calls
from shared.tasks import TaskStatus
from shared.webhooks import DELIVERY_FINISHED, counts_for_task

MAX_PAGE = 200
MAX_OFFSET = 10_000_000
NOT_YOURS = "Это доставка звонка другого менеджера"
_HIDDEN = {"secret": 0, "body": 0}
DeliveryStatus = Literal["pending", "retrying", "succeeded", "dead", "stopped"]


class AttemptView(TypedDict):
    """One try to send a delivery, and what the endpoint said."""

    at: IsoTime
    status_code: int | None
    latency_ms: float | None
    response: Annotated[str | None, Field(description="The start of the answer's body")]
    error: Annotated[str | None, Field(description="Why no answer came, or none was tried")]
    refused: Annotated[bool, Field(description="The URL policy refused the address")]


class DeliveryView(TypedDict):
    """A webhook delivery: one event for one endpoint, with every attempt."""

    id: Annotated[str, Field(description="The `webhook-id` the endpoint gets")]
    task_id: str
    call_id: str | None
    type: str
    url: str
    status: DeliveryStatus
    next_attempt_at: IsoTime | None
    created_at: IsoTime
    updated_at: IsoTime
    attempts: list[AttemptView]


class DeliveryPage(TypedDict):
    items: list[DeliveryView]
    total: int


def view(delivery: Document) -> DeliveryView:
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
        "attempts": [_attempt_view(attempt) for attempt in delivery.get("attempts", [])],
    }


def _attempt_view(attempt: Document) -> AttemptView:
    return {
        "at": iso(attempt["at"]),
        "status_code": attempt.get("status_code"),
        "latency_ms": attempt.get("latency_ms"),
        "response": attempt.get("response"),
        "error": attempt.get("error"),
        "refused": bool(attempt.get("refused")),
    }


class DeliveryFilters(BaseModel):
    """The filters and the page of the delivery log."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    status: DeliveryStatus | None = None
    endpoint: str | None = Field(None, max_length=2048, description="The webhook URL.")
    call_id: str | None = Field(None, max_length=200)
    task_id: str | None = Field(None, max_length=200)
    limit: int = Field(50, ge=1, le=MAX_PAGE)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)

    def query(self) -> Document:
        """The Mongo filter."""
        fields = {"status": self.status, "url": self.endpoint, "call_id": self.call_id}
        return {key: value for key, value in {**fields, "task_id": self.task_id}.items() if value}


async def list_deliveries(
    db: AsyncDatabase[Document], viewer: User, filters: DeliveryFilters
) -> DeliveryPage:
    """The deliveries of calls the viewer may see, newest first, filtered by status,
    endpoint URL, call or task."""
    query = all_of(filters.query(), viewer.visibility())
    cursor = (
        db[DELIVERIES]
        .find(query, _HIDDEN)
        .sort("created_at", -1)
        .skip(filters.offset)
        .limit(filters.limit)
    )
    items = [view(delivery) for delivery in await cursor.to_list()]
    return {"items": items, "total": await db[DELIVERIES].count_documents(query)}


async def redeliver(
    db: AsyncDatabase[Document], broker: Broker, viewer: User, delivery_id: str
) -> DeliveryView:
    """Send a delivery of a call the viewer may see again, from the first step of the
    schedule (same webhook-id)."""
    delivery = await find_visible(
        db[DELIVERIES],
        viewer,
        delivery_id,
        not_yours=NOT_YOURS,
        projection={"url": 1, "task_id": 1, "status": 1, "task_deliveries": 1},
    )
    if delivery is None:
        raise NotFound("Доставка не найдена")
    if delivery["status"] in DELIVERY_FINISHED and counts_for_task(delivery):
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
                            "$cond": [
                                {"$eq": ["$status", TaskStatus.DONE.value]},
                                TaskStatus.DELIVERING.value,
                                "$status",
                            ]
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


async def give_deliveries_their_manager(db: AsyncDatabase[Document]) -> int:
    """Deliveries stored before deliveries carried their call's manager get it, so that the
    visibility rule finds them (run at the gateway's start; once done, nothing to do)."""
    fixed = 0
    for task_id in await db[DELIVERIES].distinct("task_id", {"manager_id": {"$exists": False}}):
        call = await calls(db).find_one({"_id": task_id}, {"manager_id": 1})
        result = await db[DELIVERIES].update_many(
            {"task_id": task_id, "manager_id": {"$exists": False}},
            {"$set": {"manager_id": (call or {}).get("manager_id")}},
        )
        fixed += result.modified_count
    return fixed
