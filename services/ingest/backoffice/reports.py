"""What a head of sales reads across calls: the managers' rating, the dashboard, and the
rows an analytics table collected, always within the viewer's visibility."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Annotated, Any

from pydantic import Field, WithJsonSchema
from pymongo.asynchronous.database import AsyncDatabase
from typing_extensions import TypedDict

from services.ingest.backoffice import rollups
from services.ingest.backoffice.accounts import User
from services.ingest.backoffice.calls import EXPORT_BATCH, EXPORT_LIMIT, CallIdentity, identity
from services.ingest.backoffice.filters import CallFilters, Position
from services.ingest.backoffice.seek import Seek
from shared.mongo import Document, calls
from shared.results import Percent
from shared.rollups import TALK_RATIO_BUCKETS, Sums

Day = Annotated[str, WithJsonSchema({"type": "string", "format": "date"})]
Ratio = Annotated[float, Field(ge=0, le=1)]


class WeeklyAverage(TypedDict):
    week: Annotated[Day, Field(description="The week's Monday")]
    average: Percent | None


class ManagerStats(TypedDict):
    """One manager's line of the rating."""

    manager_id: str
    manager_name: str | None
    calls: int
    analysed: int
    rating: Annotated[int, Field(description="Stages passed in the period")]
    average_score: Percent | None
    perfect: Annotated[int, Field(description="Calls with every applicable stage passed")]
    talk_ratio: Ratio | None
    weekly: list[WeeklyAverage]


class ManagersReport(TypedDict):
    items: list[ManagerStats]


async def managers(
    db: AsyncDatabase[Document], viewer: User, filters: CallFilters, *, rollup_zone: str
) -> ManagersReport:
    """Per manager in the period: rating (stages passed), calls, average score, perfect
    calls, average talk ratio; and each manager's average score by week. From the
    rollups when they hold the filters (kept in `rollup_zone`)."""
    if rollups.answers(filters, rollup_zone):
        return _managers_of(await rollups.buckets(db, viewer, filters, weekly=True))
    match = filters.query(viewer)
    rows = await (
        await calls(db).aggregate(
            [
                {"$match": match},
                {
                    "$group": {
                        "_id": "$manager_id",
                        "name": {"$last": "$manager_name"},
                        "calls": {"$sum": 1},
                        "analysed": {"$sum": {"$cond": [{"$gt": ["$score", None]}, 1, 0]}},
                        "rating": {"$sum": {"$ifNull": ["$score.passed", 0]}},
                        "average": {"$avg": "$score.percent"},
                        "perfect": {"$sum": {"$cond": [{"$eq": ["$score.perfect", True]}, 1, 0]}},
                        "talk_ratio": {"$avg": "$results.metrics.talk_ratio"},
                    }
                },
                {"$sort": {"rating": -1, "_id": 1}},
            ]
        )
    ).to_list()
    weekly = await (
        await calls(db).aggregate(
            [
                {"$match": {**match, "score": {"$ne": None}}},
                {
                    "$group": {
                        "_id": {
                            "manager": "$manager_id",
                            "week": {
                                "$dateTrunc": {
                                    "date": "$received_at",
                                    "unit": "week",
                                    "timezone": filters.tz,
                                }
                            },
                        },
                        "average": {"$avg": "$score.percent"},
                    }
                },
                {"$sort": {"_id.week": 1}},
            ]
        )
    ).to_list()
    series: dict[str, list[WeeklyAverage]] = {}
    for point in weekly:
        series.setdefault(point["_id"]["manager"], []).append(
            {
                "week": point["_id"]["week"].astimezone(filters.zone).date().isoformat(),
                "average": _round(point["average"]),
            }
        )
    return {
        "items": [
            {
                "manager_id": row["_id"],
                "manager_name": row["name"],
                "calls": row["calls"],
                "analysed": row["analysed"],
                "rating": row["rating"],
                "average_score": _round(row["average"]),
                "perfect": row["perfect"],
                "talk_ratio": _round(row["talk_ratio"], 2),
                "weekly": series.get(row["_id"], []),
            }
            for row in rows
        ]
    }


def _managers_of(buckets: list[Document]) -> ManagersReport:
    """The rating from buckets (by day): a manager's sums, and their sums by week."""
    totals: dict[str, Sums] = {}
    weekly: dict[str, dict[date, Sums]] = {}
    week_of = rollups.weeks(date.fromisoformat(bucket["day"]) for bucket in buckets)
    for bucket in buckets:
        manager_id, sums = bucket["manager_id"], Sums.of(bucket)
        totals.setdefault(manager_id, Sums()).add(sums)
        weeks, week = weekly.setdefault(manager_id, {}), week_of[date.fromisoformat(bucket["day"])]
        if week in weeks:
            weeks[week].add(sums)
        else:  # a bucket of a whole week is the week (most are)
            weeks[week] = sums
    by_rating = sorted(totals.items(), key=lambda item: (-item[1].rating, item[0]))
    return {
        "items": [
            {
                "manager_id": manager_id,
                "manager_name": total.manager_name,
                "calls": total.calls,
                "analysed": total.analysed,
                "rating": total.rating,
                "average_score": _round(total.average_score()),
                "perfect": total.perfect,
                "talk_ratio": _round(total.average_talk_ratio(), 2),
                "weekly": [
                    {"week": week.isoformat(), "average": _round(sums.average_score())}
                    for week, sums in sorted(weekly[manager_id].items())
                    if sums.analysed
                ],
            }
            for manager_id, total in by_rating
        ]
    }


class DayStats(TypedDict):
    day: Day
    calls: int
    average_score: Percent | None


class FailedStage(TypedDict):
    stage: str
    failed: Annotated[int, Field(description="Calls where it applied and failed")]


# `from` is a keyword, so this one is declared as a mapping.
TalkRatioBucket = TypedDict(
    "TalkRatioBucket", {"from": Ratio, "to": Ratio, "calls": int}, total=True
)


class Dashboard(TypedDict):
    """Calls and average score per day, the stages failed most, the talk ratios."""

    days: list[DayStats]
    failed_stages: list[FailedStage]
    talk_ratio: list[TalkRatioBucket]


async def dashboard(
    db: AsyncDatabase[Document], viewer: User, filters: CallFilters, *, rollup_zone: str
) -> Dashboard:
    """Calls and average score per day, the stages failed most often, the talk ratios;
    from the rollups when they hold the filters (kept in `rollup_zone`)."""
    if rollups.answers(filters, rollup_zone):
        return _dashboard_of(await rollups.buckets(db, viewer, filters), filters)
    match = filters.query(viewer)
    daily = await (
        await calls(db).aggregate(
            [
                {"$match": match},
                {
                    "$group": {
                        "_id": {
                            "$dateToString": {
                                "format": "%Y-%m-%d",
                                "date": "$received_at",
                                "timezone": filters.tz,
                            }
                        },
                        "calls": {"$sum": 1},
                        "average": {"$avg": "$score.percent"},
                    }
                },
                {"$sort": {"_id": 1}},
            ]
        )
    ).to_list()
    failed_stages = await (
        await calls(db).aggregate(
            [
                {"$match": {**match, "results.checklists": {"$exists": True}}},
                {"$unwind": "$results.checklists"},
                {"$unwind": "$results.checklists.stages"},
                {
                    "$match": {
                        "results.checklists.stages.applicable": True,
                        "results.checklists.stages.passed": False,
                    }
                },
                {"$group": {"_id": "$results.checklists.stages.name", "failed": {"$sum": 1}}},
                {"$sort": {"failed": -1, "_id": 1}},
                {"$limit": 10},
            ]
        )
    ).to_list()
    ratios = await (
        await calls(db).aggregate(
            [
                {"$match": {**match, "results.metrics.talk_ratio": {"$type": "number"}}},
                {
                    "$bucket": {
                        "groupBy": "$results.metrics.talk_ratio",
                        "boundaries": list(TALK_RATIO_BUCKETS),
                        "default": "other",
                        "output": {"calls": {"$sum": 1}},
                    }
                },
            ]
        )
    ).to_list()
    lows = list(TALK_RATIO_BUCKETS)
    by_day = {row["_id"]: row for row in daily}
    return {
        "days": [
            {
                "day": day,
                "calls": by_day.get(day, {}).get("calls", 0),
                "average_score": _round(by_day.get(day, {}).get("average")),
            }
            for day in _days(filters)
        ],
        "failed_stages": [{"stage": row["_id"], "failed": row["failed"]} for row in failed_stages],
        "talk_ratio": _talk_ratio(
            {lows.index(row["_id"]): row["calls"] for row in ratios if row["_id"] in lows}
        ),
    }


def _dashboard_of(buckets: list[Document], filters: CallFilters) -> Dashboard:
    by_day: dict[str, Sums] = {}
    total = Sums()
    for bucket in buckets:
        sums = Sums.of(bucket)
        by_day.setdefault(bucket["day"], Sums()).add(sums)
        total.add(sums)
    failed = sorted(total.failed_stages.items(), key=lambda item: (-item[1], item[0]))
    return {
        "days": [
            {
                "day": day,
                "calls": by_day[day].calls if day in by_day else 0,
                "average_score": _round(by_day[day].average_score()) if day in by_day else None,
            }
            for day in _days(filters)
        ],
        "failed_stages": [{"stage": name, "failed": count} for name, count in failed[:10]],
        "talk_ratio": _talk_ratio(dict(enumerate(total.talk_buckets))),
    }


def _days(filters: CallFilters) -> list[str]:
    first, last = filters.days()
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def _talk_ratio(counts: dict[int, int]) -> list[TalkRatioBucket]:
    """The talk-ratio histogram from the calls in each bucket (by its index)."""
    return [
        {"from": low, "to": min(high, 1.0), "calls": counts.get(index, 0)}
        for index, (low, high) in enumerate(itertools.pairwise(TALK_RATIO_BUCKETS))
    ]


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


class TableRow(CallIdentity):
    """What one analytics table collected from one call."""

    row: Annotated[dict[str, Any], Field(description="The table's fields by key")]


class TableRows(TypedDict):
    items: list[TableRow]
    next: Annotated[str | None, Field(description="`after` for the next page; null on the last")]


_TABLE_ROW_FIELDS = {
    "call_id": 1,
    "deal_id": 1,
    "manager_id": 1,
    "manager_name": 1,
    "results.tables": 1,
}


def _table_seek(
    db: AsyncDatabase[Document], viewer: User, table_id: str, filters: CallFilters
) -> Seek:
    """The calls in the filters that this table collected a row from, in list order."""
    where = {"results.tables.table_id": table_id}
    return Seek(db, viewer, filters, _TABLE_ROW_FIELDS, where=where)


def _table_row(document: Document, table_id: str) -> TableRow:
    """The call's row of this table (the seek selects calls that have one)."""
    table = next(t for t in document["results"]["tables"] if t.get("table_id") == table_id)
    return {**identity(document), "row": table.get("row") or {}}


async def table_page(
    db: AsyncDatabase[Document], viewer: User, table_id: str, filters: CallFilters
) -> TableRows:
    """One page of the rows one analytics table collected, from where the filters say it
    starts, and where the next page starts."""
    seek = _table_seek(db, viewer, table_id, filters)
    documents = await seek.rows(filters.start, filters.per_page + 1)
    page = documents[: filters.per_page]
    return {
        "items": [_table_row(document, table_id) for document in page],
        "next": Position.of(page[-1]).encode() if len(documents) > len(page) else None,
    }


async def table_rows(
    db: AsyncDatabase[Document], viewer: User, table_id: str, filters: CallFilters
) -> AsyncIterator[TableRow]:
    """Every row one analytics table collected from the calls in the filters, in list
    order (read a window at a time, for the Excel file): the call's identity, then the
    table's fields."""
    seek = _table_seek(db, viewer, table_id, filters)
    async for document in seek.each(None, EXPORT_LIMIT, batch=EXPORT_BATCH):
        yield _table_row(document, table_id)
