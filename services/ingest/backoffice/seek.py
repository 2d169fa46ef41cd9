"""Reading the calls in list order, a page at a time, at the cost of the page: a page
starts after the last call of the one before (`Position`), and the calls are read from
the index in windows of time that grow until the page is full; the score sorts walk the
scores the calls have, one value at a time, each the same way.

SecantusDB reads every document of an index range before it sorts and limits, so a
narrow range is the only way to read little; on MongoDB the same windows are index
seeks. A week of 20,000 calls is read an hour or two at a time, page 100 as cheaply as
page 1, and calls arriving meanwhile never shift a page (they are before it, or read by
the page they fall in).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from typing import Literal

from pymongo.asynchronous.database import AsyncDatabase

from services.ingest.backoffice.accounts import User
from services.ingest.backoffice.filters import CallFilters, Position
from shared.events import utcnow
from shared.mongo import Document, all_of, calls
from shared.rollups import score_values

FIRST_WINDOW = timedelta(hours=1)
SHORTEST_WINDOW = timedelta(minutes=1)
MARGIN = 1.5  # a window is sized for half as many calls again as the page needs
# Calls are received now, not later; a gateway's clock may be a little ahead.
CLOCK_SKEW = timedelta(minutes=5)


class Seek:
    """One walk through the filters' calls in list order, from a position."""

    def __init__(
        self,
        db: AsyncDatabase[Document],
        viewer: User,
        filters: CallFilters,
        projection: Document,
        *,
        expected: int | None = None,
        where: Document | None = None,
    ) -> None:
        """`expected`: how many calls the filters select, when known; `where`: what else
        the calls must hold."""
        self._db = db
        self._viewer = viewer
        self._filters = filters
        self._where = where or {}
        self._projection = {**projection, "received_at": 1, "score": 1}  # its position
        self._start, end = filters.period()
        self._end = min(end, utcnow() + CLOCK_SKEW)
        self._window = FIRST_WINDOW
        if expected:  # calls in the period, when known: the first window holds a page
            self._window = max(
                SHORTEST_WINDOW,
                max(self._end - self._start, SHORTEST_WINDOW)
                * min(1.0, MARGIN * filters.per_page / expected),
            )

    async def rows(self, after: Position | None, limit: int) -> list[Document]:
        """Up to `limit` calls after `after` (None: from the first)."""
        return [document async for document in self.each(after, limit, batch=limit)]

    async def each(
        self, after: Position | None, limit: int, *, batch: int
    ) -> AsyncIterator[Document]:
        """Up to `limit` calls after `after` in list order, read about `batch` at a time."""
        left = limit
        async for found in self.batches(after, min(batch, limit)):
            for document in found[:left]:
                yield document
            left -= len(found)
            if left <= 0:
                return

    async def batches(self, after: Position | None, wanted: int) -> AsyncIterator[list[Document]]:
        """The calls after `after` in list order, a window at a time, each window sized for
        `wanted` calls."""
        if not self._filters.by_score:
            async for batch in self._in_time(None, after, wanted):
                yield batch
            return
        for value in await self._scores(after):
            async for batch in self._in_time(value, after if _same(after, value) else None, wanted):
                yield batch
            self._window = FIRST_WINDOW  # the next score's calls are spread otherwise

    async def count(self, cap: int) -> int:
        """How many calls the filters select, counted a window at a time from the newest;
        once past `cap`, no further."""
        counted = 0
        for window in self._windows(self._end, newest_first=True):
            found = await calls(self._db).count_documents(
                all_of(self._filters.query(self._viewer, received=window), self._where)
            )
            counted += found
            if counted > cap:
                break
            self._grow(found, cap + 1 - counted)
        return counted

    async def _scores(self, after: Position | None) -> list[float | None]:
        """The scores to walk, in the sort's order, from the position's; None (no score)
        first in ascending order and last in descending, as MongoDB sorts a missing field."""
        values: list[float | None] = [None, *await score_values(self._db)]
        descending = self._filters.sort == "score_desc"
        if descending:
            values = [*sorted((v for v in values if v is not None), reverse=True), None]
        values = [value for value in values if self._filters.admits_score(value)]
        if after is None:
            return values
        return values[values.index(after.score) :] if after.score in values else []

    async def _in_time(
        self, score: float | None, after: Position | None, wanted: int
    ) -> AsyncIterator[list[Document]]:
        """The calls (of one score, for the score sorts) in list order within the period,
        window by window, from the call after `after`."""
        newest_first = self._filters.newest_first
        score_condition: float | Literal["range"] | None = (
            score if self._filters.by_score else "range"
        )
        if after is not None:  # the calls received in the same millisecond, after it
            ties = await self._find(
                after.received_at,
                score_condition,
                wanted,
                {"_id": {"$lt" if newest_first else "$gt": after.task_id}},
            )
            if ties:
                yield ties
        edge = after.received_at if after else (self._end if newest_first else self._start)
        # The position's own millisecond is read already.
        windows = self._windows(edge, newest_first=newest_first, open_edge=after is not None)
        for window in windows:
            batch = await self._find(window, score_condition, wanted)
            if batch:
                yield batch
            self._grow(len(batch), wanted)

    def _windows(
        self, edge: datetime, *, newest_first: bool, open_edge: bool = False
    ) -> Iterator[Document]:
        """Ranges of `received_at` from `edge` to the end of the period the walk goes to,
        each as wide as the window is when it is asked for (`_grow` sizes it)."""
        while self._start < edge if newest_first else edge < self._end:
            if newest_first:
                low = max(self._start, edge - self._window)
                yield {"$gte": low, "$lt": edge}
                edge = low
            else:
                high = min(self._end, edge + self._window)
                yield {"$gt" if open_edge else "$gte": edge, "$lt": high}
                edge, open_edge = high, False

    async def _find(
        self,
        received: Document | datetime,
        score: float | Literal["range"] | None,
        limit: int,
        extra: Document | None = None,
    ) -> list[Document]:
        query = self._filters.query(self._viewer, received=received, score=score)
        cursor = calls(self._db).find(all_of(query, self._where, extra or {}), self._projection)
        return await cursor.sort(self._filters.sort_keys()).limit(limit).to_list()

    def _grow(self, found: int, wanted: int) -> None:
        """Size the next window by the calls the last one held."""
        if found >= wanted:
            return
        rate = found / self._window.total_seconds()
        needed = timedelta(seconds=MARGIN * wanted / rate) if rate else self._window * 4
        self._window = min(
            max(needed, self._window * 2), max(self._end - self._start, SHORTEST_WINDOW)
        )


def _same(after: Position | None, value: float | None) -> bool:
    return after is not None and after.score == value
