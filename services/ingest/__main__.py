"""Run the ingest gateway: `python -m services.ingest`."""

from __future__ import annotations

from aiohttp import web

from services.ingest.app import create_app
from shared.logging import configure_logging
from shared.settings import load_settings

# A filter may be a URL of 2048 characters: percent-encoded Cyrillic is 6 bytes a character.
MAX_REQUEST_LINE_BYTES = 32 * 1024


def main() -> None:
    """Serve the gateway until SIGINT or SIGTERM."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    web.run_app(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        access_log=None,
        print=None,
        shutdown_timeout=10,
        max_line_size=MAX_REQUEST_LINE_BYTES,
    )


if __name__ == "__main__":
    main()
