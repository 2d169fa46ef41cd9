"""People in the loop, in the web app: the disputes' queue and its answers, blind
review, and «Качество оценки»."""

from __future__ import annotations

from aiohttp import web
from multidict import MultiDictProxy

from services.ingest.backoffice import blind, disputes, exports, trust
from services.ingest.backoffice.accounts import Session, visible_task
from services.ingest.backoffice.blind import BlindReviewForm
from services.ingest.backoffice.disputes import AcceptForm, DisputeFilters, RejectForm
from services.ingest.backoffice.trust import TrustFilters
from services.ingest.edge import (
    INGEST,
    dispute_filters,
    query_model,
    trust_filters,
    wants_xlsx,
    xlsx_response,
)
from services.ingest.intake.submission import validated
from services.ingest.webapp.frame import (
    ALL,
    LEADS,
    action,
    form_filters,
    page,
    query_without,
    redirect,
    render,
)
from shared.logging import get_logger
from shared.reviews import VERDICT_LABELS

log = get_logger(__name__)
routes = web.RouteTableDef()

STATUS_OPTIONS = [("open", "Открытые"), ("accepted", "Принятые"), ("rejected", "Отклонённые")]


@routes.get("/disputes")
@page(*ALL)
async def disputes_page(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /disputes: a supervisor's queue (their team's), a manager's own disputes."""
    filters, errors = form_filters(request, dispute_filters, DisputeFilters)
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


@routes.get("/trust")
@page(*LEADS)
async def trust_page(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /trust: «Качество оценки» (or its Excel file), and the calls to review blind."""
    filters, errors = form_filters(request, trust_filters, TrustFilters)
    db = request.app[INGEST].db
    report = await trust.report(db, session.user, filters)
    if wants_xlsx(request):
        return await xlsx_response(request, "trust.xlsx", exports.trust_workbook(report))
    first, last = filters.days().days()
    return render(
        request,
        session,
        "trust.html",
        {
            "report": report,
            "errors": errors,
            "period": {"from": first, "to": last},
            "waiting": (await blind.queue(db, session.user))["items"],
            "method_labels": {"phrases": "фразы", "llm": "LLM"},
            "notice": request.query.get("notice"),
            "export_query": query_without(request, "format", "notice"),
        },
    )


@routes.get("/trust/stage")
@page(*LEADS)
async def trust_stage_page(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /trust/stage: the reviews one stage's agreement counts, with their calls."""
    filters = query_model(request, trust.StageFilters, form=True)
    records = await trust.stage_records(request.app[INGEST].db, session.user, filters)
    return render(
        request,
        session,
        "trust_stage.html",
        {"filters": filters, "records": records, "verdict_labels": VERDICT_LABELS},
    )


@routes.get("/reviews/{task_id}")
@page(*LEADS)
async def blind_page(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /reviews/{task_id}: judge a picked call blind; once judged, both verdicts."""
    db, task_id = request.app[INGEST].db, request.match_info["task_id"]
    task = await visible_task(db, session.user, task_id, {"blind_review": 1})
    context: dict[str, object]
    if (task.get("blind_review") or {}).get("state") == "done":
        context = {"result": await blind.result(db, session.user, task_id)}
    else:
        context = {"call": await blind.blind_call(db, session.user, task_id)}
    return render(
        request, session, "blind_review.html", {**context, "verdict_labels": VERDICT_LABELS}
    )


@routes.post("/reviews/{task_id}")
@action(*LEADS)
async def blind_submit(
    request: web.Request, session: Session, form: MultiDictProxy[str]
) -> web.StreamResponse:
    """POST /reviews/{task_id}: the person's verdicts, one radio group per stage."""
    verdicts = [
        {"binding_id": key.split("|", 1)[0], "stage": key.split("|", 1)[1], "verdict": value}
        for key, value in form.items()
        if "|" in key
    ]
    review = validated(BlindReviewForm, {"verdicts": verdicts})
    task_id = request.match_info["task_id"]
    await blind.submit(request.app[INGEST].db, session.user, task_id, review)
    log.info("blind_review_submitted", task_id=task_id, by=session.user.email)
    return redirect(f"/reviews/{task_id}")
