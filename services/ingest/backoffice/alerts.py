"""What people see of alerts: their in-app notifications (the unread ones counted in the
top bar, marked read when opened or all at once) and the log of alerts raised, with
what became of each channel. The notifier raises and sends them
(`services/notifier/alerting.py`); the rules are catalog documents (`catalog.ALERT_RULE`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from pymongo.asynchronous.database import AsyncDatabase
from typing_extensions import TypedDict

from services.ingest.apidoc import IsoTime
from services.ingest.backoffice.accounts import User
from services.ingest.intake.tasks import iso
from shared.mongo import ALERTS, DELIVERIES, DIGEST_ITEMS, NOTIFICATIONS, Document, all_of, find_in

NOTIFICATIONS_SHOWN = 100
LOG_SHOWN = 200


class Notification(TypedDict):
    id: str
    rule: Annotated[str, Field(description="The alert rule's name")]
    summary: Annotated[str, Field(description="What fired it")]
    task_id: str
    call_id: str | None
    manager_name: str | None
    at: IsoTime
    read: bool


class Notifications(TypedDict):
    items: list[Notification]
    unread: Annotated[int, Field(description="What the top bar counts")]


class ReadForm(BaseModel):
    """Which notifications to mark read; none given: all of them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ids: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        None, max_length=500
    )


class Marked(TypedDict):
    marked: int


class Target(TypedDict):
    channel: Literal["in_app", "email", "digest", "webhook"]
    to: str
    status: Annotated[
        str,
        Field(description="pending, retrying, succeeded, dead, stopped; in_app: delivered"),
    ]


class LoggedAlert(TypedDict):
    id: str
    rule_id: str
    rule: str
    condition: str
    summary: str
    task_id: str
    call_id: str | None
    manager_id: str | None
    manager_name: str | None
    at: IsoTime
    targets: list[Target]


class AlertLog(TypedDict):
    items: list[LoggedAlert]


def _mine(viewer: User) -> Document:
    return {"user_id": viewer.id}


async def unread_count(db: AsyncDatabase[Document], viewer: User) -> int:
    """The viewer's unread notifications."""
    return await db[NOTIFICATIONS].count_documents({**_mine(viewer), "read": False})


async def notifications(db: AsyncDatabase[Document], viewer: User) -> Notifications:
    """The viewer's latest notifications, newest first, and how many are unread."""
    found = db[NOTIFICATIONS].find(_mine(viewer)).sort("at", -1).limit(NOTIFICATIONS_SHOWN)
    items: list[Notification] = [
        {
            "id": item["_id"],
            "rule": item["rule"],
            "summary": item["summary"],
            "task_id": item["task_id"],
            "call_id": item.get("call_id"),
            "manager_name": item.get("manager_name") or item.get("manager_id"),
            "at": iso(item["at"]),
            "read": item["read"],
        }
        for item in await found.to_list()
    ]
    return {"items": items, "unread": await unread_count(db, viewer)}


async def mark_read(db: AsyncDatabase[Document], viewer: User, form: ReadForm) -> Marked:
    """Mark the viewer's notifications read (only theirs, whatever ids are given)."""
    query: Document = {**_mine(viewer), "read": False}
    if form.ids is not None:
        query["_id"] = {"$in": form.ids}
    result = await db[NOTIFICATIONS].update_many(query, {"$set": {"read": True}})
    return {"marked": result.modified_count}


async def open_notification(db: AsyncDatabase[Document], viewer: User, item_id: str) -> str | None:
    """Mark one of the viewer's notifications read; return its call's task id."""
    found = await db[NOTIFICATIONS].find_one_and_update(
        {**_mine(viewer), "_id": item_id}, {"$set": {"read": True}}, {"task_id": 1}
    )
    return None if found is None else str(found["task_id"])


async def log(db: AsyncDatabase[Document], viewer: User) -> AlertLog:
    """The latest alerts on calls the viewer may see, newest first, with what became of
    each of their channels."""
    found = db[ALERTS].find(all_of({}, viewer.visibility())).sort("at", -1).limit(LOG_SHOWN)
    alerts = await found.to_list()
    digests: dict[str, str | None] = {
        item["_id"]: item.get("digest_id")
        async for item in find_in(
            db[DIGEST_ITEMS],
            "_id",
            [
                f"{a['_id']}:{t['to']}"
                for a in alerts
                for t in a["targets"]
                if t["channel"] == "digest"
            ],
            projection={"digest_id": 1},
        )
    }
    delivery_ids = [t["delivery_id"] for a in alerts for t in a["targets"] if t.get("delivery_id")]
    statuses: dict[str, str] = {
        d["_id"]: d["status"]
        async for d in find_in(
            db[DELIVERIES],
            "_id",
            [*delivery_ids, *filter(None, digests.values())],
            projection={"status": 1},
        )
    }

    def status(alert: Document, target: Document) -> str:
        if target["channel"] == "in_app":
            return "delivered"
        if target["channel"] == "digest":
            digest_id = digests.get(f"{alert['_id']}:{target['to']}")
            return statuses.get(digest_id, "pending") if digest_id else "waiting_digest"
        return statuses.get(str(target["delivery_id"]), "pending")

    items: list[LoggedAlert] = [
        {
            "id": alert["_id"],
            "rule_id": alert["rule_id"],
            "rule": alert["rule"],
            "condition": alert["condition"],
            "summary": alert["summary"],
            "task_id": alert["task_id"],
            "call_id": alert.get("call_id"),
            "manager_id": alert.get("manager_id"),
            "manager_name": alert.get("manager_name"),
            "at": iso(alert["at"]),
            "targets": [
                {"channel": t["channel"], "to": t["to"], "status": status(alert, t)}
                for t in alert["targets"]
            ],
        }
        for alert in alerts
    ]
    return {"items": items}
