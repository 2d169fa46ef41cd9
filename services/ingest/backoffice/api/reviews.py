"""People in the loop through the JSON API (SPEC §5.1): corrections of stage verdicts,
disputes and their queue, blind reviews, and the trust report."""

from __future__ import annotations

from aiohttp import web

from services.ingest.apidoc import INVALID, MISSING, Answer, documented
from services.ingest.backoffice import blind, corrections, disputes, exports, trust
from services.ingest.backoffice.accounts import Role
from services.ingest.backoffice.corrections import CorrectionForm
from services.ingest.edge import (
    INGEST,
    dispute_filters,
    json_response,
    read_model,
    require_session,
    trust_filters,
    wants_xlsx,
    xlsx_response,
)
from services.ingest.intake.submission import JSON_TYPE
from shared.logging import get_logger

log = get_logger(__name__)
routes = web.RouteTableDef()

LEADS = (Role.ADMIN, Role.SUPERVISOR)
NOT_YOURS = {403: "forbidden: not a supervisor of the call's manager, or the role may not"}


@routes.post("/api/v1/admin/calls/{task_id}/corrections")
@documented(
    "Correct a stage verdict (admin, the manager's supervisor): the score is computed "
    "again and the CRM gets the checklist as a new `revision` with `reviewed_by`",
    body={JSON_TYPE: CorrectionForm},
    answers={200: Answer("Corrected", corrections.Corrected)},
    errors={**INVALID, **MISSING, **NOT_YOURS, 409: "conflict: not analysed, or changed meanwhile"},
)
async def correct(request: web.Request) -> web.Response:
    """POST /api/v1/admin/calls/{task_id}/corrections."""
    session = await require_session(request, *LEADS)
    form = await read_model(request, CorrectionForm)
    task_id = request.match_info["task_id"]
    ingest = request.app[INGEST]
    result = await corrections.correct(ingest.db, session.user, task_id, form)
    ingest.relay.wake()
    log.info("verdict_corrected", task_id=task_id, stage=form.stage, by=session.user.email)
    return json_response(result)


DISPUTE_ERRORS = {**MISSING, 403: "forbidden: not the caller's to dispute or answer"}


@routes.post("/api/v1/admin/calls/{task_id}/disputes")
@documented(
    "Dispute a stage verdict of an own call (manager); one open dispute per stage",
    body={JSON_TYPE: disputes.DisputeForm},
    answers={201: Answer("Opened", disputes.DisputeView)},
    errors={**INVALID, **DISPUTE_ERRORS, 409: "conflict: not analysed, or already disputed"},
)
async def open_dispute(request: web.Request) -> web.Response:
    """POST /api/v1/admin/calls/{task_id}/disputes."""
    session = await require_session(request, Role.MANAGER)
    form = await read_model(request, disputes.DisputeForm)
    task_id = request.match_info["task_id"]
    ingest = request.app[INGEST]
    opened = await disputes.open_dispute(ingest.db, session.user, task_id, form)
    ingest.relay.wake()  # its alerts go now
    log.info("dispute_opened", task_id=task_id, stage=form.stage, by=session.user.email)
    return json_response(opened, 201)


@routes.get("/api/v1/disputes")
@documented(
    "Disputes the caller may see, newest first: a supervisor's team's, a manager's own",
    query=disputes.DisputeFilters,
    answer=disputes.DisputePage,
    errors=INVALID,
)
async def list_disputes(request: web.Request) -> web.Response:
    """GET /api/v1/disputes: `status` (open by default; empty: any), manager, days, paging."""
    session = await require_session(request)
    filters = dispute_filters(request)
    return json_response(await disputes.page(request.app[INGEST].db, session.user, filters))


@routes.post("/api/v1/disputes/{id}/accept")
@documented(
    "Accept a dispute (admin, the manager's supervisor): the verdict is corrected (by "
    "default to the opposite) and the manager gets the answer",
    body={JSON_TYPE: disputes.AcceptForm},
    answer=Answer("Accepted", disputes.DisputeView),
    errors={**INVALID, **DISPUTE_ERRORS, 409: "conflict: already answered"},
)
async def accept_dispute(request: web.Request) -> web.Response:
    """POST /api/v1/disputes/{id}/accept."""
    session = await require_session(request, *LEADS)
    form = await read_model(request, disputes.AcceptForm)
    ingest = request.app[INGEST]
    answered = await disputes.accept(ingest.db, session.user, request.match_info["id"], form)
    ingest.relay.wake()
    log.info("dispute_accepted", dispute_id=answered["id"], by=session.user.email)
    return json_response(answered)


@routes.post("/api/v1/disputes/{id}/reject")
@documented(
    "Reject a dispute with an answer (admin, the manager's supervisor); the verdict stays",
    body={JSON_TYPE: disputes.RejectForm},
    answer=Answer("Rejected", disputes.DisputeView),
    errors={**INVALID, **DISPUTE_ERRORS, 409: "conflict: already answered"},
)
async def reject_dispute(request: web.Request) -> web.Response:
    """POST /api/v1/disputes/{id}/reject."""
    session = await require_session(request, *LEADS)
    form = await read_model(request, disputes.RejectForm)
    db = request.app[INGEST].db
    answered = await disputes.reject(db, session.user, request.match_info["id"], form)
    log.info("dispute_rejected", dispute_id=answered["id"], by=session.user.email)
    return json_response(answered)


@routes.get("/api/v1/reviews/blind")
@documented(
    "Calls picked for blind review still waiting (admin, supervisor: their team's)",
    blind.BlindQueue,
)
async def blind_queue(request: web.Request) -> web.Response:
    """GET /api/v1/reviews/blind."""
    session = await require_session(request, *LEADS)
    return json_response(await blind.queue(request.app[INGEST].db, session.user))


@routes.get("/api/v1/reviews/blind/{task_id}")
@documented(
    "A picked call to judge: transcript and stages, never the machine's verdicts",
    answers={200: Answer("To judge", blind.BlindCall)},
    errors={**MISSING, **NOT_YOURS, 409: "conflict: not picked, or reviewed already"},
)
async def blind_call(request: web.Request) -> web.Response:
    """GET /api/v1/reviews/blind/{task_id}."""
    session = await require_session(request, *LEADS)
    db, task_id = request.app[INGEST].db, request.match_info["task_id"]
    return json_response(await blind.blind_call(db, session.user, task_id))


@routes.get("/api/v1/reviews/blind/{task_id}/result")
@documented(
    "Both verdicts of every stage of a call reviewed blind",
    blind.BlindResult,
    errors={**MISSING, **NOT_YOURS, 409: "conflict: not picked, or still waiting"},
)
async def blind_result(request: web.Request) -> web.Response:
    """GET /api/v1/reviews/blind/{task_id}/result."""
    session = await require_session(request, *LEADS)
    db, task_id = request.app[INGEST].db, request.match_info["task_id"]
    return json_response(await blind.result(db, session.user, task_id))


@routes.post("/api/v1/reviews/blind/{task_id}")
@documented(
    "Judge every stage of a picked call blind; the answer shows the machine's verdicts "
    "beside the person's (a blind review changes no verdict)",
    body={JSON_TYPE: blind.BlindReviewForm},
    answers={200: Answer("Both verdicts", blind.BlindResult)},
    errors={**INVALID, **MISSING, **NOT_YOURS, 409: "conflict: not picked, or reviewed"},
)
async def blind_submit(request: web.Request) -> web.Response:
    """POST /api/v1/reviews/blind/{task_id}."""
    session = await require_session(request, *LEADS)
    form = await read_model(request, blind.BlindReviewForm)
    db, task_id = request.app[INGEST].db, request.match_info["task_id"]
    reviewed = await blind.submit(db, session.user, task_id, form)
    log.info("blind_review_submitted", task_id=task_id, by=session.user.email)
    return json_response(reviewed)


@routes.get("/api/v1/trust")
@documented(
    "How often the machine and people agree, per template version and stage, blind "
    "reviews and corrections apart, the lowest agreement first (admin, supervisor)",
    query=trust.TrustFilters,
    answer=Answer("OK", trust.TrustReport, xlsx=True),
    errors=INVALID,
)
async def trust_report(request: web.Request) -> web.StreamResponse:
    """GET /api/v1/trust (or `?format=xlsx`)."""
    session = await require_session(request, *LEADS)
    filters = trust_filters(request)
    report = await trust.report(request.app[INGEST].db, session.user, filters)
    if wants_xlsx(request):
        return await xlsx_response(request, "trust.xlsx", exports.trust_workbook(report))
    return json_response(report)
