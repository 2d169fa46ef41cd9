"""The only place that builds the notifier's concrete adapters from settings."""

from __future__ import annotations

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
        yield Notifier(
            db=db,
            broker=broker,
            writer=GroupWriter(db),
            closings=TaskClosings(db),
            task_reader=GroupFinder(calls(db), TASK_FIELDS),
            delivery_reader=GroupFinder(db[DELIVERIES], {"_id": 1}),
            session=session,
            policy=policy,
            schedule_s=schedule,
            timeout_s=settings.webhook_timeout_s,
            jitter=settings.webhook_retry_jitter,
            slots=EndpointSlots(settings.webhook_endpoint_concurrency),
            public_url=(settings.public_base_url or "").rstrip("/"),
            timezone=settings.timezone,
        )
