"""The only place that builds the gateway's concrete adapters from settings."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from services.ingest.backoffice import accounts
from services.ingest.backoffice.deliveries import give_deliveries_their_manager
from services.ingest.backoffice.samples import ensure_samples
from services.ingest.intake.tasks import IntakeState, refresh_intake_state
from services.ingest.metrics import IngestMetrics
from shared import call_details, rollups, search_index
from shared.amqp import Broker
from shared.connection import ensure_connection_settings
from shared.group_commit import GroupWriter
from shared.logging import get_logger
from shared.mongo import Document, calls, connect_mongo, database, ensure_indexes
from shared.outbox import OutboxRelay
from shared.patience import patiently
from shared.search_index import Vocabulary
from shared.settings import Settings
from shared.url_policy import UrlPolicy, policy_from_settings

log = get_logger(__name__)

STATE_REFRESH_INTERVAL_S = 2.0


@dataclass
class Ingest:
    """Everything the gateway's views need, built once per process."""

    settings: Settings
    mongo: AsyncMongoClient[Document]
    db: AsyncDatabase[Document]
    inserter: GroupWriter
    broker: Broker
    relay: OutboxRelay
    state: IntakeState
    metrics: IngestMetrics
    policy: UrlPolicy  # the links saved here are the ones the downloader and notifier fetch
    vocabulary: Vocabulary = field(default_factory=Vocabulary)  # what search matches words to


# How long the gateway's own loops get to stop when it shuts down.
WORKERS_STOP_S = 5.0


async def _refresh_forever(ingest: Ingest) -> None:
    while True:
        await asyncio.sleep(STATE_REFRESH_INTERVAL_S)
        try:
            await refresh_intake_state(ingest.db, ingest.state)
        except Exception as exc:
            log.warning("intake_state_refresh_failed", error=repr(exc))


async def _provision(db: AsyncDatabase[Document], settings: Settings) -> IntakeState:
    """Indexes, connection settings, the first admin and the samples: what the gateway
    needs before it takes a request."""
    await ensure_indexes(db)
    connection = await ensure_connection_settings(db, initial_api_key=settings.initial_api_key())
    password_file = await accounts.ensure_initial_admin(
        db,
        email=settings.admin_email,
        password=(settings.admin_password.get_secret_value() if settings.admin_password else None),
        state_dir=settings.state_dir,
    )
    if password_file is not None:
        log.warning(
            "initial_admin_created",
            email=settings.admin_email,
            password_file=str(password_file.resolve()),
            hint="read the password from this file (make admin-password), then delete it",
        )
    if settings.seed_samples and await ensure_samples(db):
        log.info("sample_script_created", hint="edit or delete it in the admin API")
    if fixed := await give_deliveries_their_manager(db):
        log.info("deliveries_given_their_manager", deliveries=fixed)
    if moved := await call_details.move_inline(db):
        log.info("call_details_moved", calls=moved)
    await search_index.mark_unindexed(db)  # the analyzers index them when idle
    if (built := await rollups.ensure_built(db, settings.timezone)) is not None:
        log.info("rollups_rebuilt", buckets=built, zone=settings.timezone)
    state = IntakeState(connection=connection, calls_per_minute=settings.estimate_calls_per_minute)
    await refresh_intake_state(db, state)
    return state


@contextlib.asynccontextmanager
async def bootstrap(settings: Settings, metrics: IngestMetrics) -> AsyncIterator[Ingest]:
    """Connect (waiting for the database while it is away, before listening), provision
    first-start data, run the outbox relay; undo it all on exit."""
    mongo = connect_mongo(settings.mongo_url)
    broker = Broker(settings.amqp_url, prefix=settings.amqp_prefix)
    try:
        db = database(mongo)
        state = await patiently(
            lambda: _provision(db, settings), errors=(PyMongoError,), dependency="database"
        )
        relay = OutboxRelay(
            calls(db),
            broker,
            poll_interval_s=settings.outbox_poll_interval_s,
            on_backlog=metrics.outbox_backlog.set,
        )
        ingest = Ingest(
            settings=settings,
            mongo=mongo,
            db=db,
            inserter=GroupWriter(db),
            broker=broker,
            relay=relay,
            state=state,
            metrics=metrics,
            policy=policy_from_settings(settings),
        )
        workers = [
            asyncio.create_task(relay.run(), name="outbox-relay"),
            asyncio.create_task(_refresh_forever(ingest), name="intake-state"),
        ]
        try:
            yield ingest
        finally:
            for worker in workers:
                worker.cancel()
            # Bounded: a worker that does not stop must not hold the gateway's exit.
            _, stuck = await asyncio.wait(workers, timeout=WORKERS_STOP_S)
            for worker in stuck:
                log.error("worker_did_not_stop", worker=worker.get_name(), stack=repr(worker))
    finally:
        await broker.close()
        await mongo.close()
