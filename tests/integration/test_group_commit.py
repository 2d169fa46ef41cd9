"""Group commit on a real server: each caller gets its own outcome from a shared batch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from pymongo import AsyncMongoClient, monitoring
from pymongo.errors import DuplicateKeyError

from shared.group_commit import GroupFinder, GroupWriter
from shared.mongo import Document, connect_mongo, database
from shared.settings import Settings


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[object]:
    client = connect_mongo(settings.mongo_url)
    yield database(client)
    await client.close()


async def test_concurrent_writes_to_two_collections_each_get_their_own_outcome(db: object) -> None:
    writer = GroupWriter(db, max_batch=7)  # type: ignore[arg-type]
    await writer.insert("left", {"_id": "taken"})

    async def insert(collection: str, document_id: str) -> str:
        try:
            await writer.insert(collection, {"_id": document_id})
        except DuplicateKeyError:
            return "duplicate"
        return "stored"

    names = [f"doc{index}" for index in range(20)]
    outcomes = await asyncio.gather(
        *(insert("left", name) for name in names),
        insert("left", "taken"),
        *(insert("right", name) for name in names),
        writer.update("left", {"_id": "taken"}, {"$set": {"seen": True}}),
    )
    assert outcomes[:20] == ["stored"] * 20
    assert outcomes[20] == "duplicate"
    assert outcomes[21:41] == ["stored"] * 20
    assert await db.left.count_documents({}) == 21  # type: ignore[attr-defined]
    assert await db.right.count_documents({}) == 20  # type: ignore[attr-defined]
    assert (await db.left.find_one({"_id": "taken"}))["seen"] is True  # type: ignore[attr-defined]


async def test_concurrent_reads_share_a_query_and_miss_cleanly(db: object) -> None:
    await db.items.insert_many(  # type: ignore[attr-defined]
        [{"_id": f"item{index}", "n": index, "hidden": "x"} for index in range(10)]
    )
    finder = GroupFinder(db.items, {"n": 1})  # type: ignore[attr-defined]
    found: list[Document | None] = await asyncio.gather(
        *(finder.get(f"item{index}") for index in range(10)),
        finder.get("item3"),
        finder.get("absent"),
    )
    assert [item and item["n"] for item in found[:10]] == list(range(10))
    assert found[10] == {"_id": "item3", "n": 3}
    assert found[11] is None


async def test_a_caller_that_stops_waiting_does_not_fail_the_others(db: object) -> None:
    writer = GroupWriter(db)  # type: ignore[arg-type]
    callers = [
        asyncio.create_task(writer.insert("items", {"_id": f"doc{index}"})) for index in range(20)
    ]
    await asyncio.sleep(0)  # every caller is waiting
    await asyncio.sleep(0)  # and their batch is being written
    callers[0].cancel()
    outcomes = await asyncio.gather(*callers, return_exceptions=True)
    assert isinstance(outcomes[0], asyncio.CancelledError)
    assert outcomes[1:] == [None] * 19
    assert await db.items.count_documents({}) == 20  # type: ignore[attr-defined]


class InFlight(monitoring.CommandListener):
    """How many commands a client had in flight at most, and how many it sent."""

    def __init__(self) -> None:
        self.now = self.most = self.sent = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.now += 1
        self.sent += 1
        self.most = max(self.most, self.now)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self.now -= 1

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self.now -= 1


async def test_coalescers_sharing_a_lane_have_one_command_in_flight(settings: Settings) -> None:
    listener = InFlight()
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        settings.mongo_url, event_listeners=[listener]
    )
    db = database(client)
    await db.items.insert_many([{"_id": f"item{index}"} for index in range(30)])
    listener.sent = 0
    lane = asyncio.Lock()
    writer = GroupWriter(db, max_batch=10, lane=lane)
    finder = GroupFinder(db.items, max_batch=10, lane=lane)
    found = await asyncio.gather(
        *(finder.get(f"item{index}") for index in range(30)),
        *(writer.insert("stored", {"_id": f"doc{index}"}) for index in range(30)),
    )
    sent, most = listener.sent, listener.most
    await client.close()
    assert found[:30] == [{"_id": f"item{index}"} for index in range(30)]
    assert most == 1
    assert sent == 6  # batches of 10: what waited for the lane went together
