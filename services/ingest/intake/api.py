"""The CRM's HTTP API: submit a call (form or JSON) and follow its task, with the API key."""

from __future__ import annotations

from collections.abc import Callable

import structlog
from aiohttp import web

from services.ingest.apidoc import Access, Answer, documented
from services.ingest.edge import (
    INGEST,
    json_response,
    read_body,
    require_api_key,
    require_content_type,
)
from services.ingest.intake import tasks
from services.ingest.intake.submission import (
    JSON_TYPE,
    MULTIPART_TYPE,
    URLENCODED_TYPE,
    CallSubmission,
    JsonCallSubmission,
    parse_form_submission,
    parse_json_submission,
)
from services.ingest.intake.tasks import Accepted, Skipped, TaskView
from shared.errors import RopError
from shared.logging import get_logger

log = get_logger(__name__)
routes = web.RouteTableDef()

SUBMITTED = {
    200: Answer("Accepted (or skipped: shorter than the minimum duration)", Accepted | Skipped)
}
SUBMISSION_ERRORS = {
    400: "invalid_request: a field, the body or the content type is wrong",
    409: "duplicate_call: carries the task_id of the first submission",
}
LOOKUP_ERRORS = {400: "invalid_request", 404: "not_found"}


async def _submit(
    request: web.Request, parse: Callable[[bytes, str], CallSubmission], source: str
) -> web.Response:
    ingest = request.app[INGEST]
    try:
        require_api_key(request)
        allowed = (JSON_TYPE,) if source == "json" else (MULTIPART_TYPE, URLENCODED_TYPE)
        require_content_type(request, *allowed)
        submission = parse(await read_body(request), request.headers.get("Content-Type", ""))
        structlog.contextvars.bind_contextvars(call_id=submission.call_id)
        acceptance = await tasks.accept_call(
            submission,
            db=ingest.db,
            inserter=ingest.inserter,
            relay=ingest.relay,
            state=ingest.state,
            policy=ingest.policy,
            source=source,
        )
        log.info("call_accepted", task_id=acceptance.task_id, status=acceptance.body["status"])
    except RopError as exc:
        ingest.metrics.calls_rejected.labels(exc.code).inc()
        raise
    finally:
        structlog.contextvars.unbind_contextvars("call_id")
    ingest.metrics.calls_accepted.labels(acceptance.body["status"]).inc()
    return json_response(acceptance.body)


@routes.post("/api/v1/calls/audio-upload")
@documented(
    "Submit a call as form data (duration optional)",
    access=Access.API_KEY,
    body={MULTIPART_TYPE: CallSubmission, URLENCODED_TYPE: CallSubmission},
    answers=SUBMITTED,
    errors=SUBMISSION_ERRORS,
)
async def submit_form(request: web.Request) -> web.Response:
    """POST /api/v1/calls/audio-upload: multipart or urlencoded form."""
    return await _submit(request, parse_form_submission, "form")


@routes.post("/api/v1/calls")
@documented(
    "Submit a call as JSON",
    access=Access.API_KEY,
    body={JSON_TYPE: JsonCallSubmission},
    answers=SUBMITTED,
    errors=SUBMISSION_ERRORS,
)
async def submit_json(request: web.Request) -> web.Response:
    """POST /api/v1/calls: JSON."""
    return await _submit(request, lambda body, _type: parse_json_submission(body), "json")


@routes.get("/api/v1/tasks/{task_id}")
@documented(
    "Status of a task",
    access=Access.API_KEY,
    answer=TaskView,
    errors=LOOKUP_ERRORS,
)
async def get_task(request: web.Request) -> web.Response:
    """GET /api/v1/tasks/{task_id}."""
    require_api_key(request)
    return json_response(
        await tasks.get_task(request.app[INGEST].db, request.match_info["task_id"])
    )


@routes.get("/api/v1/calls/{call_id}")
@documented(
    "Status of a call by its CRM id",
    access=Access.API_KEY,
    answer=TaskView,
    errors=LOOKUP_ERRORS,
)
async def get_call(request: web.Request) -> web.Response:
    """GET /api/v1/calls/{call_id}."""
    require_api_key(request)
    return json_response(
        await tasks.get_task_by_call_id(request.app[INGEST].db, request.match_info["call_id"])
    )
