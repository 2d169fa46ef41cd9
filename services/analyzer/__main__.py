"""Run the analyzer: `python -m services.analyzer`."""

from __future__ import annotations

import asyncio
import functools

from services.analyzer.bootstrap import bootstrap
from services.analyzer.handlers import fail_poisoned, queue_analysis, work_forever
from shared.events import Envelope, Event
from shared.health import run_all, serve_worker, worker_health
from shared.logging import get_logger
from shared.settings import Settings

log = get_logger("services.analyzer")

# One analysis at a time per process: ASR takes the CPU; scale with replicas.
QUEUE_PREFETCH = 16


async def run(settings: Settings) -> None:
    """Record jobs from `AudioStored` and work on them until cancelled."""
    async with (
        bootstrap(settings) as deps,
        worker_health(settings, deps.db, deps.broker, deps.metrics),
    ):
        wakeup = asyncio.Event()

        async def on_audio_stored(envelope: Envelope, event: Event) -> None:
            await queue_analysis(envelope, event, deps=deps)
            wakeup.set()

        log.info("analyzer_started", worker=deps.worker_id)
        await run_all(
            deps.broker.consume(
                "analyzer",
                on_audio_stored,
                prefetch=QUEUE_PREFETCH,
                on_dead_letter=functools.partial(fail_poisoned, deps),
                metrics=deps.metrics,
            ),
            work_forever(deps, wakeup),
        )


def main() -> None:
    """Run until SIGINT or SIGTERM; a job cut short by SIGTERM goes back to the queue at
    once, for another analyzer (a killed worker's job is taken over when it falls silent)."""
    serve_worker("analyzer", run)


if __name__ == "__main__":
    main()
