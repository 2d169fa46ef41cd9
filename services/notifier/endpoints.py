"""The notifier's view of the CRM's endpoints: how many deliveries each may have in
flight, and the webhooks of bindings and tables with the endpoints that said 410 Gone;
and the alert rules that are on."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field

from pydantic import ValidationError
from pymongo.asynchronous.database import AsyncDatabase

from shared.alerts import AlertRule
from shared.logging import get_logger
from shared.mongo import ALERT_RULES, BINDINGS, ENDPOINTS, TABLES, Document

log = get_logger(__name__)


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


@dataclass(frozen=True)
class StoredRule:
    """An alert rule that is on, with what the notifier needs of its document."""

    id: str
    rule: AlertRule
    owner_id: str | None  # who made it: it fires only on the calls they may see
    webhook: Document | None  # the signed endpoint of its webhook channel

    @classmethod
    def of(cls, document: Document) -> StoredRule:
        webhook = document.get("webhook")
        fields = {name: document[name] for name in AlertRule.model_fields if name in document}
        fields["webhook"] = webhook and {"url": webhook["url"]}
        return cls(
            id=document["_id"],
            rule=AlertRule.model_validate(fields),
            owner_id=document.get("owner_id"),
            webhook=webhook,
        )


@dataclass
class Directory:
    """Webhook endpoints of bindings and tables, endpoints gone (410) and the alert rules
    on, read at most every `ttl_s`: a few queries per refresh instead of one per
    delivery, and one refresh shared by every delivery that finds the cache stale."""

    ttl_s: float = 2.0
    webhooks: dict[str, Document] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    rules: list[StoredRule] = field(default_factory=list)
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
        rules = []
        async for document in db[ALERT_RULES].find({"active": True}):
            try:
                rules.append(StoredRule.of(document))
            except ValidationError as exc:  # saved by a version that allowed it: skip it
                log.error("alert_rule_invalid", rule_id=document["_id"], error=str(exc))
        self.webhooks, self.gone, self.rules = webhooks, gone, rules
        self.loaded_at = time.monotonic()
