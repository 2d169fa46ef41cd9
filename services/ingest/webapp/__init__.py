"""The web application of the head of sales, served by the ingest gateway."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp_jinja2
import jinja2
from aiohttp import web

from services.ingest.backoffice.exports import clock
from services.ingest.webapp import (
    alert_pages,
    call_pages,
    frame,
    login_pages,
    report_pages,
    review_pages,
    settings_pages,
)

STATIC_DIR = Path(__file__).parent / "static"


def _percent(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:.{digits}f}%"


def setup(app: web.Application, timezone: str) -> None:
    """Templates, filters, static files and pages; times are shown in `timezone`."""
    zone = ZoneInfo(timezone)

    def when(value: str | datetime | None) -> str:
        """A moment as the people of the seed read it, in their zone: 27.11.2026 17:03."""
        if not value:
            return "—"
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        return f"{moment.astimezone(zone):%d.%m.%Y %H:%M}"

    environment = aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("services.ingest.webapp", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(when=when, clock=clock, percent=_percent)
    app.router.add_static("/static", STATIC_DIR, name="static", append_version=True)
    app.middlewares.append(frame.error_pages)
    for pages in (
        login_pages,
        call_pages,
        review_pages,
        report_pages,
        settings_pages,
        alert_pages,
    ):
        app.router.add_routes(pages.routes)
