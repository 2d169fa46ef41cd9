"""Run the downloader: `python -m services.downloader`."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable

from services.downloader.bootstrap import bootstrap
from services.downloader.handlers import download_call, fail_poisoned, sweep_expired_audio
from shared.health import run_all, serve_worker, worker_health
from shared.logging import get_logger
from shared.settings import Settings

log = get_logger("services.downloader")

SWEEP_INTERVAL_S = 3600.0


async def _sweep_forever(run_sweep: Callable[[], Awaitable[int]]) -> None:
    while True:
        try:
            deleted = await run_sweep()
            if deleted:
                log.info("expired_audio_deleted", files=deleted)
        except Exception as exc:
            log.warning("audio_sweep_failed", error=repr(exc))
        await asyncio.sleep(SWEEP_INTERVAL_S)


async def run(settings: Settings) -> None:
    """Consume `CallReceived` and sweep expired audio until cancelled."""
    async with (
        bootstrap(settings) as deps,
        worker_health(settings, deps.db, deps.broker, deps.metrics),
    ):
        log.info("downloader_started")
        await run_all(
            deps.broker.consume(
                "downloader",
                functools.partial(download_call, deps=deps),
                prefetch=settings.downloader_prefetch,
                on_dead_letter=functools.partial(fail_poisoned, deps),
                metrics=deps.metrics,
            ),
            _sweep_forever(
                functools.partial(
                    sweep_expired_audio, deps.db, retention_days=settings.audio_retention_days
                )
            ),
        )


def main() -> None:
    """Run until SIGINT or SIGTERM; stopping, it takes no more calls and finishes the
    downloads it holds for a while; the unfinished ones go back to the queue."""
    serve_worker("downloader", run)


if __name__ == "__main__":
    main()
