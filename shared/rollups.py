"""What the reports (the dashboard, the managers' rating) add up, kept per day × manager,
so that a report costs the days and managers it shows, not every call of its period: one
document per day holding every manager's bucket of it, and one per week (Sunday to
Saturday) adding its days up, so that eight weeks of the managers' rating read ten or so
documents, whatever the number of managers or calls.

A bucket (one manager's calls of one day, days in the configured zone) is always
recomputed from its calls, never incremented: recomputing twice gives the same numbers,
so an event delivered twice counts once and a lost race is mended by the next refresh.
The notifier refreshes the bucket of every call event (`call.received`, `.skipped`,
`.analyzed`, `.failed`: a new call, results, results again), coalescing a burst into one
refresh per bucket (a worker's job: the gateway's intake does not pay for it); `rebuild`
recomputes them all (at the gateway's first start, when the zone changes, by a CLI
command). The back office reads them (`services/ingest/backoffice/rollups.py`).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from time import monotonic
from zoneinfo import ZoneInfo

from pymongo import ReplaceOne
from pymongo.asynchronous.database import AsyncDatabase

from shared.amqp import Broker
from shared.events import Envelope, Event, utcnow
from shared.logging import get_logger
from shared.mongo import (
    ROLLUP_WEEKS,
    ROLLUPS,
    SCORE_VALUES,
    SETTINGS,
    Document,
    calls,
    find_in,
)
from shared.reviews import record_corrections

log = get_logger(__name__)

CONSUMER = "reports"
META_ID = "rollups"
VERSION = 4  # what a rebuild makes: a document per day and per week, and the score values
FLUSH_DELAY_S = 0.2  # a burst of events for the same buckets becomes one refresh each
IDLE_PER_BUSY = 9  # after refreshing for a second, wait nine
BUCKET_CALLS_PER_S = 200
PREFETCH = 500
TALK_RATIO_BUCKETS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.000001)
# What a bucket reads of each call.
_FIELDS = {
    "manager_id": 1,
    "manager_name": 1,
    "received_at": 1,
    "score": 1,
    "results.metrics.talk_ratio": 1,
    "results.checklists.stages.name": 1,
    "results.checklists.stages.applicable": 1,
    "results.checklists.stages.passed": 1,
}


def talk_bucket(ratio: float) -> int | None:
    """Which talk-ratio bucket a ratio falls in (None: out of range)."""
    for index, (low, high) in enumerate(itertools.pairwise(TALK_RATIO_BUCKETS)):
        if low <= ratio < high:
            return index
    return None


@dataclass
class Sums:
    """What a set of calls adds up to, for the reports."""

    calls: int = 0
    analysed: int = 0  # with a score
    rating: int = 0  # stages passed
    perfect: int = 0
    score_sum: float = 0.0
    talk_sum: float = 0.0
    talk_n: int = 0
    talk_buckets: list[int] = field(default_factory=lambda: [0] * 5)
    failed_stages: Counter[str] = field(default_factory=Counter)
    manager_name: str | None = None  # the latest the calls gave

    def add_call(self, call: Document) -> None:
        """Count a call (calls in the order they were received)."""
        self.calls += 1
        self.manager_name = call.get("manager_name") or self.manager_name
        score = call.get("score")
        if score is not None:
            self.analysed += 1
            self.rating += score.get("passed") or 0
            self.perfect += score.get("perfect") is True
            self.score_sum += score["percent"]
        results = call.get("results") or {}
        ratio = (results.get("metrics") or {}).get("talk_ratio")
        if isinstance(ratio, int | float) and not isinstance(ratio, bool):
            self.talk_sum += ratio
            self.talk_n += 1
            bucket = talk_bucket(ratio)
            if bucket is not None:
                self.talk_buckets[bucket] += 1
        for checklist in results.get("checklists") or []:
            for stage in checklist.get("stages") or []:
                if stage.get("applicable") is True and stage.get("passed") is False:
                    self.failed_stages[stage["name"]] += 1

    def add(self, other: Sums) -> None:
        """Add what later calls added up to."""
        self.manager_name = other.manager_name or self.manager_name
        self.calls += other.calls
        self.analysed += other.analysed
        self.rating += other.rating
        self.perfect += other.perfect
        self.score_sum += other.score_sum
        self.talk_sum += other.talk_sum
        self.talk_n += other.talk_n
        for index, count in enumerate(other.talk_buckets):
            self.talk_buckets[index] += count
        for stage, count in other.failed_stages.items():  # faster than Counter.update
            self.failed_stages[stage] += count

    def average_score(self) -> float | None:
        return self.score_sum / self.analysed if self.analysed else None

    def average_talk_ratio(self) -> float | None:
        return self.talk_sum / self.talk_n if self.talk_n else None

    def document(self) -> Document:
        return {
            "manager_name": self.manager_name,
            "calls": self.calls,
            "analysed": self.analysed,
            "rating": self.rating,
            "perfect": self.perfect,
            "score_sum": self.score_sum,
            "talk_sum": self.talk_sum,
            "talk_n": self.talk_n,
            "talk_buckets": self.talk_buckets,
            # Stage names may hold dots, so not as field names.
            "failed_stages": [
                {"stage": name, "failed": count} for name, count in self.failed_stages.items()
            ],
        }

    @classmethod
    def of(cls, document: Document) -> Sums:
        return cls(
            calls=document["calls"],
            analysed=document["analysed"],
            rating=document["rating"],
            perfect=document["perfect"],
            score_sum=document["score_sum"],
            talk_sum=document["talk_sum"],
            talk_n=document["talk_n"],
            talk_buckets=list(document["talk_buckets"]),
            failed_stages=Counter(
                {row["stage"]: row["failed"] for row in document["failed_stages"]}
            ),
            manager_name=document["manager_name"],
        )


def local_day(moment: datetime, zone: ZoneInfo) -> date:
    return moment.replace(tzinfo=moment.tzinfo or UTC).astimezone(zone).date()


def _day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, zone).astimezone(UTC)
    return start, datetime.combine(day + timedelta(days=1), time.min, zone).astimezone(UTC)


def week_of(day: date) -> date:
    """The first day of a day's week (Sunday, as MongoDB's `$dateTrunc`)."""
    return day - timedelta(days=(day.weekday() + 1) % 7)


def _bucket(manager_id: str, sums: Sums) -> Document:
    return {"manager_id": manager_id, **sums.document(), "computed_at": utcnow()}


async def _read(
    db: AsyncDatabase[Document], collection: str, key: str, first: date, last: date
) -> list[Document]:
    found = db[collection].find({key: {"$gte": first.isoformat(), "$lte": last.isoformat()}})
    return [
        {"day": document[key], **bucket}
        for document in await found.sort(key, 1).to_list()
        for bucket in sorted(document["managers"], key=lambda bucket: bucket["manager_id"])
    ]


async def buckets_of_days(db: AsyncDatabase[Document], first: date, last: date) -> list[Document]:
    """Every manager's bucket of these days, by day and manager (each with its `day`)."""
    return await _read(db, ROLLUPS, "day", first, last)


async def buckets_of_weeks(
    db: AsyncDatabase[Document], first: date, last: date, *, today: date
) -> list[Document]:
    """Every manager's buckets of these days by day and manager, a whole week within them
    as one bucket dated by its first day. So is the week of `today` when they reach it:
    its days still to come hold no calls."""
    weeks_from = week_of(first + timedelta(days=6))  # the first Sunday from `first` on
    end = last if last < today else week_of(last) + timedelta(days=6)
    weeks_to = week_of(end + timedelta(days=1))  # the Sunday after the last whole week
    if weeks_from >= weeks_to:
        return await buckets_of_days(db, first, last)
    before = (
        await buckets_of_days(db, first, weeks_from - timedelta(days=1))
        if first < weeks_from
        else []
    )
    weeks = await _read(db, ROLLUP_WEEKS, "week", weeks_from, weeks_to - timedelta(days=7))
    after = await buckets_of_days(db, weeks_to, last) if weeks_to <= last else []
    return before + weeks + after


def _week_documents(buckets: list[Document]) -> list[Document]:
    """The week documents adding these buckets of days up."""
    weeks: dict[date, dict[str, Sums]] = {}
    for bucket in buckets:  # by day: the latest manager name last
        week = weeks.setdefault(week_of(date.fromisoformat(bucket["day"])), {})
        week.setdefault(bucket["manager_id"], Sums()).add(Sums.of(bucket))
    return [
        {
            "_id": week.isoformat(),
            "week": week.isoformat(),
            "managers": [
                _bucket(manager_id, sums) for manager_id, sums in sorted(managers.items())
            ],
        }
        for week, managers in sorted(weeks.items())
    ]


async def refresh_weeks(db: AsyncDatabase[Document], weeks: set[date]) -> None:
    """Add up these weeks again from their days (after refreshing buckets of them)."""
    for week in sorted(weeks):
        documents = _week_documents(await buckets_of_days(db, week, week + timedelta(days=6))) or [
            {"_id": week.isoformat(), "week": week.isoformat(), "managers": []}
        ]
        await _replace_all(db, ROLLUP_WEEKS, documents)


async def _replace_all(
    db: AsyncDatabase[Document], collection: str, documents: list[Document]
) -> None:
    writes = [ReplaceOne({"_id": document["_id"]}, document, upsert=True) for document in documents]
    for start in range(0, len(writes), 100):  # a refresh meanwhile is replaced, not refused
        await db[collection].bulk_write(writes[start : start + 100], ordered=False)


async def refresh_bucket(
    db: AsyncDatabase[Document], zone: ZoneInfo, day: date, manager_id: str
) -> int:
    """Recompute one manager's day from its calls (an empty day is deleted); how many
    calls it has."""
    start, end = _day_bounds(day, zone)
    cursor = calls(db).find(
        {"manager_id": manager_id, "received_at": {"$gte": start, "$lt": end}}, _FIELDS
    )
    sums = Sums()
    async for call in cursor.sort("received_at", 1):
        sums.add_call(call)
    others = {
        "$filter": {
            "input": {"$ifNull": ["$managers", []]},
            "as": "bucket",
            "cond": {"$ne": ["$$bucket.manager_id", manager_id]},
        }
    }
    managers = (
        {"$concatArrays": [others, [{"$literal": _bucket(manager_id, sums)}]]}
        if sums.calls
        else others  # an empty bucket is no bucket
    )
    await db[ROLLUPS].update_one(
        {"_id": day.isoformat()},
        [{"$set": {"day": day.isoformat(), "managers": managers}}],
        upsert=True,
    )
    return sums.calls


async def remember_score(db: AsyncDatabase[Document], percent: float) -> None:
    """Note a score a call has, before the call is stored with it: the score sorts walk
    the scores there are (a few dozen at most: passed of applicable stages)."""
    await db[SCORE_VALUES].replace_one({"_id": percent}, {"_id": percent}, upsert=True)


async def score_values(db: AsyncDatabase[Document]) -> list[float]:
    """Every score a call has had, lowest first."""
    return sorted(value["_id"] for value in await db[SCORE_VALUES].find({}).to_list())


async def rebuild(db: AsyncDatabase[Document], timezone: str) -> int:
    """Recompute every bucket from all the calls (in the zone), and note every score they
    have; how many buckets there are."""
    zone = ZoneInfo(timezone)
    buckets: dict[tuple[date, str], Sums] = {}
    scores: set[float] = set()
    async for call in calls(db).find({}, _FIELDS).sort("received_at", 1):
        key = (local_day(call["received_at"], zone), call["manager_id"])
        buckets.setdefault(key, Sums()).add_call(call)
        if call.get("score") is not None:
            scores.add(call["score"]["percent"])
    for percent in scores:
        await remember_score(db, percent)
    days: dict[date, list[Document]] = {}
    for (day, manager_id), sums in sorted(buckets.items()):
        days.setdefault(day, []).append(_bucket(manager_id, sums))
    documents: list[Document] = [
        {"_id": day.isoformat(), "day": day.isoformat(), "managers": managers}
        for day, managers in days.items()
    ]
    await db[ROLLUPS].delete_many({})
    await db[ROLLUP_WEEKS].delete_many({})
    await _replace_all(db, ROLLUPS, documents)
    await _replace_all(
        db,
        ROLLUP_WEEKS,
        _week_documents(
            [
                {"day": document["day"], **bucket}
                for document in documents
                for bucket in document["managers"]
            ]
        ),
    )
    await db[SETTINGS].replace_one(
        {"_id": META_ID},
        {"zone": timezone, "version": VERSION, "built_at": utcnow()},
        upsert=True,
    )
    return len(buckets)


async def ensure_built(db: AsyncDatabase[Document], timezone: str) -> int | None:
    """Rebuild when the rollups were never built, by an older version, or for another
    zone; buckets made."""
    meta = await db[SETTINGS].find_one({"_id": META_ID})
    if meta is not None and (meta.get("zone"), meta.get("version")) == (timezone, VERSION):
        return None
    return await rebuild(db, timezone)


class Refresher:
    """Refreshes the buckets of the calls whose events arrive, a burst at a time: an event
    is acknowledged once its call's bucket was recomputed after the event arrived (and
    its corrections recorded for the trust page, `shared/reviews.py`).

    Under a heavy intake the reports lag a little rather than slow the intake down: at
    most a tenth of the time goes to refreshing, and a bucket of n calls is refreshed at
    most every n / BUCKET_CALLS_PER_S seconds (a manager's day of 100 calls: half a
    second; thousands of calls under one manager id: seconds)."""

    def __init__(self, db: AsyncDatabase[Document], timezone: str) -> None:
        self._db = db
        self._zone = ZoneInfo(timezone)
        self._waiting: dict[str, asyncio.Future[None]] = {}  # by task id
        self._not_before: dict[tuple[date, str], float] = {}  # by bucket
        self._wake = asyncio.Event()

    async def handle(self, envelope: Envelope, _event: Event) -> None:
        if envelope.task_id not in self._waiting:
            self._waiting[envelope.task_id] = asyncio.get_running_loop().create_future()
        self._wake.set()
        await asyncio.shield(self._waiting[envelope.task_id])

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(FLUSH_DELAY_S)
            self._wake.clear()
            waiting, self._waiting = self._waiting, {}
            started = monotonic()
            try:
                deferred = await self._refresh(list(waiting))
            except Exception as exc:  # the events are requeued and come back
                log.warning("rollup_refresh_failed", error=repr(exc))
                for done in waiting.values():
                    done.set_exception(exc)
            else:
                for task_id, done in waiting.items():
                    if task_id in deferred:
                        self._wait_again(task_id, done)
                    else:
                        done.set_result(None)
            await asyncio.sleep((monotonic() - started) * IDLE_PER_BUSY)

    def _wait_again(self, task_id: str, done: asyncio.Future[None]) -> None:
        later = self._waiting.setdefault(task_id, done)
        if later is not done:  # the same call's event came again meanwhile: share its fate
            later.add_done_callback(lambda refreshed: _settle_like(done, refreshed))

    async def _refresh(self, task_ids: list[str]) -> set[str]:
        """Refresh the buckets of these calls that are due; the calls whose bucket is not."""
        found = find_in(  # a burst is hundreds of ids: a long `$in` costs its square
            calls(self._db),
            "_id",
            task_ids,
            projection={"manager_id": 1, "received_at": 1, "call_id": 1, "corrections": 1},
        )
        by_bucket: dict[tuple[date, str], list[str]] = {}
        corrected = []
        async for call in found:  # a call not stored: nothing counted
            key = (local_day(call["received_at"], self._zone), call["manager_id"])
            by_bucket.setdefault(key, []).append(call["_id"])
            if call.get("corrections"):
                corrected.append(call)
        await record_corrections(self._db, corrected)  # for the trust page
        now = monotonic()
        self._not_before = {key: at for key, at in self._not_before.items() if at > now}
        deferred: set[str] = set()
        weeks: set[date] = set()
        for key in sorted(by_bucket):
            if key in self._not_before:
                deferred.update(by_bucket[key])
                continue
            size = await refresh_bucket(self._db, self._zone, *key)
            self._not_before[key] = monotonic() + size / BUCKET_CALLS_PER_S
            weeks.add(week_of(key[0]))
        await refresh_weeks(self._db, weeks)
        if deferred:
            due_in = min(self._not_before.values()) - monotonic()
            asyncio.get_running_loop().call_later(max(0.0, due_in), self._wake.set)
        return deferred


def _settle_like(future: asyncio.Future[None], settled: asyncio.Future[None]) -> None:
    error = settled.exception()
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


async def maintain(db: AsyncDatabase[Document], broker: Broker, timezone: str) -> None:
    """Keep the rollups in step with the call events, until cancelled."""
    refresher = Refresher(db, timezone)
    flushing = asyncio.create_task(refresher.run(), name="rollup-refresh")
    try:
        await broker.consume(CONSUMER, refresher.handle, prefetch=PREFETCH)
    finally:
        flushing.cancel()
        await asyncio.gather(flushing, return_exceptions=True)
