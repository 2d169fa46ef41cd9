"""The aiohttp edge: routes, authentication, error mapping, access logs and metrics."""

from __future__ import annotations

import asyncio
import functools
import secrets
from collections.abc import AsyncIterator, Callable

import structlog
from aiohttp import web
from aiohttp_session import session_middleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from pymongo.errors import PyMongoError

from services.ingest import web_sessions, webapp
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
from services.ingest.backoffice.accounts import Role
from services.ingest.backoffice.calls import CommentForm
from services.ingest.backoffice.users import UserForm
from services.ingest.bootstrap import bootstrap
from services.ingest.edge import (
    INGEST,
    METRICS,
    READY_TIMEOUT_S,
    base_url,
    call_filters,
    client_address,
    edge_middleware,
    json_response,
    read_body,
    read_model,
    require_api_key,
    require_content_type,
    require_session,
    stream_ranges,
    wants_xlsx,
    xlsx_response,
)
from services.ingest.intake import tasks
from services.ingest.intake.submission import (
    JSON_TYPE,
    MAX_BODY_BYTES,
    MULTIPART_TYPE,
    URLENCODED_TYPE,
    CallSubmission,
    parse_form_submission,
    parse_json_submission,
    validated,
)
from services.ingest.metrics import IngestMetrics
from services.ingest.openapi import OPENAPI
from shared import voiceprints
from shared.connection import load_connection_settings
from shared.errors import NotFound, RopError
from shared.logging import get_logger
from shared.mongo import WEB_SESSIONS, ping
from shared.settings import Settings

log = get_logger(__name__)


# --- CRM API ----------------------------------------------------------------


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


async def submit_form(request: web.Request) -> web.Response:
    """POST /api/v1/calls/audio-upload: multipart or urlencoded form."""
    return await _submit(request, parse_form_submission, "form")


async def submit_json(request: web.Request) -> web.Response:
    """POST /api/v1/calls: JSON."""
    return await _submit(request, lambda body, _type: parse_json_submission(body), "json")


async def get_task(request: web.Request) -> web.Response:
    """GET /api/v1/tasks/{task_id}."""
    require_api_key(request)
    return json_response(
        await tasks.get_task(request.app[INGEST].db, request.match_info["task_id"])
    )


async def get_call(request: web.Request) -> web.Response:
    """GET /api/v1/calls/{call_id}."""
    require_api_key(request)
    return json_response(
        await tasks.get_task_by_call_id(request.app[INGEST].db, request.match_info["call_id"])
    )


# --- admin API --------------------------------------------------------------


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    email: str = Field(min_length=3, max_length=254)
    password: str = Field(min_length=1, max_length=1024)


async def login(request: web.Request) -> web.Response:
    """POST /api/v1/auth/login: a session cookie for browsers, a token for scripts."""
    ingest = request.app[INGEST]
    credentials = await read_model(request, LoginRequest)
    user = await accounts.authenticate(
        ingest.db,
        email=credentials.email,
        password=credentials.password,
        address=client_address(request),
    )
    csrf_token = secrets.token_urlsafe(32)
    session = await accounts.issue_token(
        ingest.db, user, ttl_s=ingest.settings.session_ttl_s, csrf_token=csrf_token
    )
    await web_sessions.start(request, user_id=user.id, csrf_token=csrf_token)
    assert session.expires_at is not None
    return json_response(
        {
            "token": session.token,
            "csrf_token": csrf_token,
            "expires_at": session.expires_at.isoformat(),
            "user": user.public(),
        }
    )


async def logout(request: web.Request) -> web.Response:
    """POST /api/v1/auth/logout."""
    session = await require_session(request)
    if session.token:
        await accounts.revoke_token(request.app[INGEST].db, session.token)
    else:
        await web_sessions.end(request)
    return json_response({"status": "success"})


async def me(request: web.Request) -> web.Response:
    """GET /api/v1/auth/me: who is logged in."""
    session = await require_session(request)
    return json_response({"user": session.user.public(), "csrf_token": session.csrf_token})


async def get_connection(request: web.Request) -> web.Response:
    """GET /api/v1/settings/connection (admin)."""
    await require_session(request, Role.ADMIN)
    ingest = request.app[INGEST]
    # Read fresh: another replica may have changed it since the last background refresh.
    ingest.state.connection = await load_connection_settings(ingest.db)
    return json_response(
        connection.connection_view(ingest.state.connection, base_url=base_url(request))
    )


async def put_connection(request: web.Request) -> web.Response:
    """PUT /api/v1/settings/connection (admin): minimum duration and error webhook."""
    session = await require_session(request, Role.ADMIN)
    update = await read_model(request, connection.ConnectionUpdate)
    ingest = request.app[INGEST]
    ingest.state.connection = await connection.update_connection(
        ingest.db, ingest.state.connection, update, policy=ingest.policy
    )
    log.info(
        "connection_settings_updated", by=session.user.email, fields=sorted(update.model_fields_set)
    )
    return json_response(
        connection.connection_view(ingest.state.connection, base_url=base_url(request))
    )


def add_catalog_routes(app: web.Application, path: str, kind: catalog.Kind) -> None:
    """CRUD of templates, bindings or tables for admins and supervisors (SPEC §4.1)."""
    roles = (Role.ADMIN, Role.SUPERVISOR)

    async def list_items(request: web.Request) -> web.Response:
        session = await require_session(request, *roles)
        return json_response(await catalog.list_all(request.app[INGEST].db, kind, session.user))

    async def create_item(request: web.Request) -> web.Response:
        session = await require_session(request, *roles)
        item = await read_model(request, kind.model)
        ingest = request.app[INGEST]
        created = await catalog.create(ingest.db, kind, item, policy=ingest.policy)
        log.info("catalog_created", kind=kind.collection, id=created["_id"], by=session.user.email)
        return json_response(catalog.view(created, session.user), 201)

    async def get_item(request: web.Request) -> web.Response:
        session = await require_session(request, *roles)
        document = await catalog.get(request.app[INGEST].db, kind, request.match_info["id"])
        return json_response(catalog.view(document, session.user))

    async def replace_item(request: web.Request) -> web.Response:
        session = await require_session(request, *roles)
        item = await read_model(request, kind.model)
        item_id = request.match_info["id"]
        ingest = request.app[INGEST]
        updated = await catalog.replace(ingest.db, kind, item_id, item, policy=ingest.policy)
        log.info("catalog_updated", kind=kind.collection, id=item_id, by=session.user.email)
        return json_response(catalog.view(updated, session.user))

    async def delete_item(request: web.Request) -> web.Response:
        session = await require_session(request, *roles)
        item_id = request.match_info["id"]
        await catalog.delete(request.app[INGEST].db, kind, item_id)
        log.info("catalog_deleted", kind=kind.collection, id=item_id, by=session.user.email)
        return web.Response(status=204)

    app.router.add_get(path, list_items)
    app.router.add_post(path, create_item)
    app.router.add_get(f"{path}/{{id}}", get_item)
    app.router.add_put(f"{path}/{{id}}", replace_item)
    app.router.add_delete(f"{path}/{{id}}", delete_item)


async def list_deliveries(request: web.Request) -> web.Response:
    """GET /api/v1/deliveries (admin, supervisor): filters status, endpoint, call_id, task_id."""
    session = await require_session(request, Role.ADMIN, Role.SUPERVISOR)
    filters = validated(deliveries.DeliveryFilters, dict(request.query))
    page = await deliveries.list_deliveries(request.app[INGEST].db, session.user, filters)
    return json_response(page)


async def redeliver(request: web.Request) -> web.Response:
    """POST /api/v1/deliveries/{id}/redeliver (admin, supervisor)."""
    session = await require_session(request, Role.ADMIN, Role.SUPERVISOR)
    ingest = request.app[INGEST]
    delivery_id = request.match_info["id"]
    replayed = await deliveries.redeliver(ingest.db, ingest.broker, session.user, delivery_id)
    log.info("delivery_replayed", delivery_id=delivery_id, by=session.user.email)
    return json_response(replayed)


# --- users (admin) ----------------------------------------------------------


async def list_users(request: web.Request) -> web.Response:
    """GET /api/v1/users (admin)."""
    await require_session(request, Role.ADMIN)
    return json_response(await users.list_users(request.app[INGEST].db))


async def create_user(request: web.Request) -> web.Response:
    """POST /api/v1/users (admin)."""
    session = await require_session(request, Role.ADMIN)
    created = await users.create_user(request.app[INGEST].db, await read_model(request, UserForm))
    log.info("user_created", id=created["id"], role=created["role"], by=session.user.email)
    return json_response(created, 201)


async def get_user(request: web.Request) -> web.Response:
    """GET /api/v1/users/{id} (admin)."""
    await require_session(request, Role.ADMIN)
    return json_response(
        users.view(await users.get_user(request.app[INGEST].db, request.match_info["id"]))
    )


async def update_user(request: web.Request) -> web.Response:
    """PUT /api/v1/users/{id} (admin): a password only when it changes."""
    session = await require_session(request, Role.ADMIN)
    form = await read_model(request, UserForm)
    user_id = request.match_info["id"]
    updated = await users.update_user(request.app[INGEST].db, user_id, form)
    log.info("user_updated", id=user_id, by=session.user.email)
    return json_response(updated)


async def delete_user(request: web.Request) -> web.Response:
    """DELETE /api/v1/users/{id} (admin)."""
    session = await require_session(request, Role.ADMIN)
    user_id = request.match_info["id"]
    await users.delete_user(request.app[INGEST].db, user_id)
    log.info("user_deleted", id=user_id, by=session.user.email)
    return web.Response(status=204)


# --- calls, managers, dashboard ---------------------------------------------


async def list_admin_calls(request: web.Request) -> web.Response:
    """GET /api/v1/admin/calls: filters and paging, or the whole selection as `?format=xlsx`."""
    session = await require_session(request)
    filters = call_filters(request)
    db = request.app[INGEST].db
    if wants_xlsx(request):
        rows = await calls.all_rows(db, session.user, filters)
        return await xlsx_response(
            "calls.xlsx", functools.partial(exports.calls_workbook, rows, filters.zone)
        )
    return json_response(await calls.list_calls(db, session.user, filters))


async def get_admin_call(request: web.Request) -> web.Response:
    """GET /api/v1/admin/calls/{task_id}: the call card."""
    session = await require_session(request)
    card = await calls.call_card(
        request.app[INGEST].db, session.user, request.match_info["task_id"]
    )
    return json_response(card)


async def call_audio(request: web.Request) -> web.StreamResponse:
    """GET /api/v1/admin/calls/{task_id}/audio: the stored audio, with HTTP ranges."""
    session = await require_session(request)
    stream, content_type = await calls.open_audio(
        request.app[INGEST].db, session.user, request.match_info["task_id"]
    )
    return await stream_ranges(request, stream, content_type)


async def add_comment(request: web.Request) -> web.Response:
    """POST /api/v1/admin/calls/{task_id}/comments."""
    session = await require_session(request)
    form = await read_model(request, CommentForm)
    comment = await calls.add_comment(
        request.app[INGEST].db, session.user, request.match_info["task_id"], form
    )
    return json_response(comment, 201)


async def reanalyze(request: web.Request) -> web.Response:
    """POST /api/v1/admin/calls/{task_id}/reanalyze."""
    session = await require_session(request)
    task_id = request.match_info["task_id"]
    await calls.reanalyze(request.app[INGEST].db, session.user, task_id)
    log.info("reanalysis_requested", task_id=task_id, by=session.user.email)
    return json_response({"status": "queued", "task_id": task_id}, 202)


async def swap_roles(request: web.Request) -> web.Response:
    """POST /api/v1/admin/calls/{task_id}/swap-roles (admin, supervisor): re-score the call
    with manager and client exchanged; the CRM gets a new revision."""
    session = await require_session(request, Role.ADMIN, Role.SUPERVISOR)
    task_id = request.match_info["task_id"]
    await calls.swap_roles(request.app[INGEST].db, session.user, task_id)
    log.info("roles_swap_requested", task_id=task_id, by=session.user.email)
    return json_response({"status": "queued", "task_id": task_id}, 202)


async def confirm_roles(request: web.Request) -> web.Response:
    """POST /api/v1/admin/calls/{task_id}/confirm-roles (admin, supervisor): the roles of a
    mono call are right; the manager's voiceprint learns from it."""
    session = await require_session(request, Role.ADMIN, Role.SUPERVISOR)
    task_id = request.match_info["task_id"]
    ingest = request.app[INGEST]
    learn = (await load_connection_settings(ingest.db)).voiceprints_enabled
    await calls.confirm_roles(ingest.db, session.user, task_id, learn=learn)
    log.info("roles_confirmed", task_id=task_id, by=session.user.email)
    return json_response(await calls.call_card(ingest.db, session.user, task_id))


async def list_voiceprints(request: web.Request) -> web.Response:
    """GET /api/v1/voiceprints (admin): whose voiceprints exist and what they came from."""
    await require_session(request, Role.ADMIN)
    return json_response({"items": await voiceprints.list_voiceprints(request.app[INGEST].db)})


async def delete_voiceprint(request: web.Request) -> web.Response:
    """DELETE /api/v1/voiceprints/{manager_id} (admin): forget a manager's voice."""
    session = await require_session(request, Role.ADMIN)
    manager_id = request.match_info["manager_id"]
    if not await voiceprints.forget(request.app[INGEST].db, manager_id):
        raise NotFound("Голосового отпечатка этого менеджера нет")
    log.info("voiceprint_deleted", manager_id=manager_id, by=session.user.email)
    return web.Response(status=204)


async def managers(request: web.Request) -> web.Response:
    """GET /api/v1/managers (admin, supervisor): rating and averages in the period."""
    session = await require_session(request, Role.ADMIN, Role.SUPERVISOR)
    filters = call_filters(request)
    return json_response(await reports.managers(request.app[INGEST].db, session.user, filters))


async def dashboard(request: web.Request) -> web.Response:
    """GET /api/v1/dashboard: calls and scores per day, failed stages, talk ratios."""
    session = await require_session(request)
    filters = call_filters(request)
    return json_response(await reports.dashboard(request.app[INGEST].db, session.user, filters))


async def table_rows(request: web.Request) -> web.Response:
    """GET /api/v1/tables/{id}/rows (admin, supervisor): JSON, or `?format=xlsx`."""
    session = await require_session(request, Role.ADMIN, Role.SUPERVISOR)
    db = request.app[INGEST].db
    table = await catalog.get(db, catalog.TABLE, request.match_info["id"])
    filters = call_filters(request)
    rows = await reports.table_rows(db, session.user, table["_id"], filters)
    if not wants_xlsx(request):
        return json_response({"items": rows})
    return await xlsx_response(
        f"{table['_id']}.xlsx",
        functools.partial(exports.table_workbook, table, rows, filters.zone),
    )


# --- operations -------------------------------------------------------------


async def openapi(_request: web.Request) -> web.Response:
    """GET /api/v1/openapi.json."""
    return json_response(OPENAPI)


async def healthz(_request: web.Request) -> web.Response:
    """GET /healthz: the process is alive."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """GET /readyz: 200 while calls can be accepted (the database answers).

    The broker is reported but does not make the gateway unready: accepted calls
    wait in the outbox until it is back.
    """
    ingest = request.app[INGEST]
    try:
        await asyncio.wait_for(ping(ingest.db), READY_TIMEOUT_S)
        mongo_ok = True
    except (TimeoutError, PyMongoError):
        mongo_ok = False
    broker_ok = ingest.broker.is_connected
    status = "ready" if mongo_ok and broker_ok else "degraded" if mongo_ok else "unavailable"
    body = {
        "status": status,
        "checks": {"mongo": "ok" if mongo_ok else "down", "broker": "ok" if broker_ok else "down"},
    }
    return json_response(body, 200 if mongo_ok else 503)


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus text format."""
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


# On every answer: not sniffed, not framed, no version banner; API answers (some carry the
# API key or webhook secrets) are never cached.
RESPONSE_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Server": "rop"}


async def _harden(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(RESPONSE_HEADERS)
    if request.path.startswith("/api/"):
        response.headers["Cache-Control"] = "no-store"


def create_app(settings: Settings) -> web.Application:
    """Build the gateway application; its resources live as long as the app runs."""
    sessions = web_sessions.MongoSessionStorage(
        lambda: app[INGEST].db[WEB_SESSIONS],
        max_age_s=settings.session_ttl_s,
        secure=(settings.public_base_url or "").startswith("https://"),
    )
    app = web.Application(
        middlewares=[edge_middleware, session_middleware(sessions)],
        client_max_size=MAX_BODY_BYTES,
    )
    app[METRICS] = IngestMetrics()
    app.on_response_prepare.append(_harden)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        async with bootstrap(settings, app[METRICS]) as ingest:
            app[INGEST] = ingest
            yield

    app.cleanup_ctx.append(resources)
    app.router.add_post("/api/v1/calls/audio-upload", submit_form)
    app.router.add_post("/api/v1/calls", submit_json)
    app.router.add_get("/api/v1/tasks/{task_id}", get_task)
    app.router.add_get("/api/v1/calls/{call_id}", get_call)
    app.router.add_post("/api/v1/auth/login", login)
    app.router.add_post("/api/v1/auth/logout", logout)
    app.router.add_get("/api/v1/auth/me", me)
    app.router.add_get("/api/v1/settings/connection", get_connection)
    app.router.add_put("/api/v1/settings/connection", put_connection)
    add_catalog_routes(app, "/api/v1/templates", catalog.TEMPLATE)
    add_catalog_routes(app, "/api/v1/bindings", catalog.BINDING)
    add_catalog_routes(app, "/api/v1/tables", catalog.TABLE)
    app.router.add_get("/api/v1/tables/{id}/rows", table_rows)
    app.router.add_get("/api/v1/users", list_users)
    app.router.add_post("/api/v1/users", create_user)
    app.router.add_get("/api/v1/users/{id}", get_user)
    app.router.add_put("/api/v1/users/{id}", update_user)
    app.router.add_delete("/api/v1/users/{id}", delete_user)
    app.router.add_get("/api/v1/admin/calls", list_admin_calls)
    app.router.add_get("/api/v1/admin/calls/{task_id}", get_admin_call)
    app.router.add_get("/api/v1/admin/calls/{task_id}/audio", call_audio)
    app.router.add_post("/api/v1/admin/calls/{task_id}/comments", add_comment)
    app.router.add_post("/api/v1/admin/calls/{task_id}/reanalyze", reanalyze)
    app.router.add_post("/api/v1/admin/calls/{task_id}/swap-roles", swap_roles)
    app.router.add_post("/api/v1/admin/calls/{task_id}/confirm-roles", confirm_roles)
    app.router.add_get("/api/v1/voiceprints", list_voiceprints)
    app.router.add_delete("/api/v1/voiceprints/{manager_id}", delete_voiceprint)
    app.router.add_get("/api/v1/managers", managers)
    app.router.add_get("/api/v1/dashboard", dashboard)
    app.router.add_get("/api/v1/deliveries", list_deliveries)
    app.router.add_post("/api/v1/deliveries/{id}/redeliver", redeliver)
    app.router.add_get("/api/v1/openapi.json", openapi)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    webapp.setup(app, settings.timezone)
    return app
