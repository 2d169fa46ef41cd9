"""Writing a GridFS file chunk by chunk with bounded memory.

PyMongo's `AsyncGridIn` keeps up to 48 MB of chunks before it writes them in one
`insert_many` (and encodes that whole batch again), so a downloader using it
would peak at hundreds of MB on large files. This writer keeps at most two small
batches, one being written while the next fills, and produces the layout of the
GridFS specification (`<bucket>.files`, `<bucket>.chunks`), so `AsyncGridFSBucket`
reads the files back unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from bson import Binary, Int64
from pymongo.asynchronous.database import AsyncDatabase

from shared.events import utcnow
from shared.mongo import Document

CHUNK_BYTES = 255 * 1024  # GridFS's default chunk size
BATCH_CHUNKS = 16


class GridFsWriter:
    """One file being written; `close` publishes it, `abort` removes every chunk."""

    def __init__(
        self,
        db: AsyncDatabase[Document],
        bucket: str,
        file_id: Any,
        filename: str,
        *,
        metadata: Document | None = None,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        self._files = db[f"{bucket}.files"]
        self._chunks = db[f"{bucket}.chunks"]
        self._file_id = file_id
        self._filename = filename
        self._metadata = metadata
        self._chunk_bytes = chunk_bytes
        self._buffer = bytearray()
        self._batch: list[Document] = []
        self._in_flight: asyncio.Task[Any] | None = None
        self._chunk_number = 0
        self._length = 0
        self.closed = False

    async def write(self, data: bytes) -> None:
        """Append bytes; full chunks are written in batches behind the caller."""
        self._buffer += data
        self._length += len(data)
        while len(self._buffer) >= self._chunk_bytes:
            self._add_chunk(bytes(self._buffer[: self._chunk_bytes]))
            del self._buffer[: self._chunk_bytes]
        if len(self._batch) >= BATCH_CHUNKS:
            await self._flush()

    def _add_chunk(self, data: bytes) -> None:
        self._batch.append(
            {"files_id": self._file_id, "n": self._chunk_number, "data": Binary(data)}
        )
        self._chunk_number += 1

    async def _flush(self) -> None:
        # Wait for the previous batch, then send this one without waiting for it.
        await self._wait_in_flight()
        if self._batch:
            batch, self._batch = self._batch, []
            self._in_flight = asyncio.ensure_future(self._chunks.insert_many(batch, ordered=True))

    async def _wait_in_flight(self) -> None:
        if self._in_flight is not None:
            in_flight, self._in_flight = self._in_flight, None
            await in_flight

    async def close(self) -> None:
        """Write the remaining chunks, then the files document that makes the file visible."""
        if self._buffer:
            self._add_chunk(bytes(self._buffer))
            self._buffer.clear()
        await self._flush()
        await self._wait_in_flight()
        await self._files.insert_one(
            {
                "_id": self._file_id,
                "length": Int64(self._length),
                "chunkSize": self._chunk_bytes,
                "uploadDate": utcnow(),
                "filename": self._filename,
                **({"metadata": self._metadata} if self._metadata else {}),
            }
        )
        self.closed = True

    async def abort(self) -> None:
        """Stop writing and delete whatever chunks were written."""
        # Let a batch already sent finish first: deleting under it could leave its chunks.
        with contextlib.suppress(Exception):
            await self._wait_in_flight()
        self._batch.clear()
        self._buffer.clear()
        await self._chunks.delete_many({"files_id": self._file_id})
        self.closed = True
