"""The web application: server-rendered pages over the same logic as the admin API.

Every page resolves the session from the HttpOnly cookie (no session: the login page),
checks the role (wrong role: a 403 page), and every form carries the session's CSRF
token. Forms post and redirect, so everything works without JavaScript; the script
only adds seeking from the transcript, copy buttons and adding rows to forms.
"""

from __future__ import annotations

import functools
import hmac
import secrets
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any, get_args
from urllib.parse import quote, urlencode

import aiohttp_jinja2
from aiohttp import web
from multidict import MultiDictProxy

from services.ingest import web_sessions
from services.ingest.backoffice import (
    accounts,
    calls,
    catalog,
    connection,
    deliveries,
    exports,
    reports,
    users,
)
from services.ingest.backoffice.accounts import Role, Session
from services.ingest.backoffice.calls import CommentForm
from services.ingest.backoffice.filters import STATUS_LABELS, CallFilters
from services.ingest.backoffice.users import UserForm
from services.ingest.edge import (
    HTTP_STATUS,
    INGEST,
    base_url,
    browser_session,
    call_filters,
    client_address,
    is_https,
    wants_xlsx,
    xlsx_response,
)
from services.ingest.intake.submission import validated
from services.ingest.webapp import charts
from services.ingest.webapp.forms import field_errors, nested
from shared import voiceprints
from shared.connection import load_connection_settings
from shared.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    RopError,
    TooManyRequests,
    Unauthorized,
)
from shared.events import utcnow
from shared.logging import get_logger
from shared.mongo import TABLES
from shared.scripts import Metric

log = get_logger(__name__)

ALL = (Role.ADMIN, Role.SUPERVISOR, Role.MANAGER)
LEADS = (Role.ADMIN, Role.SUPERVISOR)
ADMIN = (Role.ADMIN,)

# The menu: (path, label, who sees it). Settings pages are grouped under one heading.
MENU = (
    ("/calls", "Коммуникации", ALL),
    ("/managers", "Менеджеры", LEADS),
    ("/dashboard", "Дашборд", ALL),
)
SETTINGS_MENU = (
    ("/settings/connection", "Подключение", ADMIN),
    ("/settings/templates", "Шаблоны скриптов", LEADS),
    ("/settings/bindings", "Скрипты и промты", LEADS),
    ("/settings/tables", "Таблицы", LEADS),
    ("/settings/users", "Пользователи", ADMIN),
)
TIMELINE_LABELS = {
    **STATUS_LABELS,
    "webhook_succeeded": "Вебхук доставлен",
    "webhook_dead": "Вебхук не доставлен",
    "webhook_stopped": "Вебхук остановлен (410)",
    "reanalysis_requested": "Запрошен повторный анализ",
    "roles_swap_requested": "Роли менеджера и клиента поменяны местами",
    "roles_confirmed": "Роли подтверждены",
}
ROLE_LABELS = {"admin": "Администратор", "supervisor": "Руководитель", "manager": "Менеджер"}
METRIC_LABELS: dict[str, str] = {
    "duration_s": "Длительность, с",
    "talk_time_manager_s": "Речь менеджера, с",
    "talk_time_client_s": "Речь клиента, с",
    "talk_ratio": "Доля речи менеджера",
    "longest_monologue_s": "Самый длинный монолог, с",
    "silence_s": "Тишина, с",
    "interruptions": "Перебивания",
    "words_per_minute_manager": "Темп менеджера, слов/мин",
}
assert set(METRIC_LABELS) == set(get_args(Metric))  # every metric has a label

Route = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Pages load nothing from elsewhere and run no inline script; no framing, no caching.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
PageHandler = Callable[[web.Request, Session], Awaitable[web.StreamResponse]]
FormHandler = Callable[[web.Request, Session, MultiDictProxy[str]], Awaitable[web.StreamResponse]]


# --- sessions, rendering, errors ---------------------------------------------


def _menu(user: accounts.User) -> dict[str, Any]:
    def visible(items: tuple[tuple[str, str, tuple[Role, ...]], ...]) -> list[dict[str, str]]:
        return [{"path": p, "label": label} for p, label, roles in items if user.role in roles]

    return {"main": visible(MENU), "settings": visible(SETTINGS_MENU)}


def render(
    request: web.Request,
    session: Session | None,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
) -> web.Response:
    """Render a page with what every page needs: the user, the menu, the CSRF token."""
    base: dict[str, Any] = {
        "path": request.path,
        "status_labels": STATUS_LABELS,
        "timeline_labels": TIMELINE_LABELS,
    }
    if session is not None:
        base |= {
            "user": session.user,
            "role_label": ROLE_LABELS[session.user.role.value],
            "menu": _menu(session.user),
            "csrf_token": session.csrf_token,
        }
    response = aiohttp_jinja2.render_template(
        template, request, {**base, **(context or {})}, status=status
    )
    response.headers.update(SECURITY_HEADERS)
    return response


def _error_page(request: web.Request, session: Session | None, error: RopError) -> web.Response:
    status = HTTP_STATUS.get(error.code, 500)
    return render(request, session, "error.html", {"error": error}, status=status)


def redirect(location: str) -> web.Response:
    """303 See Other: after a form post the browser GETs the result."""
    return web.Response(status=303, headers={"Location": location})


def _to_login(request: web.Request) -> web.Response:
    return redirect(f"/login?next={quote(request.path_qs)}")


def page(*roles: Role) -> Callable[[PageHandler], Route]:
    """A GET page for these roles: no session goes to the login page, another role gets 403."""

    def wrap(handler: PageHandler) -> Route:
        async def run(request: web.Request) -> web.StreamResponse:
            session = await browser_session(request)
            if session is None:
                return _to_login(request)
            try:
                if session.user.role not in roles:
                    raise Forbidden("Эта страница вам недоступна")
                return await handler(request, session)
            except RopError as exc:
                return _error_page(request, session, exc)

        return run

    return wrap


def action(*roles: Role) -> Callable[[FormHandler], Route]:
    """A form POST for these roles, refused without the session's CSRF token."""

    def wrap(handler: FormHandler) -> Route:
        async def run(request: web.Request) -> web.StreamResponse:
            session = await browser_session(request)
            if session is None:
                return _to_login(request)
            try:
                if session.user.role not in roles:
                    raise Forbidden("Это действие вам недоступно")
                form = await request.post()
                supplied = str(form.get("csrf_token", ""))
                if not hmac.compare_digest(supplied.encode(), session.csrf_token.encode()):
                    raise Forbidden("Форма устарела (нет CSRF-токена). Обновите страницу.")
                return await handler(request, session, form)  # type: ignore[arg-type]
            except RopError as exc:
                return _error_page(request, session, exc)

        return run

    return wrap


def _safe_next(target: str | None) -> str:
    """Only paths of this site: never `//host` or an absolute URL."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/calls"


# --- login --------------------------------------------------------------------


# Before login there is no session to hold a CSRF token, so the login form uses a double
# submit: the same random value in a strict, HttpOnly cookie and in the form.
LOGIN_CSRF_COOKIE = "rop_login_csrf"
STALE_LOGIN_FORM = "Форма входа устарела. Попробуйте ещё раз."


def _login_form(
    request: web.Request, context: Mapping[str, Any], *, status: int = 200
) -> web.Response:
    token = secrets.token_urlsafe(32)
    response = render(request, None, "login.html", {**context, "login_csrf": token}, status=status)
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        max_age=3600,
        httponly=True,
        samesite="Strict",
        secure=is_https(request),
        path="/login",
    )
    return response


async def login_page(request: web.Request) -> web.StreamResponse:
    """GET /login."""
    if await browser_session(request) is not None:
        return redirect(_safe_next(request.query.get("next")))
    return _login_form(request, {"next": request.query.get("next", "")})


async def login_submit(request: web.Request) -> web.StreamResponse:
    """POST /login: rate-limited; a wrong password shows the form again."""
    form = await request.post()
    email, target = str(form.get("email", "")), str(form.get("next", ""))
    supplied, expected = str(form.get("csrf_token", "")), request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(supplied.encode(), expected.encode()):
        context = {"error": STALE_LOGIN_FORM, "email": email, "next": target}
        return _login_form(request, context, status=403)
    ingest = request.app[INGEST]
    try:
        user = await accounts.authenticate(
            ingest.db,
            email=email,
            password=str(form.get("password", "")),
            address=client_address(request),
        )
    except (Unauthorized, TooManyRequests) as exc:
        status = 429 if isinstance(exc, TooManyRequests) else 401
        context = {"error": exc.message, "email": email, "next": target}
        return _login_form(request, context, status=status)
    await web_sessions.start(request, user_id=user.id, csrf_token=secrets.token_urlsafe(32))
    log.info("web_login", user=user.email)
    response = redirect(_safe_next(target))
    response.del_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@action(*ALL)
async def logout(
    request: web.Request, session: Session, _form: MultiDictProxy[str]
) -> web.Response:
    """POST /logout."""
    await web_sessions.end(request)
    return redirect("/login")


async def home(request: web.Request) -> web.StreamResponse:
    """GET /: the calls list."""
    return redirect("/calls")


# --- calls ----------------------------------------------------------------------


def _filters(request: web.Request) -> tuple[CallFilters, dict[str, str]]:
    """The filters of the query (days in the configured zone), or the defaults and the
    messages of the bad fields."""
    try:
        return call_filters(request, form=True), {}
    except InvalidRequest as exc:
        return CallFilters(tz=request.app[INGEST].settings.timezone), field_errors(exc)


def _query_without(request: web.Request, *names: str) -> str:
    return urlencode([(k, v) for k, v in request.query.items() if k not in names and v])


@page(*ALL)
async def calls_page(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /calls: the filtered, sorted, paged list."""
    filters, errors = _filters(request)
    listing = await calls.list_calls(request.app[INGEST].db, session.user, filters)
    pages = max(1, -(-listing["total"] // filters.per_page))
    first, last = filters.days()
    return render(
        request,
        session,
        "calls.html",
        {
            "filters": filters,
            "period": {"from": first, "to": last},
            "errors": errors,
            "listing": listing,
            "pages": pages,
            "managers": await calls.managers_seen(request.app[INGEST].db, session.user, filters),
            "page_query": _query_without(request, "page"),
            "export_query": _query_without(request, "page", "per_page"),
        },
    )


@page(*ALL)
async def calls_export(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /calls/export.xlsx: the filtered list as Excel."""
    filters = call_filters(request, form=True)
    rows = await calls.all_rows(request.app[INGEST].db, session.user, filters)
    return await xlsx_response(
        f"calls-{utcnow():%Y-%m-%d}.xlsx",
        functools.partial(exports.calls_workbook, rows, filters.zone),
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
    table_ids = [row["table_id"] for row in (card["results"] or {}).get("tables", [])]
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
            "can_set_roles": session.user.role in LEADS,
        },
        status=status,
    )


@page(*ALL)
async def call_page(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /calls/{task_id}: the call card."""
    return await _card(request, session)


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
    await calls.add_comment(request.app[INGEST].db, session.user, task_id, comment)
    return redirect(f"/calls/{task_id}#comments")


@action(*ALL)
async def reanalyze_submit(
    request: web.Request, session: Session, _form: MultiDictProxy[str]
) -> web.StreamResponse:
    """POST /calls/{task_id}/reanalyze."""
    task_id = request.match_info["task_id"]
    await calls.reanalyze(request.app[INGEST].db, session.user, task_id)
    log.info("reanalysis_requested", task_id=task_id, by=session.user.email)
    return redirect(f"/calls/{task_id}?notice=reanalysis")


@action(*LEADS)
async def swap_roles_submit(
    request: web.Request, session: Session, _form: MultiDictProxy[str]
) -> web.StreamResponse:
    """POST /calls/{task_id}/swap-roles: «Поменять роли»."""
    task_id = request.match_info["task_id"]
    await calls.swap_roles(request.app[INGEST].db, session.user, task_id)
    log.info("roles_swap_requested", task_id=task_id, by=session.user.email)
    return redirect(f"/calls/{task_id}?notice=roles_swapped")


@action(*LEADS)
async def confirm_roles_submit(
    request: web.Request, session: Session, _form: MultiDictProxy[str]
) -> web.StreamResponse:
    """POST /calls/{task_id}/confirm-roles: «Роли верны»."""
    task_id = request.match_info["task_id"]
    db = request.app[INGEST].db
    learn = (await load_connection_settings(db)).voiceprints_enabled
    await calls.confirm_roles(db, session.user, task_id, learn=learn)
    log.info("roles_confirmed", task_id=task_id, by=session.user.email)
    return redirect(f"/calls/{task_id}?notice=roles_confirmed")


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


# --- managers and dashboard ----------------------------------------------------


def _weeks_back(request: web.Request, weeks: int) -> tuple[CallFilters, dict[str, str]]:
    filters, errors = _filters(request)
    if filters.date_from is None and not errors:
        _, last = filters.days()
        filters = filters.model_copy(update={"date_from": last - timedelta(weeks=weeks)})
    return filters, errors


def _day_month(iso_day: str) -> str:
    """2026-11-22 as 22.11, how axis labels read in Russian."""
    return f"{iso_day[8:10]}.{iso_day[5:7]}"


@page(*LEADS)
async def managers_page(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /managers: the rating, and each manager's average score by week."""
    filters, errors = _weeks_back(request, 8)
    rating = await reports.managers(request.app[INGEST].db, session.user, filters)
    weeks = sorted({point["week"] for item in rating["items"] for point in item["weekly"]})
    series = [
        charts.Series(
            item["manager_name"] or item["manager_id"],
            [{p["week"]: p["average"] for p in item["weekly"]}.get(week) for week in weeks],
        )
        for item in rating["items"][: len(charts.PALETTE)]
    ]
    labels = [_day_month(week) for week in weeks]
    first, last = filters.days()
    return render(
        request,
        session,
        "managers.html",
        {
            "rating": rating["items"],
            "errors": errors,
            "period": {"from": first, "to": last},
            "chart": charts.line_chart("Средняя оценка по неделям", labels, series, unit="%"),
            "legend": charts.legend(series),
            "weeks": weeks,
            "series": series,
        },
    )


@page(*ALL)
async def dashboard_page(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /dashboard: the period at a glance."""
    filters, errors = _filters(request)
    board = await reports.dashboard(request.app[INGEST].db, session.user, filters)
    days = board["days"]
    labels = [_day_month(day["day"]) for day in days]
    scores = charts.Series("Средняя оценка", [day["average_score"] for day in days])
    ratio_labels = [f"{b['from']:.0%}–{b['to']:.0%}" for b in board["talk_ratio"]]
    first, last = filters.days()
    return render(
        request,
        session,
        "dashboard.html",
        {
            "board": board,
            "errors": errors,
            "period": {"from": first, "to": last},
            "total_calls": sum(day["calls"] for day in days),
            "calls_chart": charts.bar_chart(
                "Звонков в день", labels, [day["calls"] for day in days]
            ),
            "score_chart": charts.line_chart("Средняя оценка по дням", labels, [scores], unit="%"),
            "ratio_chart": charts.bar_chart(
                "Распределение доли речи менеджера",
                ratio_labels,
                [bucket["calls"] for bucket in board["talk_ratio"]],
            ),
            "ratio_labels": ratio_labels,
            "max_failed": max([row["failed"] for row in board["failed_stages"]] or [1]),
        },
    )


# --- settings: connection --------------------------------------------------------


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
            "values": values or {},
            "errors": errors or {},
            "notice": request.query.get("notice"),
        },
        status=status,
    )


@action(*ADMIN)
async def connection_submit(
    request: web.Request, session: Session, form: MultiDictProxy[str]
) -> web.StreamResponse:
    """POST /settings/connection: minimum duration and the error webhook."""
    ingest = request.app[INGEST]
    body: dict[str, Any] = {
        "min_call_duration_s": str(form.get("min_call_duration_s", "")),
        "voiceprints_enabled": "voiceprints_enabled" in form,  # an unticked box is not sent
    }
    if "error_webhook_url" in form:
        body["error_webhook_url"] = str(form["error_webhook_url"]).strip() or None
    try:
        update = validated(connection.ConnectionUpdate, body)
        ingest.state.connection = await connection.update_connection(
            ingest.db, ingest.state.connection, update, policy=ingest.policy
        )
    except InvalidRequest as exc:
        values = {key: str(value) for key, value in form.items()}
        return await _connection(
            request, session, values=values, errors=field_errors(exc), status=400
        )
    log.info("connection_settings_updated", by=session.user.email)
    return redirect("/settings/connection?notice=saved")


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
}


def _kind(request: web.Request) -> tuple[catalog.Kind, str, str, str]:
    section = request.match_info["section"]
    kind, title, form_template = CATALOG[section]
    return kind, title, form_template, section


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
            "metrics": METRIC_LABELS,
        },
        status=status,
    )


@page(*LEADS)
async def catalog_new(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /settings/{section}/new."""
    return await _catalog_form(request, session, item=None)


@page(*LEADS)
async def catalog_edit(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /settings/{section}/{id}."""
    kind, *_ = _kind(request)
    document = await catalog.get(request.app[INGEST].db, kind, request.match_info["id"])
    return await _catalog_form(request, session, item=catalog.view(document, session.user))


@action(*LEADS)
async def catalog_save(
    request: web.Request, session: Session, form: MultiDictProxy[str]
) -> web.StreamResponse:
    """POST /settings/{section}/new or /settings/{section}/{id}: create or replace."""
    kind, _, _, section = _kind(request)
    db = request.app[INGEST].db
    item_id = request.match_info.get("id")
    body = nested(form)
    if item_id is not None and kind is not catalog.TEMPLATE:
        # The webhook URL is fixed once saved: the stored one stands whatever was posted.
        body["webhook"] = {"url": (await catalog.get(db, kind, item_id))["webhook"]["url"]}
    try:
        model = validated(kind.model, body)
        if item_id is None:
            saved = await catalog.create(db, kind, model, policy=request.app[INGEST].policy)
        else:
            saved = await catalog.replace(
                db, kind, item_id, model, policy=request.app[INGEST].policy
            )
    except InvalidRequest as exc:
        shown = {**body, "id": item_id} if item_id else body
        if item_id:
            previous = catalog.view(await catalog.get(db, kind, item_id), session.user)
            shown = {**shown, "webhook": previous.get("webhook")}
        return await _catalog_form(
            request, session, item=shown, errors=field_errors(exc), status=400
        )
    log.info("catalog_saved", kind=kind.collection, id=saved["_id"], by=session.user.email)
    return redirect(f"/settings/{section}?notice=saved")


@action(*LEADS)
async def catalog_delete(
    request: web.Request, session: Session, _form: MultiDictProxy[str]
) -> web.StreamResponse:
    """POST /settings/{section}/{id}/delete."""
    kind, _, _, section = _kind(request)
    item_id = request.match_info["id"]
    await catalog.delete(request.app[INGEST].db, kind, item_id)
    log.info("catalog_deleted", kind=kind.collection, id=item_id, by=session.user.email)
    return redirect(f"/settings/{section}?notice=deleted")


@page(*LEADS)
async def table_rows_page(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /settings/tables/{id}/rows: the rows a table collected, as a table or Excel."""
    db = request.app[INGEST].db
    table = await catalog.get(db, catalog.TABLE, request.match_info["id"])
    filters, errors = _weeks_back(request, 4)
    rows = await reports.table_rows(db, session.user, table["_id"], filters)
    if wants_xlsx(request):
        return await xlsx_response(
            f"{table['_id']}.xlsx",
            functools.partial(exports.table_workbook, table, rows, filters.zone),
        )
    first, last = filters.days()
    return render(
        request,
        session,
        "table_rows.html",
        {
            "table": table,
            "rows": rows,
            "errors": errors,
            "period": {"from": first, "to": last},
            "export_query": _query_without(request, "format"),
        },
    )


# --- settings: users -------------------------------------------------------------


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


@page(*ADMIN)
async def user_new(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /settings/users/new."""
    return await _user_form(request, session, item=None)


@page(*ADMIN)
async def user_edit(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /settings/users/{id}."""
    document = await users.get_user(request.app[INGEST].db, request.match_info["id"])
    return await _user_form(request, session, item=users.view(document))


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


@action(*ADMIN)
async def user_delete(
    request: web.Request, session: Session, _form: MultiDictProxy[str]
) -> web.StreamResponse:
    """POST /settings/users/{id}/delete."""
    await users.delete_user(request.app[INGEST].db, request.match_info["id"])
    log.info("user_deleted", id=request.match_info["id"], by=session.user.email)
    return redirect("/settings/users?notice=deleted")


def add_routes(app: web.Application) -> None:
    """The pages of the web application."""
    router = app.router
    router.add_get("/", home)
    router.add_get("/login", login_page)
    router.add_post("/login", login_submit)
    router.add_post("/logout", logout)
    router.add_get("/calls", calls_page)
    router.add_get("/calls/export.xlsx", calls_export)
    router.add_get("/calls/{task_id}", call_page)
    router.add_post("/calls/{task_id}/comments", comment_submit)
    router.add_post("/calls/{task_id}/reanalyze", reanalyze_submit)
    router.add_post("/calls/{task_id}/swap-roles", swap_roles_submit)
    router.add_post("/calls/{task_id}/confirm-roles", confirm_roles_submit)
    router.add_post("/calls/{task_id}/deliveries/{id}/redeliver", redeliver_submit)
    router.add_get("/managers", managers_page)
    router.add_get("/dashboard", dashboard_page)
    router.add_get("/settings/connection", connection_page)
    router.add_post("/settings/connection", connection_submit)
    router.add_post("/settings/voiceprints/{manager_id}/delete", voiceprint_delete)
    router.add_get("/settings/users", users_page)
    router.add_get("/settings/users/new", user_new)
    router.add_post("/settings/users/new", user_save)
    router.add_get("/settings/users/{id}", user_edit)
    router.add_post("/settings/users/{id}", user_save)
    router.add_post("/settings/users/{id}/delete", user_delete)
    sections = "{section:templates|bindings|tables}"
    router.add_get(f"/settings/{sections}", catalog_list)
    router.add_get(f"/settings/{sections}/new", catalog_new)
    router.add_post(f"/settings/{sections}/new", catalog_save)
    router.add_get("/settings/tables/{id}/rows", table_rows_page)
    router.add_get(f"/settings/{sections}/{{id}}", catalog_edit)
    router.add_post(f"/settings/{sections}/{{id}}", catalog_save)
    router.add_post(f"/settings/{sections}/{{id}}/delete", catalog_delete)
