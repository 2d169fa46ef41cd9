"""Reading the reports' rollups (`shared/rollups.py`): whether they hold what a report's
filters select, and the buckets a viewer may see."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from pymongo.asynchronous.database import AsyncDatabase

from services.ingest.backoffice.accounts import User
from services.ingest.backoffice.filters import CallFilters
from shared.events import utcnow
from shared.mongo import Document
from shared.rollups import buckets_of_days, buckets_of_weeks, week_of


def answers(filters: CallFilters, timezone: str) -> bool:
    """Whether the rollups hold what these filters select: a period of days in their zone,
    and at most a manager (the viewer's visibility is by manager too)."""
    narrowed = filters.model_dump(
        include={"client", "stage_id", "deal_stage_id", "status", "roles", "tracker"}
    )
    return (
        filters.tz == timezone
        and not any(narrowed.values())
        and filters.score_min is None
        and filters.score_max is None
    )


async def buckets(
    db: AsyncDatabase[Document], viewer: User, filters: CallFilters, *, weekly: bool = False
) -> list[Document]:
    """The buckets of the filters' days and manager that the viewer may see, by day (with
    `weekly`, a whole week of them as one, dated by its first day)."""
    first, last = filters.days()
    if weekly:
        today = utcnow().astimezone(filters.zone).date()
        found = await buckets_of_weeks(db, first, last, today=today)
    else:
        found = await buckets_of_days(db, first, last)
    return [
        bucket
        for bucket in found
        if viewer.sees_manager(bucket["manager_id"])
        and filters.manager_id in ("", bucket["manager_id"])
    ]


def weeks(days: Iterable[date]) -> dict[date, date]:
    """Each day's week, by the week's first day (Sunday, as MongoDB's `$dateTrunc`)."""
    return {day: week_of(day) for day in days}
