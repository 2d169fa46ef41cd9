"""Run the notifier: `python -m services.notifier`."""

from __future__ import annotations

from services.notifier.bootstrap import bootstrap
from services.notifier.handlers import consume, send_digests_forever
from shared import rollups
from shared.health import run_all, serve_worker, worker_health
from shared.logging import get_logger
from shared.settings import Settings

log = get_logger("services.notifier")


async def run(settings: Settings) -> None:
    """Turn results into deliveries and alerts and attempt them, send the alerts' daily
    digests, and keep the reports' rollups in step with the calls, until cancelled."""
    async with (
        bootstrap(settings) as deps,
        worker_health(settings, deps.db, deps.broker, deps.metrics),
    ):
        log.info("notifier_started")
        await run_all(
            consume(deps, prefetch=settings.notifier_prefetch),
            send_digests_forever(deps),
            rollups.maintain(deps.db, deps.broker, settings.timezone),
        )


def main() -> None:
    """Run until SIGINT or SIGTERM; stopping, it takes no more events and finishes the
    attempts it holds (what a drain cannot finish is redelivered to another replica)."""
    serve_worker("notifier", run)


if __name__ == "__main__":
    main()
