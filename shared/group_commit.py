"""Group commit: concurrent writes share one `bulk_write` round trip per collection
(and concurrent reads by id one `$in` query).

Under load, writes that arrive while a batch is being written wait for the next
batch instead of each paying for its own round trip; alone, a write goes out at
once, so nothing waits on a timer. Every caller still returns only after its own
write is acknowledged, and gets its own error: a duplicate key fails only the
write that caused it. The batch is unordered, so callers must not depend on the
order of each other's writes (each caller's own writes are awaited one by one).

Coalescers can share a lane: then only one of their batches is in flight at a time,
and what arrives meanwhile joins the next batch of its kind. A process whose reads and
writes would otherwise overlap (the notifier's) keeps the database from spending its
time on contention between them. A batch's settling must not wait on another coalescer
of its own lane.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from pymongo import InsertOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from shared.mongo import IN_CHUNK, Document

DUPLICATE_KEY = 11000

WriteOp = InsertOne[Document] | UpdateOne
Item = TypeVar("Item")
Result = TypeVar("Result")


class Coalescer(Generic[Item, Result]):
    """Callers submit items; one task settles them in batches, each caller its own result.
    A batch is taken when its turn in the lane comes (by default a lane of its own)."""

    def __init__(self, *, max_batch: int, lane: asyncio.Lock | None = None) -> None:
        self._max_batch = max_batch
        self._lane = lane or asyncio.Lock()
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def _submit(self, item: Item) -> Result:
        done: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, done))
        if self._runner is None:
            self._runner = asyncio.create_task(self._run_batches())
        return await done

    async def _run_batches(self) -> None:
        try:
            while self._waiting:
                async with self._lane:
                    batch = self._waiting[: self._max_batch]
                    del self._waiting[: self._max_batch]
                    try:
                        await self._settle(batch)
                    except Exception as exc:
                        for _, done in batch:
                            if not done.done():
                                done.set_exception(exc)
        finally:
            self._runner = None

    async def _settle(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        raise NotImplementedError


class GroupWriter(Coalescer[tuple[str, WriteOp], None]):
    """Writes to one database, coalescing concurrent callers into one bulk write per
    collection. Only one batch is written at a time: a single writer keeps the server
    from spending its time on contention between concurrent writes."""

    def __init__(
        self, db: AsyncDatabase[Document], *, max_batch: int = 100, lane: asyncio.Lock | None = None
    ) -> None:
        super().__init__(max_batch=max_batch, lane=lane)
        self._db = db

    async def insert(self, collection: str, document: Document) -> None:
        """Insert one document; raises DuplicateKeyError or the batch's failure for it."""
        await self._submit((collection, InsertOne(document)))

    async def update(
        self, collection: str, filter: Document, update: Document | list[Document]
    ) -> None:
        """Update at most one document (no result: callers filter for idempotence)."""
        await self._submit((collection, UpdateOne(filter, update)))

    async def _settle(self, batch: list[tuple[tuple[str, WriteOp], asyncio.Future[None]]]) -> None:
        by_collection: dict[str, list[tuple[WriteOp, asyncio.Future[None]]]] = defaultdict(list)
        for (collection, operation), done in batch:
            by_collection[collection].append((operation, done))
        for collection, writes in by_collection.items():
            await self._write(self._db[collection], writes)

    @staticmethod
    async def _write(
        collection: AsyncCollection[Document], writes: list[tuple[WriteOp, asyncio.Future[None]]]
    ) -> None:
        errors: dict[int, BaseException] = {}
        try:
            await collection.bulk_write([operation for operation, _ in writes], ordered=False)
        except BulkWriteError as exc:
            details: Mapping[str, Any] = exc.details
            if details.get("writeConcernErrors"):
                errors = dict.fromkeys(range(len(writes)), exc)
            for error in details.get("writeErrors", []):
                index = error["index"]
                if error["code"] == DUPLICATE_KEY:
                    errors[index] = DuplicateKeyError(error["errmsg"], error["code"], error)
                else:
                    errors[index] = exc
        except Exception as exc:
            errors = dict.fromkeys(range(len(writes)), exc)
        for index, (_, done) in enumerate(writes):
            if done.done():  # the caller stopped waiting (cancelled); the others still hear
                continue
            if index in errors:
                done.set_exception(errors[index])
            else:
                done.set_result(None)


class GroupFinder(Coalescer[str, Document | None]):
    """Reads documents of one collection by `_id`, concurrent callers in one `$in` query."""

    def __init__(
        self,
        collection: AsyncCollection[Document],
        projection: Mapping[str, Any] | None = None,
        *,
        max_batch: int = IN_CHUNK,  # a longer `$in` costs more than its share
        lane: asyncio.Lock | None = None,
    ) -> None:
        super().__init__(max_batch=max_batch, lane=lane)
        self._collection = collection
        self._projection = projection

    async def get(self, document_id: str) -> Document | None:
        """The document with this `_id`, or None."""
        return await self._submit(document_id)

    async def _settle(self, batch: list[tuple[str, asyncio.Future[Document | None]]]) -> None:
        ids = list({document_id for document_id, _ in batch})
        found = {
            document["_id"]: document
            async for document in self._collection.find({"_id": {"$in": ids}}, self._projection)
        }
        for document_id, done in batch:
            if not done.done():
                done.set_result(found.get(document_id))
