"""The only place that builds the downloader's concrete adapters from settings."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from services.downloader.fetch import FetchLimits
from services.downloader.handlers import Downloader
from shared.health import worker_connections
from shared.settings import Settings
from shared.url_policy import policy_from_settings

USER_AGENT = "cifrovoy-rop-downloader/1"


def fetch_limits(settings: Settings) -> FetchLimits:
    """The download bounds configured by `ROP_DOWNLOAD_*`."""
    return FetchLimits(
        max_bytes=settings.download_max_bytes,
        connect_timeout_s=settings.download_connect_timeout_s,
        read_timeout_s=settings.download_read_timeout_s,
        total_timeout_s=settings.download_total_timeout_s,
        attempts=settings.download_attempts,
        retry_initial_s=settings.download_retry_initial_s,
        retry_max_s=settings.download_retry_max_s,
    )


@contextlib.asynccontextmanager
async def bootstrap(settings: Settings) -> AsyncIterator[Downloader]:
    """Connect to Mongo and the broker and open the policy-bound HTTP client."""
    policy = policy_from_settings(settings)
    async with (
        worker_connections(settings) as (db, broker),
        policy.client_session(user_agent=USER_AGENT) as session,
    ):
        yield Downloader(
            db=db,
            session=session,
            broker=broker,
            policy=policy,
            limits=fetch_limits(settings),
            max_call_duration_s=settings.max_call_duration_s,
            min_audio_share=settings.download_min_audio_share,
        )
