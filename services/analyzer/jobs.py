"""The analysis job queue, in MongoDB rather than the broker: a job lives on its task
(`analysis`), a worker claims it with a lease it renews while it works, so a call hours
long can outlast the broker's acknowledgement timeout, and a job whose worker is gone
(no heartbeat) or stuck (its lease ran out) is taken over."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from services.analyzer.workers import Heartbeat
from shared.events import utcnow
from shared.logging import get_logger
from shared.mongo import Document, calls
from shared.tasks import TaskStatus

log = get_logger(__name__)

STATES = ("queued", "running")  # and, once finished, done or failed


@dataclass(frozen=True)
class JobQueue:
    """One worker's view of the queue."""

    db: AsyncDatabase[Document]
    worker_id: str
    lease_s: float
    heartbeat: Heartbeat

    async def enqueue(self, task_id: str) -> None:
        """Record a task's job once (a redelivered `AudioStored` changes nothing)."""
        await calls(self.db).update_one(
            {"_id": task_id, "analysis": {"$exists": False}},
            {"$set": {"analysis": {"state": "queued", "attempts": 0, "queued_at": utcnow()}}},
        )

    async def claim(self) -> Document | None:
        """Take a job whose worker stopped renewing its lease or is gone (no heartbeat
        lately), else the oldest queued one: each by a query the jobs index serves
        (SecantusDB plans no index under a top-level `$or`)."""
        now = utcnow()
        alive = await self.heartbeat.alive()
        claimable: list[Document] = [
            {"analysis.state": "running", "analysis.lease_until": {"$lt": now}}
        ]
        if alive is not None:
            claimable.append({"analysis.state": "running", "analysis.worker": {"$nin": alive}})
        claimable.append({"analysis.state": "queued"})
        for jobs in claimable:
            if (job := await self._take(jobs, now)) is not None:
                return job
        return None

    async def _take(self, jobs: Document, now: datetime) -> Document | None:
        return await calls(self.db).find_one_and_update(
            jobs,
            {
                "$set": {
                    "analysis.state": "running",
                    "analysis.worker": self.worker_id,
                    "analysis.lease_until": now + timedelta(seconds=self.lease_s),
                    "status": TaskStatus.ANALYZING.value,  # the timeline has it from the download
                    "updated_at": now,
                },
                "$inc": {"analysis.attempts": 1},
            },
            sort=[("received_at", 1)],
            return_document=ReturnDocument.AFTER,
        )

    async def renew_forever(self, task_id: str) -> None:
        """Renew a claimed job's lease every third of it, until cancelled; a renewal the
        database missed is tried next time."""
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                await calls(self.db).update_one(
                    {
                        "_id": task_id,
                        "analysis.worker": self.worker_id,
                        "analysis.state": "running",
                    },
                    {"$set": {"analysis.lease_until": utcnow() + timedelta(seconds=self.lease_s)}},
                )
            except PyMongoError as exc:
                log.warning("analysis_lease_not_renewed", error=repr(exc))

    async def requeue(self, task_id: str, *, attempt_counts: bool = True) -> None:
        """Give a claimed job back to the queue; one cut short by a dependency going away
        does not count as an attempt."""
        await calls(self.db).update_one(
            {"_id": task_id, "analysis.worker": self.worker_id},
            {
                "$set": {"analysis.state": "queued"},
                **({} if attempt_counts else {"$inc": {"analysis.attempts": -1}}),
            },
        )

    async def counts(self) -> dict[str, int]:
        """How many jobs are queued and running."""
        return {
            state: await calls(self.db).count_documents({"analysis.state": state})
            for state in STATES
        }
