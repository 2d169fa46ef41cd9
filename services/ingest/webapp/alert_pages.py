"""Alerts in the web app: one's notifications (the bell of the top bar) and the log of
alerts raised."""

from __future__ import annotations

from aiohttp import web
from multidict import MultiDictProxy

from services.ingest.backoffice import alerts
from services.ingest.backoffice.accounts import Session
from services.ingest.edge import INGEST
from services.ingest.webapp.frame import ALL, LEADS, action, page, redirect, render
from shared.alerts import CHANNEL_LABELS, CONDITION_LABELS
from shared.errors import NotFound

routes = web.RouteTableDef()

TARGET_LABELS = {**CHANNEL_LABELS, "digest": "Сводка email"}
OUTCOME_LABELS = {
    "delivered": "доставлено",
    "pending": "отправляется",
    "retrying": "повтор",
    "succeeded": "доставлено",
    "dead": "не доставлено",
    "stopped": "остановлено (410)",
    "waiting_digest": "ждёт сводки",
}


@routes.get("/notifications")
@page(*ALL)
async def notifications_page(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /notifications: the user's notifications, the unread first to catch the eye."""
    listed = await alerts.notifications(request.app[INGEST].db, session.user)
    return render(request, session, "notifications.html", {"notifications": listed})


@routes.get("/notifications/{id}")
@page(*ALL)
async def notification_open(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /notifications/{id}: read it, and open its call."""
    db = request.app[INGEST].db
    task_id = await alerts.open_notification(db, session.user, request.match_info["id"])
    if task_id is None:
        raise NotFound("Уведомление не найдено")
    return redirect(f"/calls/{task_id}")


@routes.post("/notifications/read")
@action(*ALL)
async def notifications_read(
    request: web.Request, session: Session, _form: MultiDictProxy[str]
) -> web.StreamResponse:
    """POST /notifications/read: all of them read."""
    await alerts.mark_read(request.app[INGEST].db, session.user, alerts.ReadForm())
    return redirect("/notifications")


@routes.get("/alerts")
@page(*LEADS)
async def alert_log_page(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /alerts: the alerts raised on the calls the user sees, and where they went."""
    logged = await alerts.log(request.app[INGEST].db, session.user)
    return render(
        request,
        session,
        "alert_log.html",
        {
            "alerts": logged["items"],
            "conditions": CONDITION_LABELS,
            "targets": TARGET_LABELS,
            "outcomes": OUTCOME_LABELS,
        },
    )
