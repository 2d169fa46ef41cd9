"""Trackers («Словари») as people use them beyond their catalog: applying one to the calls
of a period analysed before it existed (re-tagged by the analyzers from the stored
transcripts, never transcribed again), and how often the calls said each tracker, day by
day, for the dashboard."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from pymongo.asynchronous.database import AsyncDatabase
from typing_extensions import TypedDict

from services.ingest.backoffice import catalog
from services.ingest.backoffice.accounts import User
from services.ingest.backoffice.filters import CallFilters, Day, ZoneName
from shared.mongo import Document, calls


class ApplyForm(BaseModel):
    """The days whose calls get the tracker counted (the last week by default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    date_from: Day | None = None
    date_to: Day | None = None
    tz: ZoneName | None = None

    def filters(self, zone: str) -> CallFilters:
        """The period as calls filters, its days in `tz` or else in `zone`."""
        return CallFilters(date_from=self.date_from, date_to=self.date_to, tz=self.tz or zone)


class Applied(TypedDict):
    calls: Annotated[int, Field(description="Analysed calls of the period to be re-tagged")]


async def apply(
    db: AsyncDatabase[Document], viewer: User, tracker_id: str, period: CallFilters
) -> Applied:
    """Mark the period's analysed calls the viewer may see for the analyzers to count the
    tracker on (idempotent: a call marked twice is counted once)."""
    await catalog.get(db, catalog.TRACKER, tracker_id, viewer)
    marked = await calls(db).update_many(
        {**period.query(viewer), "details_id": {"$exists": True}},
        {"$addToSet": {"retag": tracker_id}},
    )
    return {"calls": marked.matched_count}


class TrackerDays(TypedDict):
    """How many calls said a tracker, each day of the period."""

    tracker_id: str
    name: str
    calls: int
    days: list[int]


async def over_time(
    db: AsyncDatabase[Document], viewer: User, filters: CallFilters
) -> tuple[list[date], list[TrackerDays]]:
    """The period's days, and each tracker's calls by day among those the viewer sees."""
    first, last = filters.days()
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    index = {day: n for n, day in enumerate(days)}
    found: list[TrackerDays] = []
    for tracker_id, name in await catalog.names(db, catalog.TRACKER, viewer):
        counts = [0] * len(days)
        query = {"trackers_hit": tracker_id, **filters.query(viewer)}
        async for call in calls(db).find(query, {"received_at": 1, "_id": 0}):
            counts[index[call["received_at"].astimezone(filters.zone).date()]] += 1
        found.append(
            {
                "tracker_id": tracker_id,
                "name": name,
                "calls": sum(counts),
                "days": counts,
            }
        )
    return days, found
