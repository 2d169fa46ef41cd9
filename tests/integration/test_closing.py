"""Tasks closing in shared writes, on a real server: each task takes only its own
closings from a batch, closing twice changes nothing, and a failed task stays failed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.notifier.closing import Closing, TaskClosings, closing_of
from shared.mongo import Document, calls, connect_mongo, database
from shared.settings import Settings

AT = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[AsyncDatabase[Document]]:
    client = connect_mongo(settings.mongo_url)
    yield database(client)
    await client.close()


def delivery(task_id: str, number: int, of: int) -> Document:
    return {
        "_id": f"msg_{task_id}_{number}",
        "task_id": task_id,
        "task_deliveries": of,
        "type": "checklist.completed",
    }


async def stored_task(db: AsyncDatabase[Document], task_id: str, status: str) -> None:
    await calls(db).insert_one({"_id": task_id, "status": status, "timeline": [], "updated_at": AT})


async def test_concurrent_closings_of_many_tasks_each_close_their_own(
    db: AsyncDatabase[Document],
) -> None:
    closings = TaskClosings(db, max_batch=7)
    for name in ("one", "two", "waits", "failed", "none"):
        await stored_task(db, name, "failed" if name == "failed" else "delivering")
    two = [delivery("two", number, of=2) for number in (1, 2)]
    waits = [delivery("waits", number, of=3) for number in (1, 2, 3)]
    await asyncio.gather(
        closings.close(closing_of(delivery("one", 1, of=1), "succeeded", AT)),
        *(closings.close(closing_of(each, "succeeded", AT)) for each in two),
        *(closings.close(closing_of(each, "dead", AT)) for each in waits[:2]),
        closings.close(closing_of(waits[0], "dead", AT)),  # twice in one batch
        closings.close(closing_of(delivery("failed", 1, of=1), "dead", AT)),
        closings.close(Closing("none")),
        *(closings.close(closing_of(delivery(f"other{n}", 1, 1), "dead", AT)) for n in range(9)),
    )
    found = {task["_id"]: task async for task in calls(db).find({})}
    assert {name: task["status"] for name, task in found.items()} == {
        "one": "done",
        "two": "done",
        "waits": "delivering",
        "failed": "failed",
        "none": "done",
    }
    assert [entry["status"] for entry in found["two"]["timeline"]] == [
        "webhook_succeeded",
        "webhook_succeeded",
        "done",
    ]
    assert sorted(found["waits"]["deliveries_closed"]) == ["msg_waits_1", "msg_waits_2"]
    assert [entry["status"] for entry in found["waits"]["timeline"]] == ["webhook_dead"] * 2
    assert [entry["status"] for entry in found["failed"]["timeline"]] == ["webhook_dead"]
    assert found["none"]["deliveries_closed"] == []
    assert not any(key.startswith("_") and key != "_id" for task in found.values() for key in task)

    await closings.close(closing_of(waits[2], "succeeded", AT))
    closed = await calls(db).find_one({"_id": "waits"})
    assert closed is not None
    assert closed["status"] == "done"


async def test_a_closing_repeated_changes_nothing(db: AsyncDatabase[Document]) -> None:
    closings = TaskClosings(db)
    await stored_task(db, "task", "delivering")
    first = closing_of(delivery("task", 1, of=2), "succeeded", AT)
    await closings.close(first)
    before = await calls(db).find_one({"_id": "task"})
    await closings.close(first)
    assert await calls(db).find_one({"_id": "task"}) == before
    assert before is not None
    assert before["status"] == "delivering"
