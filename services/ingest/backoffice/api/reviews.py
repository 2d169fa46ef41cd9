"""People in the loop through the JSON API (SPEC §5.1): corrections of stage verdicts."""

from __future__ import annotations

from aiohttp import web

from services.ingest.apidoc import INVALID, MISSING, Answer, documented
from services.ingest.backoffice import corrections
from services.ingest.backoffice.accounts import Role
from services.ingest.backoffice.corrections import CorrectionForm
from services.ingest.edge import INGEST, json_response, read_model, require_session
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
