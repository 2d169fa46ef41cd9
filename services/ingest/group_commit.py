"""Group commit: concurrent inserts share one `insert_many` round trip.

Under load, requests that arrive while a batch is being written wait for the
next batch instead of each paying for its own round trip; alone, a request is
written at once, so nothing waits on a timer. Every caller still returns only
after its own document is acknowledged, and gets its own error: a duplicate key
fails only the request that caused it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError

from shared.mongo import Document

DUPLICATE_KEY = 11000


class GroupInserter:
    """Inserts documents into one collection, coalescing concurrent callers."""

    def __init__(self, collection: AsyncCollection[Document], *, max_batch: int = 100) -> None:
        self._collection = collection
        self._max_batch = max_batch
        self._waiting: list[tuple[Document, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def insert(self, document: Document) -> None:
        """Insert one document; raises DuplicateKeyError or the batch's failure for it."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((document, done))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_batches())
        await done

    async def _write_batches(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                await self._write(batch)
        finally:
            self._writer = None

    async def _write(self, batch: list[tuple[Document, asyncio.Future[None]]]) -> None:
        errors: dict[int, BaseException] = {}
        try:
            await self._collection.insert_many([document for document, _ in batch], ordered=False)
        except BulkWriteError as exc:
            details: Mapping[str, Any] = exc.details
            if details.get("writeConcernErrors"):
                errors = dict.fromkeys(range(len(batch)), exc)
            for error in details.get("writeErrors", []):
                index = error["index"]
                if error["code"] == DUPLICATE_KEY:
                    errors[index] = DuplicateKeyError(error["errmsg"], error["code"], error)
                else:
                    errors[index] = exc
        except Exception as exc:
            errors = dict.fromkeys(range(len(batch)), exc)
        for index, (_, done) in enumerate(batch):
            if done.done():
                continue
            if index in errors:
                done.set_exception(errors[index])
            else:
                done.set_result(None)
