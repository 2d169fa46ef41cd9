"""Calls through the JSON API: the list (or its Excel file), the card, the audio,
comments, the commands on a call, and the webhook delivery log with replay."""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from typing_extensions import TypedDict

from services.ingest.apidoc import INVALID, MISSING, Answer, documented
from services.ingest.backoffice import calls, commands, deliveries, exports, search
from services.ingest.backoffice.accounts import Role
from services.ingest.backoffice.commands import CommentForm
from services.ingest.backoffice.filters import CallFilters
from services.ingest.edge import (
    INGEST,
    call_filters,
    json_response,
    read_model,
    require_session,
    search_filters,
    stream_ranges,
    wants_xlsx,
    xlsx_response,
)
from services.ingest.intake.submission import JSON_TYPE, validated
from services.ingest.intake.tasks import TaskId
from shared.logging import get_logger

log = get_logger(__name__)
routes = web.RouteTableDef()

NOT_YOURS = {403: "forbidden: another manager's call, or the role may not"}


class Queued(TypedDict):
    """The call waits for its analysis again; results go out with new webhook ids."""

    status: Literal["queued"]
    task_id: TaskId


@routes.get("/api/v1/admin/calls")
@documented(
    "Calls the caller may see, filtered and paged",
    query=CallFilters,
    answer=Answer("OK", calls.CallPage, xlsx=True),
    errors=INVALID,
)
async def list_admin_calls(request: web.Request) -> web.StreamResponse:
    """GET /api/v1/admin/calls: filters and paging, or the whole selection as `?format=xlsx`."""
    session = await require_session(request)
    filters = call_filters(request)
    db = request.app[INGEST].db
    if wants_xlsx(request):
        rows = calls.all_rows(db, session.user, filters)
        return await xlsx_response(
            request, "calls.xlsx", exports.calls_workbook(rows, filters.zone)
        )
    zone = request.app[INGEST].settings.timezone
    return json_response(await calls.list_calls(db, session.user, filters, rollup_zone=zone))


@routes.get("/api/v1/admin/search")
@documented(
    "Calls whose transcripts hold the words `q` (Russian word forms and one-letter ASR "
    "slips match; several words: a phrase, in order), said by `speaker`, within the calls "
    "filters and what the caller may see, with snippets of the lines that match",
    query=search.SearchFilters,
    answer=Answer("OK", search.SearchPage, xlsx=True),
    errors=INVALID,
)
async def search_calls(request: web.Request) -> web.StreamResponse:
    """GET /api/v1/admin/search: a page of calls found, or all of them as `?format=xlsx`."""
    session = await require_session(request)
    filters = search_filters(request)
    ingest = request.app[INGEST]
    if wants_xlsx(request):
        rows = await search.all_results(ingest.db, ingest.vocabulary, session.user, filters)
        return await xlsx_response(
            request, "search.xlsx", exports.search_workbook(rows, filters.zone)
        )
    return json_response(await search.search(ingest.db, ingest.vocabulary, session.user, filters))


@routes.get("/api/v1/admin/calls/{task_id}")
@documented(
    "The call card: results, transcript, comments, deliveries",
    answer=calls.CallCard,
    errors={**MISSING, **NOT_YOURS},
)
async def get_admin_call(request: web.Request) -> web.Response:
    """GET /api/v1/admin/calls/{task_id}: the call card."""
    session = await require_session(request)
    card = await calls.call_card(
        request.app[INGEST].db, session.user, request.match_info["task_id"]
    )
    return json_response(card)


@routes.get("/api/v1/admin/calls/{task_id}/audio")
@documented(
    "The stored audio; honours one HTTP byte range",
    headers={"Range": "One byte range, e.g. `bytes=0-`"},
    answers={
        200: Answer("The whole file", media_type="audio/*"),
        206: Answer("The range asked for", media_type="audio/*"),
        416: Answer("Range not satisfiable"),
    },
    errors={**MISSING, **NOT_YOURS},
)
async def call_audio(request: web.Request) -> web.StreamResponse:
    """GET /api/v1/admin/calls/{task_id}/audio: the stored audio, with HTTP ranges."""
    session = await require_session(request)
    stream, content_type = await calls.open_audio(
        request.app[INGEST].db, session.user, request.match_info["task_id"]
    )
    return await stream_ranges(request, stream, content_type)


@routes.post("/api/v1/admin/calls/{task_id}/comments")
@documented(
    "Comment on a call",
    body={JSON_TYPE: CommentForm},
    answers={201: Answer("Added", calls.CommentView)},
    errors={**INVALID, **MISSING, **NOT_YOURS},
)
async def add_comment(request: web.Request) -> web.Response:
    """POST /api/v1/admin/calls/{task_id}/comments."""
    session = await require_session(request)
    form = await read_model(request, CommentForm)
    comment = await commands.add_comment(
        request.app[INGEST].db, session.user, request.match_info["task_id"], form
    )
    return json_response(comment, 201)


def _command_route(command: commands.CallCommand) -> None:
    async def run(request: web.Request) -> web.Response:
        session = await require_session(request, *command.roles)
        task_id = request.match_info["task_id"]
        db = request.app[INGEST].db
        await command.run(db, session.user, task_id)
        log.info(command.logged, task_id=task_id, by=session.user.email)
        if command.queues_analysis:
            return json_response({"status": "queued", "task_id": task_id}, 202)
        return json_response(await calls.call_card(db, session.user, task_id))

    run.__doc__ = f"POST /api/v1/admin/calls/{{task_id}}/{command.path}"
    answer = (
        Answer("Queued", Queued)
        if command.queues_analysis
        else Answer("The call card", calls.CallCard)
    )
    documented(
        command.summary,
        answers={202 if command.queues_analysis else 200: answer},
        errors={**MISSING, **NOT_YOURS, 409: f"conflict: {command.conflict}"},
    )(run)
    routes.post(f"/api/v1/admin/calls/{{task_id}}/{command.path}")(run)


for _command in commands.COMMANDS:
    _command_route(_command)


@routes.get("/api/v1/deliveries")
@documented(
    "Webhook delivery log (admin, supervisor)",
    query=deliveries.DeliveryFilters,
    answer=deliveries.DeliveryPage,
    errors=INVALID,
)
async def list_deliveries(request: web.Request) -> web.Response:
    """GET /api/v1/deliveries (admin, supervisor): filters status, endpoint, call_id, task_id."""
    session = await require_session(request, Role.ADMIN, Role.SUPERVISOR)
    filters = validated(deliveries.DeliveryFilters, dict(request.query))
    page = await deliveries.list_deliveries(request.app[INGEST].db, session.user, filters)
    return json_response(page)


@routes.post("/api/v1/deliveries/{id}/redeliver")
@documented(
    "Send a delivery again, same webhook-id (admin, supervisor)",
    answer=Answer("Queued to be sent", deliveries.DeliveryView),
    errors={**MISSING, 503: "unavailable: the database or the broker"},
)
async def redeliver(request: web.Request) -> web.Response:
    """POST /api/v1/deliveries/{id}/redeliver (admin, supervisor)."""
    session = await require_session(request, Role.ADMIN, Role.SUPERVISOR)
    ingest = request.app[INGEST]
    delivery_id = request.match_info["id"]
    replayed = await deliveries.redeliver(ingest.db, ingest.broker, session.user, delivery_id)
    log.info("delivery_replayed", delivery_id=delivery_id, by=session.user.email)
    return json_response(replayed)
