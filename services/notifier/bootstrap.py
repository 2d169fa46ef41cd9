"""The only place that builds the notifier's concrete adapters from settings."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from services.notifier.closing import TaskClosings
from services.notifier.endpoints import EndpointSlots
from services.notifier.handlers import Notifier
from services.notifier.payloads import TASK_FIELDS
from shared.group_commit import GroupFinder, GroupWriter
from shared.health import worker_connections
from shared.mongo import DELIVERIES, calls
from shared.settings import Settings
from shared.url_policy import policy_from_settings

USER_AGENT = "cifrovoy-rop-webhooks/1"


@contextlib.asynccontextmanager
async def bootstrap(settings: Settings) -> AsyncIterator[Notifier]:
    """Connect to the database and broker, open the policy-bound HTTP client."""
    policy = policy_from_settings(settings)
    schedule = tuple(float(delay) for delay in settings.webhook_retry_schedule_s)
    async with (
        worker_connections(settings) as (db, broker),
        policy.client_session(user_agent=USER_AGENT) as session,
    ):
        # One command of these at a time: overlapping, they cost an embedded database half
        # as much CPU again (`make bench-notify`: 2.8 ms a delivery against 1.85 ms).
        lane = asyncio.Lock()
        yield Notifier(
            db=db,
            broker=broker,
            writer=GroupWriter(db, lane=lane),
            closings=TaskClosings(db, lane=lane),
            task_reader=GroupFinder(calls(db), TASK_FIELDS, lane=lane),
            delivery_reader=GroupFinder(db[DELIVERIES], {"_id": 1}, lane=lane),
            session=session,
            policy=policy,
            schedule_s=schedule,
            timeout_s=settings.webhook_timeout_s,
            jitter=settings.webhook_retry_jitter,
            slots=EndpointSlots(settings.webhook_endpoint_concurrency),
            public_url=(settings.public_base_url or "").rstrip("/"),
            timezone=settings.timezone,
        )
