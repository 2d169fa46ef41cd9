"""Settings: the connection, voiceprints, script templates, bindings, tables, trackers,
alert rules, users."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from services.ingest.backoffice import (
    catalog,
    connection,
    trackers,
    users,
)
from services.ingest.backoffice.accounts import Session
from services.ingest.backoffice.filters import CallFilters
from services.ingest.backoffice.users import UserForm
from services.ingest.edge import (
    INGEST,
    base_url,
)
from services.ingest.intake.submission import validated
from services.ingest.webapp.forms import field_errors, nested
from services.ingest.webapp.frame import (
    ADMIN,
    LEADS,
    METRIC_LABELS,
    ROLE_LABELS,
    action,
    page,
    redirect,
    render,
)
from shared import voiceprints
from shared.alerts import CHANNEL_LABELS, CONDITION_LABELS
from shared.connection import load_connection_settings
from shared.errors import (
    Conflict,
    InvalidRequest,
)
from shared.logging import get_logger

log = get_logger(__name__)
routes = web.RouteTableDef()
SECTIONS = "{section:templates|bindings|tables|trackers|alerts}"


# --- settings: connection --------------------------------------------------------


@routes.get("/settings/connection")
@page(*ADMIN)
async def connection_page(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /settings/connection."""
    return await _connection(request, session)


async def _connection(
    request: web.Request,
    session: Session,
    *,
    values: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    ingest = request.app[INGEST]
    ingest.state.connection = await load_connection_settings(ingest.db)
    view = connection.connection_view(ingest.state.connection, base_url=base_url(request))
    return render(
        request,
        session,
        "connection.html",
        {
            "connection": view,
            "voiceprints": await voiceprints.list_voiceprints(ingest.db),
            # Alert emails link to calls by this address; without it the links are relative.
            "links_in_emails": ingest.settings.public_base_url is not None,
            "values": values or {},
            "errors": errors or {},
            "notice": request.query.get("notice"),
        },
        status=status,
    )


@routes.post("/settings/connection")
@action(*ADMIN)
async def connection_submit(
    request: web.Request, session: Session, form: MultiDictProxy[str]
) -> web.StreamResponse:
    """POST /settings/connection: minimum duration, language, error webhook, voiceprints,
    blind review, mail."""
    ingest = request.app[INGEST]
    body: dict[str, Any] = {
        "min_call_duration_s": str(form.get("min_call_duration_s", "")),
        "voiceprints_enabled": "voiceprints_enabled" in form,  # an unticked box is not sent
    }
    if "blind_review_percent" in form:
        body["blind_review_percent"] = str(form["blind_review_percent"])
    if "call_language" in form:
        body["call_language"] = str(form["call_language"])
    if "error_webhook_url" in form:
        body["error_webhook_url"] = str(form["error_webhook_url"]).strip() or None
    if "smtp_host" in form:  # an empty one removes the mail server; other blanks keep theirs
        body["smtp_host"] = str(form["smtp_host"]).strip()
        for name in (*connection.SMTP_FIELDS[1:], "digest_hour"):
            if str(form.get(name, "")).strip():
                body[name] = str(form[name]).strip()
    try:
        update = validated(connection.ConnectionUpdate, body)
        ingest.state.connection = await connection.update_connection(
            ingest.db, ingest.state.connection, update, policy=ingest.policy
        )
    except InvalidRequest as exc:
        values = {key: str(value) for key, value in form.items() if key != "smtp_password"}
        return await _connection(
            request, session, values=values, errors=field_errors(exc), status=400
        )
    log.info("connection_settings_updated", by=session.user.email)
    return redirect("/settings/connection?notice=saved")


@routes.post("/settings/voiceprints/{manager_id}/delete")
@action(*ADMIN)
async def voiceprint_delete(
    request: web.Request, session: Session, _form: MultiDictProxy[str]
) -> web.StreamResponse:
    """POST /settings/voiceprints/{manager_id}/delete."""
    manager_id = request.match_info["manager_id"]
    await voiceprints.forget(request.app[INGEST].db, manager_id)
    log.info("voiceprint_deleted", manager_id=manager_id, by=session.user.email)
    return redirect("/settings/connection?notice=deleted#voiceprints")


# --- settings: templates, bindings, tables ------------------------------------------


CATALOG = {
    "templates": (catalog.TEMPLATE, "Шаблоны скриптов", "template_form.html"),
    "bindings": (catalog.BINDING, "Скрипты и промты", "binding_form.html"),
    "tables": (catalog.TABLE, "Таблицы", "table_form.html"),
    "trackers": (catalog.TRACKER, "Словари", "tracker_form.html"),
    "alerts": (catalog.ALERT_RULE, "Уведомления", "alert_form.html"),
}


def _kind(request: web.Request) -> tuple[catalog.Kind, str, str, str]:
    section = request.match_info["section"]
    kind, title, form_template = CATALOG[section]
    return kind, title, form_template, section


@routes.get(f"/settings/{SECTIONS}")
@page(*LEADS)
async def catalog_list(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /settings/{templates|bindings|tables}."""
    kind, title, _, section = _kind(request)
    db = request.app[INGEST].db
    items = await catalog.list_all(db, kind, session.user)
    template_names = {
        t["id"]: t["name"] for t in await catalog.list_all(db, catalog.TEMPLATE, session.user)
    }
    return render(
        request,
        session,
        "catalog_list.html",
        {
            "items": items,
            "title": title,
            "section": section,
            "template_names": template_names,
            "conditions": CONDITION_LABELS,
            "channels": CHANNEL_LABELS,
            "notice": request.query.get("notice"),
        },
    )


async def _catalog_form(
    request: web.Request,
    session: Session,
    *,
    item: Mapping[str, Any] | None,
    errors: Mapping[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    _, title, form_template, section = _kind(request)
    db = request.app[INGEST].db
    return render(
        request,
        session,
        form_template,
        {
            "item": item or {},
            "item_id": request.match_info.get("id"),
            "title": title,
            "section": section,
            "errors": errors or {},
            "templates": await catalog.list_all(db, catalog.TEMPLATE, session.user),
            "tracker_options": await catalog.names(db, catalog.TRACKER, session.user),
            "template_options": await catalog.names(db, catalog.TEMPLATE, session.user),
            "conditions": list(CONDITION_LABELS.items()),
            "channel_options": list(CHANNEL_LABELS.items()),
            "people": await users.list_users(db) if section == "alerts" else [],
            "roles": ROLE_LABELS,
            "apply_period": dict(zip(("from", "to"), _default_days(request), strict=True)),
            "notice": request.query.get("notice"),
            "applied_calls": request.query.get("calls"),
            "metrics": METRIC_LABELS,
        },
        status=status,
    )


def _default_days(request: web.Request) -> tuple[date, date]:
    return CallFilters(tz=request.app[INGEST].settings.timezone).days()


@routes.post("/settings/trackers/{id}/apply")
@action(*LEADS)
async def tracker_apply(
    request: web.Request, session: Session, form: MultiDictProxy[str]
) -> web.StreamResponse:
    """POST /settings/trackers/{id}/apply: count the tracker on the period's earlier calls."""
    tracker_id = request.match_info["id"]
    fields = {key: str(form.get(key, "")) for key in ("date_from", "date_to") if form.get(key)}
    db = request.app[INGEST].db
    try:
        period = validated(trackers.ApplyForm, fields)
    except InvalidRequest as exc:
        document = await catalog.get(db, catalog.TRACKER, tracker_id, session.user)
        return await _catalog_form(
            request,
            session,
            item=catalog.view(document, session.user),
            errors=field_errors(exc),
            status=400,
        )
    zone = request.app[INGEST].settings.timezone
    applied = await trackers.apply(db, session.user, tracker_id, period.filters(zone))
    log.info(
        "tracker_applied", tracker_id=tracker_id, calls=applied["calls"], by=session.user.email
    )
    return redirect(
        f"/settings/trackers/{tracker_id}?notice=tracker_applied&calls={applied['calls']}"
    )


@routes.get(f"/settings/{SECTIONS}/new")
@page(*LEADS)
async def catalog_new(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /settings/{section}/new."""
    return await _catalog_form(request, session, item=None)


@routes.get(f"/settings/{SECTIONS}/{{id}}")
@page(*LEADS)
async def catalog_edit(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /settings/{section}/{id}."""
    kind, *_ = _kind(request)
    document = await catalog.get(
        request.app[INGEST].db, kind, request.match_info["id"], session.user
    )
    return await _catalog_form(request, session, item=catalog.view(document, session.user))


# Stacked route decorators register bottom up: `new` before `{id}`, which would take it.
@routes.post(f"/settings/{SECTIONS}/{{id}}")
@routes.post(f"/settings/{SECTIONS}/new")
@action(*LEADS)
async def catalog_save(
    request: web.Request, session: Session, form: MultiDictProxy[str]
) -> web.StreamResponse:
    """POST /settings/{section}/new or /settings/{section}/{id}: create or replace."""
    kind, _, _, section = _kind(request)
    db = request.app[INGEST].db
    item_id = request.match_info.get("id")
    body = nested(form)
    if kind is catalog.ALERT_RULE:
        body |= {name: form.getall(name, []) for name in ("channels", "user_ids")}
        if "webhook" not in body["channels"] or not body.get("webhook"):
            body.pop("webhook", None)
    stored = None if item_id is None else await catalog.get(db, kind, item_id, session.user)
    if stored and stored.get("webhook") and (kind is not catalog.ALERT_RULE or "webhook" in body):
        # The webhook URL is fixed once saved: the stored one stands whatever was posted.
        body["webhook"] = {"url": stored["webhook"]["url"]}
    policy = request.app[INGEST].policy
    try:
        model = validated(kind.model, body)
        if item_id is None:
            saved = await catalog.create(db, kind, model, policy=policy, by=session.user)
        else:
            saved = await catalog.replace(db, kind, item_id, model, policy=policy, by=session.user)
    except InvalidRequest as exc:
        shown = {**body, "id": item_id} if item_id else body
        if stored:
            shown = {**shown, "webhook": catalog.view(stored, session.user).get("webhook")}
        return await _catalog_form(
            request, session, item=shown, errors=field_errors(exc), status=400
        )
    log.info("catalog_saved", kind=kind.collection, id=saved["_id"], by=session.user.email)
    return redirect(f"/settings/{section}?notice=saved")


@routes.post(f"/settings/{SECTIONS}/{{id}}/delete")
@action(*LEADS)
async def catalog_delete(
    request: web.Request, session: Session, _form: MultiDictProxy[str]
) -> web.StreamResponse:
    """POST /settings/{section}/{id}/delete."""
    kind, _, _, section = _kind(request)
    item_id = request.match_info["id"]
    await catalog.delete(request.app[INGEST].db, kind, item_id, by=session.user)
    log.info("catalog_deleted", kind=kind.collection, id=item_id, by=session.user.email)
    return redirect(f"/settings/{section}?notice=deleted")


# --- settings: users -------------------------------------------------------------


@routes.get("/settings/users")
@page(*ADMIN)
async def users_page(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /settings/users."""
    listed = await users.list_users(request.app[INGEST].db)
    return render(
        request,
        session,
        "users.html",
        {"users": listed, "roles": ROLE_LABELS, "notice": request.query.get("notice")},
    )


async def _user_form(
    request: web.Request,
    session: Session,
    *,
    item: Mapping[str, Any] | None,
    errors: Mapping[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    return render(
        request,
        session,
        "user_form.html",
        {
            "item": item or {"active": True, "role": "manager"},
            "item_id": request.match_info.get("id"),
            "roles": ROLE_LABELS,
            "errors": errors or {},
        },
        status=status,
    )


@routes.get("/settings/users/new")
@page(*ADMIN)
async def user_new(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /settings/users/new."""
    return await _user_form(request, session, item=None)


@routes.get("/settings/users/{id}")
@page(*ADMIN)
async def user_edit(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /settings/users/{id}."""
    document = await users.get_user(request.app[INGEST].db, request.match_info["id"])
    return await _user_form(request, session, item=users.view(document))


@routes.post("/settings/users/{id}")
@routes.post("/settings/users/new")  # before `{id}` (registered bottom up)
@action(*ADMIN)
async def user_save(
    request: web.Request, session: Session, form: MultiDictProxy[str]
) -> web.StreamResponse:
    """POST /settings/users/new or /settings/users/{id}."""
    db = request.app[INGEST].db
    item_id = request.match_info.get("id")
    body = nested(form)
    try:
        model = validated(UserForm, body)
        if item_id is None:
            await users.create_user(db, model)
        else:
            await users.update_user(db, item_id, model)
    except (InvalidRequest, Conflict) as exc:
        errors = field_errors(exc) if exc.details else {"": exc.message}
        shown = {key: value for key, value in body.items() if key != "password"}
        return await _user_form(request, session, item=shown, errors=errors, status=400)
    log.info("user_saved", email=body.get("email"), by=session.user.email)
    return redirect("/settings/users?notice=saved")


@routes.post("/settings/users/{id}/delete")
@action(*ADMIN)
async def user_delete(
    request: web.Request, session: Session, _form: MultiDictProxy[str]
) -> web.StreamResponse:
    """POST /settings/users/{id}/delete."""
    await users.delete_user(request.app[INGEST].db, request.match_info["id"])
    log.info("user_deleted", id=request.match_info["id"], by=session.user.email)
    return redirect("/settings/users?notice=deleted")
