"""Run the notifier: `python -m services.notifier`."""

from __future__ import annotations

from services.notifier.bootstrap import bootstrap
from services.notifier.handlers import consume
from shared.health import serve_worker, worker_health
from shared.logging import get_logger
from shared.settings import Settings

log = get_logger("services.notifier")


async def run(settings: Settings) -> None:
    """Turn results into deliveries and attempt them until cancelled."""
    async with (
        bootstrap(settings) as deps,
        worker_health(settings, deps.db, deps.broker, deps.metrics),
    ):
        log.info("notifier_started")
        await consume(deps, prefetch=settings.notifier_prefetch)


def main() -> None:
    """Run until SIGINT or SIGTERM; unacknowledged attempts are redelivered."""
    serve_worker("notifier", run)


if __name__ == "__main__":
    main()
