"""The calls list, its Excel file, and a call's card with its actions."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web
from multidict import MultiDictProxy

from services.ingest.backoffice import (
    calls,
    catalog,
    commands,
    corrections,
    deliveries,
    disputes,
    exports,
    search,
)
from services.ingest.backoffice.accounts import Role, Session
from services.ingest.backoffice.commands import CommentForm
from services.ingest.backoffice.corrections import CorrectionForm
from services.ingest.backoffice.disputes import DisputeForm
from services.ingest.backoffice.filters import CallFilters
from services.ingest.edge import (
    INGEST,
    call_filters,
    search_filters,
    xlsx_response,
)
from services.ingest.intake.submission import validated
from services.ingest.webapp.forms import field_errors
from services.ingest.webapp.frame import (
    ALL,
    LEADS,
    METRIC_LABELS,
    action,
    form_filters,
    page,
    page_filters,
    query_without,
    redirect,
    render,
)
from shared.errors import InvalidRequest
from shared.events import utcnow
from shared.logging import get_logger
from shared.mongo import TABLES
from shared.reviews import VERDICT_LABELS
from shared.tasks import ANALYSED

log = get_logger(__name__)
routes = web.RouteTableDef()


async def _filtered_page(
    request: web.Request,
    session: Session,
    template: str,
    filters: CallFilters,
    errors: Mapping[str, str],
    shown: Mapping[str, object],
) -> web.Response:
    """A page of calls under the calls filters' form (the list, the search): what is
    shown, with the form's period, managers and trackers, and the links to more."""
    db, zone = request.app[INGEST].db, request.app[INGEST].settings.timezone
    first, last = filters.days()
    return render(
        request,
        session,
        template,
        {
            "filters": filters,
            "period": {"from": first, "to": last},
            "errors": errors,
            "managers": await calls.managers_seen(db, session.user, filters, rollup_zone=zone),
            "tracker_options": await catalog.names(db, catalog.TRACKER, session.user),
            "page_query": query_without(request, "after"),
            "export_query": query_without(request, "after", "per_page"),
            **shown,
        },
    )


@routes.get("/calls")
@page(*ALL)
async def calls_page(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /calls: the filtered, sorted, paged list."""
    filters, errors = page_filters(request)
    db, zone = request.app[INGEST].db, request.app[INGEST].settings.timezone
    listing = await calls.list_calls(db, session.user, filters, rollup_zone=zone)
    shown = {"listing": listing, "dispute_labels": disputes.STATUS_LABELS}
    return await _filtered_page(request, session, "calls.html", filters, errors, shown)


@routes.get("/calls/export.xlsx")
@page(*ALL)
async def calls_export(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /calls/export.xlsx: the filtered list as Excel."""
    filters = call_filters(request, form=True)
    rows = calls.all_rows(request.app[INGEST].db, session.user, filters)
    return await xlsx_response(
        request, f"calls-{utcnow():%Y-%m-%d}.xlsx", exports.calls_workbook(rows, filters.zone)
    )


@routes.get("/search")
@page(*ALL)
async def search_page(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /search: what was said where (the top bar's search box), with the calls filters."""
    filters, errors = form_filters(request, search_filters, search.SearchFilters)
    ingest = request.app[INGEST]
    found = None
    if filters.words:
        found = await search.search(ingest.db, ingest.vocabulary, session.user, filters)
    return await _filtered_page(request, session, "search.html", filters, errors, {"found": found})


@routes.get("/search/export.xlsx")
@page(*ALL)
async def search_export(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /search/export.xlsx: the calls found as Excel."""
    filters = search_filters(request, form=True)
    ingest = request.app[INGEST]
    rows = await search.all_results(ingest.db, ingest.vocabulary, session.user, filters)
    return await xlsx_response(
        request, f"search-{utcnow():%Y-%m-%d}.xlsx", exports.search_workbook(rows, filters.zone)
    )


async def _card(
    request: web.Request,
    session: Session,
    *,
    errors: Mapping[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    db = request.app[INGEST].db
    card = await calls.call_card(db, session.user, request.match_info["task_id"])
    results = card["results"]
    table_ids = [row["table_id"] for row in results["tables"]] if results else []
    field_names = {
        table["_id"]: {field["key"]: field.get("name") or field["key"] for field in table["fields"]}
        async for table in db[TABLES].find({"_id": {"$in": table_ids}}, {"fields": 1})
    }
    return render(
        request,
        session,
        "call.html",
        {
            "call": card,
            "field_names": field_names,
            "metric_labels": METRIC_LABELS,
            "errors": errors or {},
            "notice": request.query.get("notice"),
            "can_replay": session.user.role in LEADS,
            "commands": commands.allowed(session.user),
            "can_correct": session.user.role in LEADS and card["status"] in ANALYSED,
            "can_dispute": session.user.role is Role.MANAGER and card["status"] in ANALYSED,
            "verdict_labels": VERDICT_LABELS,
            "dispute_labels": disputes.STATUS_LABELS,
        },
        status=status,
    )


@routes.get("/calls/{task_id}")
@page(*ALL)
async def call_page(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /calls/{task_id}: the call card."""
    return await _card(request, session)


@routes.post("/calls/{task_id}/comments")
@action(*ALL)
async def comment_submit(
    request: web.Request, session: Session, form: MultiDictProxy[str]
) -> web.StreamResponse:
    """POST /calls/{task_id}/comments."""
    task_id = request.match_info["task_id"]
    try:
        comment = validated(CommentForm, {"text": str(form.get("text", ""))})
    except InvalidRequest as exc:
        return await _card(request, session, errors=field_errors(exc), status=400)
    await commands.add_comment(request.app[INGEST].db, session.user, task_id, comment)
    return redirect(f"/calls/{task_id}#comments")


@routes.post("/calls/{task_id}/corrections")
@action(*LEADS)
async def correction_submit(
    request: web.Request, session: Session, form: MultiDictProxy[str]
) -> web.StreamResponse:
    """POST /calls/{task_id}/corrections: a stage's «Исправить вердикт» form."""
    task_id = request.match_info["task_id"]
    fields = {key: str(form.get(key, "")) for key in ("binding_id", "stage", "verdict", "reason")}
    completion = str(form.get("completion", "")).strip()
    try:
        correction = validated(CorrectionForm, {**fields, "completion": completion or None})
    except InvalidRequest as exc:
        errors = {**field_errors(exc), "correcting": fields["stage"]}
        return await _card(request, session, errors=errors, status=400)
    ingest = request.app[INGEST]
    await corrections.correct(ingest.db, session.user, task_id, correction)
    ingest.relay.wake()
    log.info("verdict_corrected", task_id=task_id, stage=correction.stage, by=session.user.email)
    return redirect(f"/calls/{task_id}?notice=verdict_corrected")


@routes.post("/calls/{task_id}/disputes")
@action(Role.MANAGER)
async def dispute_submit(
    request: web.Request, session: Session, form: MultiDictProxy[str]
) -> web.StreamResponse:
    """POST /calls/{task_id}/disputes: a stage's «Оспорить вердикт» form (the manager)."""
    task_id = request.match_info["task_id"]
    fields = {key: str(form.get(key, "")) for key in ("binding_id", "stage", "comment")}
    try:
        dispute = validated(DisputeForm, fields)
    except InvalidRequest as exc:
        errors = {**field_errors(exc), "correcting": fields["stage"]}
        return await _card(request, session, errors=errors, status=400)
    ingest = request.app[INGEST]
    await disputes.open_dispute(ingest.db, session.user, task_id, dispute)
    ingest.relay.wake()  # its alerts go now
    log.info("dispute_opened", task_id=task_id, stage=dispute.stage, by=session.user.email)
    return redirect(f"/calls/{task_id}?notice=disputed")


def _command_page(command: commands.CallCommand) -> None:
    async def run(
        request: web.Request, session: Session, _form: MultiDictProxy[str]
    ) -> web.StreamResponse:
        task_id = request.match_info["task_id"]
        await command.run(request.app[INGEST].db, session.user, task_id)
        log.info(command.logged, task_id=task_id, by=session.user.email)
        return redirect(f"/calls/{task_id}?notice={command.notice}")

    run.__doc__ = f"POST /calls/{{task_id}}/{command.path}: a button of the call card."
    routes.post(f"/calls/{{task_id}}/{command.path}")(action(*command.roles)(run))


for _command in commands.COMMANDS:
    _command_page(_command)


@routes.post("/calls/{task_id}/deliveries/{id}/redeliver")
@action(*LEADS)
async def redeliver_submit(
    request: web.Request, session: Session, _form: MultiDictProxy[str]
) -> web.StreamResponse:
    """POST /calls/{task_id}/deliveries/{id}/redeliver: the replay button of the log."""
    ingest = request.app[INGEST]
    task_id, delivery_id = request.match_info["task_id"], request.match_info["id"]
    await calls.check_delivery(ingest.db, session.user, task_id, delivery_id)
    await deliveries.redeliver(ingest.db, ingest.broker, session.user, delivery_id)
    log.info("delivery_replayed", delivery_id=delivery_id, by=session.user.email)
    return redirect(f"/calls/{task_id}?notice=redelivery#deliveries")
