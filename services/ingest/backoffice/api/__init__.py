"""The back office's JSON API (what the web app shows), behind sessions and roles; its
parts mirror the web app's pages."""

from __future__ import annotations

from services.ingest.backoffice.api import alerts, calls, login, reports, reviews, settings

ROUTE_TABLES = (
    login.routes,
    settings.routes,
    calls.routes,
    reviews.routes,
    reports.routes,
    alerts.routes,
)
