"""The reports' day × manager rollups: equal to aggregating the calls themselves, the same
after a rebuild, and kept in step by the call events, each counted once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pymongo import AsyncMongoClient

from devtools.samples import analysed_call
from services.ingest.backoffice import reports
from services.ingest.backoffice.accounts import User
from services.ingest.backoffice.filters import CallFilters
from services.ingest.backoffice.rollups import answers
from shared import rollups
from shared.amqp import Broker
from shared.events import CallAnalyzed, CallReviewed, Envelope
from shared.settings import Settings
from tests.helpers import ADMIN, TEAM, wait_for

MOSCOW = ZoneInfo("Europe/Moscow")  # the test settings' zone


def _seeded() -> list[dict[str, Any]]:
    """Calls over twelve days of five managers, some at the edges of Moscow's days, some
    not analysed, one with a failed stage named with a dot."""
    now = datetime.now(UTC).replace(hour=20, minute=59, second=0, microsecond=0)
    documents = []
    for index in range(1, 121):
        call = analysed_call(
            index,
            manager_id=f"mgr_{index % 5}",
            passed=index % 4,
            applicable=3 + index % 2,
            talk_ratio=(index % 11) / 10,
        )
        # 20:59 or 21:01 UTC: either side of midnight in Moscow.
        call["received_at"] = now - timedelta(days=index % 12, minutes=-2 * (index % 2))
        if index % 7 == 0:
            call.update(score=None, results=None, status="failed")
        elif index % 9 == 0:
            call["results"]["checklists"][0]["stages"][-1]["name"] = "Этап 2.1"
        documents.append(call)
    return documents


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo_url, tz_aware=True)
    database = client.get_default_database()
    await database.calls.insert_many(_seeded())
    await rollups.rebuild(database, settings.timezone)
    yield database
    await client.close()


@pytest.mark.parametrize("viewer", [ADMIN, TEAM], ids=["admin", "supervisor"])
@pytest.mark.parametrize(
    "period",
    [
        {},
        {"date_from": "2000-01-01"},
        {"date_from": (datetime.now(UTC) - timedelta(weeks=8)).date().isoformat()},
        {"date_from": rollups.week_of(datetime.now(MOSCOW).date()).isoformat()},
        {"manager_id": "mgr_1"},
        {"date_to": "2000-01-01"},
    ],
    ids=["week", "all", "eight weeks", "this week", "manager", "empty"],
)
async def test_reports_from_rollups_equal_aggregating_the_calls(
    db: Any, settings: Settings, viewer: User, period: dict[str, str]
) -> None:
    filters = CallFilters.from_query(period, tz=settings.timezone)
    assert answers(filters, settings.timezone)
    zone = settings.timezone
    # No zone matches "": the reports aggregate the calls themselves.
    assert await reports.dashboard(db, viewer, filters, rollup_zone=zone) == (
        await reports.dashboard(db, viewer, filters, rollup_zone="")
    )
    rating = await reports.managers(db, viewer, filters, rollup_zone=zone)
    assert rating == await reports.managers(db, viewer, filters, rollup_zone="")
    if period.get("date_to") != "2000-01-01":
        assert rating["items"], "the comparison must hold something"


async def test_filters_the_rollups_do_not_hold_aggregate_the_calls(settings: Settings) -> None:
    zone = settings.timezone
    assert not answers(CallFilters.from_query({"status": "done"}, tz=zone), zone)
    assert not answers(CallFilters.from_query({"score_min": "50"}, tz=zone), zone)
    assert not answers(CallFilters.from_query({}, tz="UTC"), zone)


async def test_a_rebuild_from_scratch_gives_the_same_buckets(db: Any, settings: Settings) -> None:
    zone = ZoneInfo(settings.timezone)
    for bucket in await _buckets(db):
        day = date.fromisoformat(bucket["day"])
        await rollups.refresh_bucket(db, zone, day, bucket["manager_id"])
    refreshed = await _buckets(db)
    assert len(refreshed) == 30  # six Moscow days (the calls sit at their edges) × five managers
    assert await rollups.rebuild(db, settings.timezone) == len(refreshed)
    assert await _buckets(db) == refreshed
    assert await rollups.ensure_built(db, settings.timezone) is None  # built for this zone
    assert await rollups.ensure_built(db, "UTC") == len(await _buckets(db))  # zone changed


async def _buckets(db: Any) -> list[dict[str, Any]]:
    return [
        {key: value for key, value in bucket.items() if key != "computed_at"}
        for bucket in await rollups.buckets_of_days(db, date.min, date.max)
    ]


async def test_call_events_keep_the_rollups_in_step_and_count_once(settings: Settings) -> None:
    """What the notifier runs refreshes a call's bucket on its events: a new call counts,
    a re-analysis replaces its numbers, and an event delivered twice counts once."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo_url, tz_aware=True)
    db = client.get_default_database()
    broker = Broker(settings.amqp_url, prefix=settings.amqp_prefix)
    await broker.connect()
    maintaining = asyncio.create_task(rollups.maintain(db, broker, settings.timezone))
    try:
        call = analysed_call(1, manager_id="mgr_7", passed=1, applicable=2)
        await db.calls.insert_one(call)
        meta = {key: call[key] for key in ("call_id", "deal_id", "manager_id")}
        analysed = Envelope.wrap(
            CallAnalyzed(**meta, duration_s=60, checklists=1, tables=0), task_id=call["_id"]
        )
        for _ in range(2):  # delivered twice
            await broker.publish(analysed)

        async def bucket() -> dict[str, Any] | None:
            found = [b for b in await _buckets(db) if b["manager_id"] == "mgr_7"]
            return found[0] if found else None

        first = await wait_for(bucket, timeout_s=10)
        assert (first["calls"], first["analysed"], first["rating"]) == (1, 1, 1)

        await db.calls.update_one(
            {"_id": call["_id"]}, {"$set": {"score.passed": 2, "score.percent": 100.0}}
        )
        await broker.publish(
            Envelope.wrap(
                CallAnalyzed(**meta, duration_s=60, checklists=1, tables=0), task_id=call["_id"]
            )
        )

        async def reanalysed() -> dict[str, Any] | None:
            found = await bucket()
            return found if found and found["rating"] == 2 else None

        again = await wait_for(reanalysed, timeout_s=10)
        assert (again["calls"], again["analysed"], again["score_sum"]) == (1, 1, 100.0)
        # Its week, whole to its Saturday, is added up again from its days too.
        today = datetime.now(ZoneInfo(settings.timezone)).date()
        saturday = rollups.week_of(today) + timedelta(days=6)
        filters = CallFilters.from_query(
            {"date_from": "2000-01-01", "date_to": saturday.isoformat()}, tz=settings.timezone
        )

        async def weekly() -> dict[str, Any] | None:
            rating = await reports.managers(db, ADMIN, filters, rollup_zone=settings.timezone)
            return dict(rating) if rating["items"] and rating["items"][0]["rating"] == 2 else None

        assert await wait_for(weekly, timeout_s=10) == dict(
            await reports.managers(db, ADMIN, filters, rollup_zone="")
        )

        # A person's correction changes the score: its event refreshes the bucket too.
        await db.calls.update_one(
            {"_id": call["_id"]}, {"$set": {"score.passed": 1, "score.percent": 50.0}}
        )
        reviewed = CallReviewed(**meta, binding_ids=["bnd_1"], revision=3)
        await broker.publish(Envelope.wrap(reviewed, task_id=call["_id"]))

        async def corrected() -> dict[str, Any] | None:
            found = await bucket()
            return found if found and found["rating"] == 1 else None

        assert (await wait_for(corrected, timeout_s=10))["score_sum"] == 50.0
    finally:
        maintaining.cancel()
        await asyncio.gather(maintaining, return_exceptions=True)
        await broker.close()
        await client.close()


async def test_an_event_waiting_on_a_later_refresh_shares_its_failure(settings: Settings) -> None:
    """A call whose bucket was not due waits for the next refresh; when the same call's
    event came again meanwhile it waits on that one, and is not acknowledged if it fails."""
    refresher = rollups.Refresher(None, settings.timezone)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    later: asyncio.Future[None] = loop.create_future()
    refresher._waiting["task_1"] = later
    deferred: asyncio.Future[None] = loop.create_future()
    refresher._wait_again("task_1", deferred)
    later.set_exception(ConnectionError("database away"))
    with pytest.raises(ConnectionError):
        await deferred
