"""Which analyzers are alive: each one beats a heartbeat record while it runs.

A job's lease (minutes) bounds how long a stuck worker can hold it; the heartbeat tells
at once, without waiting for that lease, that its worker is gone (killed, its node lost),
so a running analyzer takes the job over within a few beats. A worker judges others only
after its own beats have succeeded for that long: just after a database outage every
record looks old, and nobody is taken for dead then.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from datetime import timedelta

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from shared.events import utcnow
from shared.logging import get_logger
from shared.mongo import ANALYZER_WORKERS, Document

log = get_logger(__name__)

MISSED_BEATS = 4  # a worker silent for this many beats is gone


class Heartbeat:
    """This worker's heartbeat, and its view of which workers are alive."""

    def __init__(self, db: AsyncDatabase[Document], worker_id: str, interval_s: float) -> None:
        self._records = db[ANALYZER_WORKERS]
        self.worker_id = worker_id
        self.interval_s = interval_s
        self._beating_since: float | None = None  # monotonic time of the first beat in a row

    @property
    def silence_s(self) -> float:
        """How long a worker may stay silent before it is taken for gone."""
        return self.interval_s * MISSED_BEATS

    async def beat(self) -> None:
        """Record that this worker is alive (once)."""
        try:
            await self._records.update_one(
                {"_id": self.worker_id},
                {
                    "$set": {"seen_at": utcnow()},
                    "$setOnInsert": {
                        "host": socket.gethostname(),
                        "pid": os.getpid(),
                        "started_at": utcnow(),
                    },
                },
                upsert=True,
            )
        except PyMongoError:
            self._beating_since = None
            raise
        if self._beating_since is None:
            self._beating_since = time.monotonic()

    async def beat_forever(self) -> None:
        """Beat every interval until cancelled; a failed beat is logged, never fatal."""
        while True:
            try:
                await self.beat()
            except PyMongoError as exc:
                log.warning("heartbeat_failed", error=repr(exc))
            await asyncio.sleep(self.interval_s)

    async def alive(self) -> list[str] | None:
        """The workers heard from lately, or None while this worker cannot judge (its own
        beats have not succeeded for a whole silence yet)."""
        if self._beating_since is None or time.monotonic() - self._beating_since < self.silence_s:
            return None
        recent = utcnow() - timedelta(seconds=self.silence_s)
        records = await self._records.find({"seen_at": {"$gte": recent}}, {"_id": 1}).to_list()
        return [record["_id"] for record in records]

    async def retire(self) -> None:
        """Remove this worker's record on a clean stop: its cut-short job is free at once."""
        try:
            await self._records.delete_one({"_id": self.worker_id})
        except PyMongoError as exc:
            log.warning("heartbeat_not_retired", error=repr(exc))
