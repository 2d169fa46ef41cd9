"""People in the loop, in the web app: the disputes' queue and its answers."""

from __future__ import annotations

from aiohttp import web
from multidict import MultiDictProxy

from services.ingest.backoffice import disputes
from services.ingest.backoffice.accounts import Session
from services.ingest.backoffice.disputes import AcceptForm, DisputeFilters, RejectForm
from services.ingest.edge import INGEST, dispute_filters
from services.ingest.intake.submission import validated
from services.ingest.webapp.forms import field_errors
from services.ingest.webapp.frame import ALL, LEADS, action, page, query_without, redirect, render
from shared.errors import InvalidRequest
from shared.logging import get_logger
from shared.reviews import VERDICT_LABELS

log = get_logger(__name__)
routes = web.RouteTableDef()

STATUS_OPTIONS = [("open", "Открытые"), ("accepted", "Принятые"), ("rejected", "Отклонённые")]


@routes.get("/disputes")
@page(*ALL)
async def disputes_page(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /disputes: a supervisor's queue (their team's), a manager's own disputes."""
    errors: dict[str, str] = {}
    try:
        filters = dispute_filters(request, form=True)
    except InvalidRequest as exc:
        errors = field_errors(exc)
        filters = DisputeFilters(tz=request.app[INGEST].settings.timezone)
    listing = await disputes.page(request.app[INGEST].db, session.user, filters)
    return render(
        request,
        session,
        "disputes.html",
        {
            "filters": filters,
            "errors": errors,
            "listing": listing,
            "notice": request.query.get("notice"),
            "can_answer": session.user.role in LEADS,
            "status_options": [("", "Все"), *STATUS_OPTIONS],
            "verdict_labels": VERDICT_LABELS,
            "opposite": disputes.OPPOSITE,
            "page_query": query_without(request, "after", "notice"),
        },
    )


@routes.post("/disputes/{id}/accept")
@action(*LEADS)
async def accept_submit(
    request: web.Request, session: Session, form: MultiDictProxy[str]
) -> web.StreamResponse:
    """POST /disputes/{id}/accept: agree, and the verdict is corrected."""
    answer = validated(
        AcceptForm,
        {"verdict": str(form.get("verdict", "")) or None, "answer": str(form.get("answer", ""))},
    )
    ingest = request.app[INGEST]
    answered = await disputes.accept(ingest.db, session.user, request.match_info["id"], answer)
    ingest.relay.wake()
    log.info("dispute_accepted", dispute_id=answered["id"], by=session.user.email)
    return redirect("/disputes?notice=accepted")


@routes.post("/disputes/{id}/reject")
@action(*LEADS)
async def reject_submit(
    request: web.Request, session: Session, form: MultiDictProxy[str]
) -> web.StreamResponse:
    """POST /disputes/{id}/reject: keep the verdict, with an answer."""
    answer = validated(RejectForm, {"answer": str(form.get("answer", ""))})
    db = request.app[INGEST].db
    answered = await disputes.reject(db, session.user, request.match_info["id"], answer)
    log.info("dispute_rejected", dispute_id=answered["id"], by=session.user.email)
    return redirect("/disputes?notice=rejected")
