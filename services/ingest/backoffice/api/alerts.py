"""Alerts through the JSON API: one's in-app notifications and marking them read, and
the log of alerts raised (the rules themselves are catalog routes, `/api/v1/alert-rules`)."""

from __future__ import annotations

from aiohttp import web

from services.ingest.apidoc import INVALID, Answer, documented
from services.ingest.backoffice import alerts
from services.ingest.backoffice.accounts import Role
from services.ingest.edge import INGEST, json_response, read_model, require_session
from services.ingest.intake.submission import JSON_TYPE

routes = web.RouteTableDef()


@routes.get("/api/v1/notifications")
@documented(
    "The caller's in-app notifications, newest first, and how many are unread", alerts.Notifications
)
async def list_notifications(request: web.Request) -> web.Response:
    """GET /api/v1/notifications (anyone logged in: their own)."""
    session = await require_session(request, Role.ADMIN, Role.SUPERVISOR, Role.MANAGER)
    return json_response(await alerts.notifications(request.app[INGEST].db, session.user))


@routes.post("/api/v1/notifications/read")
@documented(
    "Mark the caller's notifications read: the `ids` given, or all of them",
    body={JSON_TYPE: alerts.ReadForm},
    answer=Answer("Marked", alerts.Marked),
    errors=INVALID,
)
async def read_notifications(request: web.Request) -> web.Response:
    """POST /api/v1/notifications/read."""
    session = await require_session(request, Role.ADMIN, Role.SUPERVISOR, Role.MANAGER)
    form = await read_model(request, alerts.ReadForm)
    return json_response(await alerts.mark_read(request.app[INGEST].db, session.user, form))


@routes.get("/api/v1/alerts")
@documented(
    "The latest alerts raised on calls the caller may see, with each channel's outcome "
    "(admin, supervisor)",
    alerts.AlertLog,
)
async def alert_log(request: web.Request) -> web.Response:
    """GET /api/v1/alerts."""
    session = await require_session(request, Role.ADMIN, Role.SUPERVISOR)
    return json_response(await alerts.log(request.app[INGEST].db, session.user))
