"""The heavy parts of an analysed call (its transcript with word times, each side's
speech, each side's voice) kept apart from the call's document, so that what the list,
the filters, the reports and the relay read of every call stays small.

Each analysis stores them under a new id before the call points to it (`store`); once
the call does, the previous analysis's are removed (`keep_only`), and if the analysis
lost its job meanwhile its own are (`discard`): a call never points to parts that are
missing or from another run. The card, re-scoring with the roles swapped and the
voiceprints read them by the call's `details_id` (`of`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from pymongo.asynchronous.database import AsyncDatabase

from shared.mongo import CALL_DETAILS, SETTINGS, Document, calls, find_in

HEAVY = ("transcript", "speech", "voices")
MOVED_ID = "call_details"  # the settings document saying inline parts were moved out


def split(fields: Document) -> Document:
    """Take the heavy parts out of a call's fields (what an analysis stores)."""
    return {key: fields.pop(key) for key in HEAVY if key in fields}


async def store(db: AsyncDatabase[Document], task_id: str, heavy: Document) -> str:
    """Store one analysis's heavy parts of a call; their id, for the call to point to."""
    details_id = uuid.uuid4().hex
    # A try whose answer was lost leaves a document no call points to: `keep_only` removes
    # it with the call's earlier ones.
    await db[CALL_DETAILS].insert_one({"_id": details_id, "task_id": task_id, **heavy})
    return details_id


async def keep_only(db: AsyncDatabase[Document], task_id: str, details_id: str) -> None:
    """The call points to these parts now: remove its earlier analyses'."""
    await db[CALL_DETAILS].delete_many({"task_id": task_id, "_id": {"$ne": details_id}})


async def discard(db: AsyncDatabase[Document], details_id: str) -> None:
    """The call never came to point to these parts."""
    await db[CALL_DETAILS].delete_one({"_id": details_id})


async def of(
    db: AsyncDatabase[Document], call: Document, projection: Document | None = None
) -> Document:
    """The heavy parts of a call (read with its `details_id`); empty before an analysis."""
    if not call.get("details_id"):
        return {}
    found = await db[CALL_DETAILS].find_one({"_id": call["details_id"]}, projection)
    return found or {}


async def of_many(
    db: AsyncDatabase[Document], found: Iterable[Document], projection: Document | None = None
) -> dict[str, Document]:
    """The heavy parts of these calls by task id, in one read (calls before an analysis
    have none)."""
    ids = [call["details_id"] for call in found if call.get("details_id")]
    return {
        document["task_id"]: document
        async for document in find_in(
            db[CALL_DETAILS], "_id", ids, projection={**(projection or {}), "task_id": 1}
        )
    }


async def forget_voices(db: AsyncDatabase[Document], call_filter: Document) -> None:
    """Remove the voices of the calls this filter selects."""
    ids = [
        call["details_id"]
        async for call in calls(db).find(
            {**call_filter, "details_id": {"$exists": True}}, {"details_id": 1}
        )
    ]
    for start in range(0, len(ids), 1000):
        await db[CALL_DETAILS].update_many(
            {"_id": {"$in": ids[start : start + 1000]}, "voices": {"$exists": True}},
            {"$unset": {"voices": ""}},
        )


async def move_inline(db: AsyncDatabase[Document]) -> int:
    """Move the heavy parts that calls analysed by an earlier version hold themselves out
    to their own documents (once, at a gateway's start); how many calls were moved."""
    if await db[SETTINGS].find_one({"_id": MOVED_ID}) is not None:
        return 0
    moved = 0
    inline = {"$or": [{key: {"$exists": True}} for key in HEAVY]}
    async for call in calls(db).find(inline, dict.fromkeys(HEAVY, 1)):
        details_id = await store(db, call["_id"], split(call))
        await calls(db).update_one(
            {"_id": call["_id"]},
            {"$set": {"details_id": details_id}, "$unset": dict.fromkeys(HEAVY, "")},
        )
        await keep_only(db, call["_id"], details_id)
        moved += 1
    await db[SETTINGS].replace_one({"_id": MOVED_ID}, {"_id": MOVED_ID}, upsert=True)
    return moved
