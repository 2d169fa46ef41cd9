"""The frame every page shares: who may open it (`page`, `action`: the session, the
role, the form's CSRF token), the menu, rendering, errors and redirects."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar, get_args
from urllib.parse import quote, urlencode

import aiohttp_jinja2
from aiohttp import web
from multidict import MultiDictProxy
from pydantic import BaseModel

from services.ingest.backoffice import alerts, blind, disputes
from services.ingest.backoffice.accounts import Role, Session, User
from services.ingest.backoffice.filters import STATUS_LABELS, CallFilters
from services.ingest.edge import (
    HTTP_STATUS,
    INGEST,
    Handler,
    authorize,
    browser_session,
    call_filters,
    error_from_http,
)
from services.ingest.webapp.forms import field_errors
from shared.errors import InvalidRequest, RopError
from shared.results import LanguageSetting
from shared.scripts import Metric
from shared.tasks import TaskEvent

ALL = (Role.ADMIN, Role.SUPERVISOR, Role.MANAGER)
LEADS = (Role.ADMIN, Role.SUPERVISOR)
ADMIN = (Role.ADMIN,)

# The menu: (path, label, who sees it). Settings pages are grouped under one heading.
MENU = (
    ("/calls", "Коммуникации", ALL),
    ("/managers", "Менеджеры", LEADS),
    ("/dashboard", "Дашборд", ALL),
    ("/disputes", "Оспаривания", ALL),
    ("/trust", "Качество оценки", LEADS),
)
SETTINGS_MENU = (
    ("/settings/connection", "Подключение", ADMIN),
    ("/settings/templates", "Шаблоны скриптов", LEADS),
    ("/settings/bindings", "Скрипты и промты", LEADS),
    ("/settings/tables", "Таблицы", LEADS),
    ("/settings/trackers", "Словари", LEADS),
    ("/settings/alerts", "Уведомления", LEADS),
    ("/settings/users", "Пользователи", ADMIN),
)
TIMELINE_LABELS: dict[str, str] = {
    **STATUS_LABELS,
    "webhook_succeeded": "Вебхук доставлен",
    "webhook_dead": "Вебхук не доставлен",
    "webhook_stopped": "Вебхук остановлен (410)",
    TaskEvent.REANALYSIS_REQUESTED: "Запрошен повторный анализ",
    TaskEvent.ROLES_SWAP_REQUESTED: "Роли менеджера и клиента поменяны местами",
    TaskEvent.ROLES_CONFIRMED: "Роли подтверждены",
    TaskEvent.VERDICT_CORRECTED: "Вердикт этапа исправлен",
}
ROLE_LABELS = {"admin": "Администратор", "supervisor": "Руководитель", "manager": "Менеджер"}
# «Язык звонков» and the language a call was recognised in; `spoken` as in «говорили …».
LANGUAGE_LABELS: dict[str, dict[str, str]] = {
    "ru": {"name": "Русский", "spoken": "по-русски"},
    "en": {"name": "Английский", "spoken": "по-английски"},
    "auto": {"name": "Определять по звонку", "spoken": ""},
}
assert set(LANGUAGE_LABELS) == set(get_args(LanguageSetting))  # every setting has a label
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
# Pages load nothing from elsewhere and run no inline script; no framing (and, as every
# answer but static files, no caching: `services/ingest/app.py`).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
PageHandler = Callable[[web.Request, Session], Awaitable[web.StreamResponse]]
FormHandler = Callable[[web.Request, Session, MultiDictProxy[str]], Awaitable[web.StreamResponse]]


# What waits for the user, counted beside a menu item (set by `_in_session`).
MENU_COUNTS = web.RequestKey("menu_counts", dict)


def _menu(user: User, counts: Mapping[str, int]) -> dict[str, Any]:
    def visible(items: tuple[tuple[str, str, tuple[Role, ...]], ...]) -> list[dict[str, Any]]:
        return [
            {"path": p, "label": label, "count": counts.get(p, 0)}
            for p, label, roles in items
            if user.role in roles
        ]

    return {
        "main": visible(MENU),
        "settings": visible(SETTINGS_MENU),
        "unread": counts.get("/notifications", 0),
    }


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
        "language_labels": LANGUAGE_LABELS,
    }
    if session is not None:
        base |= {
            "user": session.user,
            "role_label": ROLE_LABELS[session.user.role.value],
            "menu": _menu(session.user, request.get(MENU_COUNTS, {})),
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


# Paths of the API and of the machines that watch the gateway: their errors stay JSON.
MACHINE_PATHS = ("/api/", "/healthz", "/readyz", "/metrics")


@web.middleware
async def error_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A path of no page, or a method no page takes, answers the site's error page (with
    the menu of whoever is signed in), not the API's JSON."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if request.path.startswith(MACHINE_PATHS) or exc.status not in (404, 405):
            raise
        response = _error_page(request, await browser_session(request), error_from_http(exc))
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response


def redirect(location: str) -> web.Response:
    """303 See Other: after a form post the browser GETs the result."""
    return web.Response(status=303, headers={"Location": location})


def _to_login(request: web.Request) -> web.Response:
    return redirect(f"/login?next={quote(request.path_qs)}")


async def _in_session(
    request: web.Request, serve: Callable[[Session], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Serve with the browser's session: without one, the login page; an error of the back
    office (a role refused, a call not found) as its page."""
    session = await browser_session(request)
    if session is None:
        return _to_login(request)
    try:
        db = request.app[INGEST].db
        request[MENU_COUNTS] = {
            "/disputes": await disputes.open_count(db, session.user),
            "/trust": await blind.waiting_count(db, session.user),  # calls to review blind
            "/notifications": await alerts.unread_count(db, session.user),
        }
        return await serve(session)
    except RopError as exc:
        return _error_page(request, session, exc)


def page(*roles: Role) -> Callable[[PageHandler], Route]:
    """A GET page for these roles: no session goes to the login page, another role gets 403."""

    def wrap(handler: PageHandler) -> Route:
        async def run(request: web.Request) -> web.StreamResponse:
            async def serve(session: Session) -> web.StreamResponse:
                authorize(session, roles, refused="Эта страница вам недоступна")
                return await handler(request, session)

            return await _in_session(request, serve)

        return run

    return wrap


def action(*roles: Role) -> Callable[[FormHandler], Route]:
    """A form POST for these roles, refused without the session's CSRF token."""

    def wrap(handler: FormHandler) -> Route:
        async def run(request: web.Request) -> web.StreamResponse:
            async def serve(session: Session) -> web.StreamResponse:
                form = await request.post()
                authorize(
                    session,
                    roles,
                    csrf=str(form.get("csrf_token", "")),
                    refused="Это действие вам недоступно",
                    stale="Форма устарела (нет CSRF-токена). Обновите страницу.",
                )
                return await handler(request, session, form)  # type: ignore[arg-type]

            return await _in_session(request, serve)

        return run

    return wrap


def safe_next(target: str | None) -> str:
    """Only paths of this site: never `//host` or an absolute URL."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/calls"


FiltersT = TypeVar("FiltersT", bound=BaseModel)


def form_filters(
    request: web.Request,
    read: Callable[..., FiltersT],
    model: type[FiltersT],
) -> tuple[FiltersT, dict[str, str]]:
    """A page's filters of the query (`read` them as a form; days in the configured zone),
    or the defaults and the messages of the bad fields."""
    try:
        return read(request, form=True), {}
    except InvalidRequest as exc:
        return model(tz=request.app[INGEST].settings.timezone), field_errors(exc)


def page_filters(request: web.Request) -> tuple[CallFilters, dict[str, str]]:
    """The calls filters of a page's query."""
    return form_filters(request, call_filters, CallFilters)


def query_without(request: web.Request, *names: str) -> str:
    return urlencode([(k, v) for k, v in request.query.items() if k not in names and v])
