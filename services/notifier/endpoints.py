"""The notifier's view of the CRM's endpoints: how many deliveries each may have in
flight, and the webhooks of bindings and tables with the endpoints that said 410 Gone."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field

from pymongo.asynchronous.database import AsyncDatabase

from shared.mongo import BINDINGS, ENDPOINTS, TABLES, Document


class EndpointSlots:
    """At most `limit` deliveries in flight per endpoint, so a slow CRM cannot starve others.

    As many more may wait here for a free slot; past that, `take` says no and the
    delivery waits in the broker instead of holding a prefetch slot.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._gates: dict[str, asyncio.Semaphore] = {}
        self._holders: dict[str, int] = defaultdict(int)  # in flight or waiting

    async def take(self, url: str) -> bool:
        if self._holders[url] >= 2 * self.limit:
            return False
        self._holders[url] += 1
        try:
            await self._gates.setdefault(url, asyncio.Semaphore(self.limit)).acquire()
        except BaseException:
            self._holders[url] -= 1
            raise
        return True

    def give_back(self, url: str) -> None:
        self._gates[url].release()
        self._holders[url] -= 1


@dataclass
class Directory:
    """Webhook endpoints of bindings and tables, and endpoints gone (410), read at most
    every `ttl_s`: a few queries per refresh instead of one per delivery, and one
    refresh shared by every delivery that finds the cache stale."""

    ttl_s: float = 2.0
    webhooks: dict[str, Document] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    loaded_at: float = -1e9
    _loading: asyncio.Task[None] | None = None

    async def webhooks_for(
        self, db: AsyncDatabase[Document], owners: list[str]
    ) -> dict[str, Document]:
        """Webhooks of these bindings/tables; one not seen yet forces a fresh read."""
        await self.refresh(db)
        if any(owner not in self.webhooks for owner in owners):
            await self._load(db)
        return self.webhooks

    async def refresh(self, db: AsyncDatabase[Document]) -> None:
        if time.monotonic() - self.loaded_at < self.ttl_s:
            return
        if self._loading is None:
            self._loading = asyncio.create_task(self._load(db))
        loading = self._loading
        try:
            await asyncio.shield(loading)
        finally:
            if self._loading is loading and loading.done():
                self._loading = None

    async def _load(self, db: AsyncDatabase[Document]) -> None:
        webhooks: dict[str, Document] = {}
        for collection in (BINDINGS, TABLES):
            async for item in db[collection].find({}, {"webhook": 1}):
                webhooks[item["_id"]] = item["webhook"]
        gone = {item["_id"] async for item in db[ENDPOINTS].find({"gone": True}, {"_id": 1})}
        self.webhooks, self.gone, self.loaded_at = webhooks, gone, time.monotonic()
