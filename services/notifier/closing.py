"""Tasks closing as their deliveries finish: concurrent closings share one write.

A task records each finished delivery on its timeline and in `deliveries_closed`, and
turns `done` when every delivery it waits for is finished (a failed task stays failed).
The closings waiting at one moment become a single `update_many` by `_id` whose pipeline
is the same for every task: each document picks its own closings out of the batch, so
the database plans the filter and checks the pipeline once per batch instead of once per
task (measured on SecantusDB here, batches of 16 on the calls' indexes: 0.94 ms a task,
against 1.35 ms for one update per task by `_id` and 2.0 ms with a condition in its
filter).

Closing is idempotent: a delivery already on the list changes nothing, so a closing
repeated after a crash, or twice in one batch, is harmless; a redelivery (the back
office's replay) takes the delivery off the list again, and a re-analysis empties it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from shared.events import utcnow
from shared.group_commit import Coalescer
from shared.mongo import CALLS, IN_CHUNK, Document
from shared.tasks import TaskStatus, timeline_entry


@dataclass(frozen=True)
class Closing:
    """One finished delivery of a task (`delivery_id` None: the task has none to wait
    for), with the timeline entry it adds."""

    task_id: str
    delivery_id: str | None = None
    total: int = 0  # how many deliveries the task waits for
    entry: Document | None = None

    def item(self) -> Document:
        return {
            "task": self.task_id,
            "id": self.delivery_id,
            "total": self.total,
            "entry": self.entry,
        }


def closing_of(delivery: Document, status: str, at: datetime) -> Closing:
    """The closing a finished delivery makes on its task."""
    return Closing(
        delivery["task_id"],
        delivery["_id"],
        delivery["task_deliveries"],
        {
            "status": f"webhook_{status}",
            "at": at,
            "delivery_id": delivery["_id"],
            "type": delivery["type"],
        },
    )


def _each(items: str, expression: Any) -> Document:
    return {"$map": {"input": items, "as": "item", "in": expression}}


def _let(variables: Document, expression: Any) -> Document:
    return {"$let": {"vars": variables, "in": expression}}


def closing_pipeline(closings: list[Closing], now: datetime) -> list[Document]:
    """The update that applies these closings to whichever of their tasks it meets: one
    stage (SecantusDB copies the document for every stage)."""
    items = list({(c.task_id, c.delivery_id): c.item() for c in closings}.values())
    mine = {
        "$filter": {
            "input": {"$literal": items},
            "as": "item",
            "cond": {"$eq": ["$$item.task", "$_id"]},
        }
    }
    new = {
        "$filter": {
            "input": "$$mine",
            "as": "item",
            "cond": {
                "$and": [
                    {"$ne": ["$$item.id", None]},
                    {"$not": [{"$in": ["$$item.id", "$$known"]}]},
                ]
            },
        }
    }
    finishes = {
        "$and": [
            {"$gte": [{"$size": "$$closed"}, {"$max": _each("$$mine", "$$item.total")}]},
            {"$eq": ["$status", TaskStatus.DELIVERING.value]},
        ]
    }
    done = {"$literal": [timeline_entry(TaskStatus.DONE, now)]}
    changed = {
        "status": {"$cond": ["$$finishes", TaskStatus.DONE.value, "$status"]},
        "updated_at": {
            "$cond": [{"$or": ["$$finishes", {"$gt": [{"$size": "$$new"}, 0]}]}, now, "$updated_at"]
        },
        "timeline": {
            "$concatArrays": [
                "$timeline",
                _each("$$new", "$$item.entry"),
                {"$cond": ["$$finishes", done, []]},
            ]
        },
        "deliveries_closed": "$$closed",
    }
    computed = _let(
        {"mine": mine, "known": {"$ifNull": ["$deliveries_closed", []]}},
        _let(
            {"new": new},
            _let(
                {"closed": {"$concatArrays": ["$$known", _each("$$new", "$$item.id")]}},
                _let({"finishes": finishes}, changed),
            ),
        ),
    )
    return [{"$replaceWith": {"$mergeObjects": ["$$ROOT", computed]}}]


class TaskClosings(Coalescer[Closing, None]):
    """Applies closings as they come, those that arrive during a write in the next one;
    each caller returns once its closing is written, or gets the write's error."""

    def __init__(
        self,
        db: AsyncDatabase[Document],
        *,
        max_batch: int = IN_CHUNK,  # ids in one `$in`: longer costs its square
        lane: asyncio.Lock | None = None,
    ) -> None:
        super().__init__(max_batch=max_batch, lane=lane)
        self._db = db

    async def close(self, closing: Closing) -> None:
        await self._submit(closing)

    async def _settle(self, batch: list[tuple[Closing, asyncio.Future[None]]]) -> None:
        closings = [closing for closing, _ in batch]
        task_ids = list({closing.task_id for closing in closings})
        await self._db[CALLS].update_many(
            {"_id": {"$in": task_ids}}, closing_pipeline(closings, utcnow())
        )
        for _, done in batch:
            if not done.done():
                done.set_result(None)
