"""The back office's JSON API (what the web app shows): login, settings, catalog, users,
calls, reports and deliveries, behind sessions and roles."""

from __future__ import annotations

import functools
import secrets

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from services.ingest import web_sessions
from services.ingest.backoffice import (
    accounts,
    calls,
    catalog,
    commands,
    connection,
    deliveries,
    exports,
    reports,
    users,
)
from services.ingest.backoffice.accounts import Role
from services.ingest.backoffice.commands import CommentForm
from services.ingest.backoffice.users import UserForm
from services.ingest.edge import (
    INGEST,
    base_url,
    call_filters,
    client_address,
    json_response,
    read_model,
    require_session,
    stream_ranges,
    wants_xlsx,
    xlsx_response,
)
from services.ingest.intake.submission import validated
from shared import voiceprints
from shared.connection import load_connection_settings
from shared.errors import NotFound
from shared.logging import get_logger

log = get_logger(__name__)
routes = web.RouteTableDef()


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    email: str = Field(min_length=3, max_length=254)
    password: str = Field(min_length=1, max_length=1024)


@routes.post("/api/v1/auth/login")
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


@routes.post("/api/v1/auth/logout")
async def logout(request: web.Request) -> web.Response:
    """POST /api/v1/auth/logout."""
    session = await require_session(request)
    if session.token:
        await accounts.revoke_token(request.app[INGEST].db, session.token)
    else:
        await web_sessions.end(request)
    return json_response({"status": "success"})


@routes.get("/api/v1/auth/me")
async def me(request: web.Request) -> web.Response:
    """GET /api/v1/auth/me: who is logged in."""
    session = await require_session(request)
    return json_response({"user": session.user.public(), "csrf_token": session.csrf_token})


@routes.get("/api/v1/settings/connection")
async def get_connection(request: web.Request) -> web.Response:
    """GET /api/v1/settings/connection (admin)."""
    await require_session(request, Role.ADMIN)
    ingest = request.app[INGEST]
    # Read fresh: another replica may have changed it since the last background refresh.
    ingest.state.connection = await load_connection_settings(ingest.db)
    return json_response(
        connection.connection_view(ingest.state.connection, base_url=base_url(request))
    )


@routes.put("/api/v1/settings/connection")
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


def _catalog_routes(path: str, kind: catalog.Kind) -> None:
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

    routes.get(path)(list_items)
    routes.post(path)(create_item)
    routes.get(f"{path}/{{id}}")(get_item)
    routes.put(f"{path}/{{id}}")(replace_item)
    routes.delete(f"{path}/{{id}}")(delete_item)


_catalog_routes("/api/v1/templates", catalog.TEMPLATE)
_catalog_routes("/api/v1/bindings", catalog.BINDING)
_catalog_routes("/api/v1/tables", catalog.TABLE)


@routes.get("/api/v1/deliveries")
async def list_deliveries(request: web.Request) -> web.Response:
    """GET /api/v1/deliveries (admin, supervisor): filters status, endpoint, call_id, task_id."""
    session = await require_session(request, Role.ADMIN, Role.SUPERVISOR)
    filters = validated(deliveries.DeliveryFilters, dict(request.query))
    page = await deliveries.list_deliveries(request.app[INGEST].db, session.user, filters)
    return json_response(page)


@routes.post("/api/v1/deliveries/{id}/redeliver")
async def redeliver(request: web.Request) -> web.Response:
    """POST /api/v1/deliveries/{id}/redeliver (admin, supervisor)."""
    session = await require_session(request, Role.ADMIN, Role.SUPERVISOR)
    ingest = request.app[INGEST]
    delivery_id = request.match_info["id"]
    replayed = await deliveries.redeliver(ingest.db, ingest.broker, session.user, delivery_id)
    log.info("delivery_replayed", delivery_id=delivery_id, by=session.user.email)
    return json_response(replayed)


# --- users (admin) ----------------------------------------------------------


@routes.get("/api/v1/users")
async def list_users(request: web.Request) -> web.Response:
    """GET /api/v1/users (admin)."""
    await require_session(request, Role.ADMIN)
    return json_response(await users.list_users(request.app[INGEST].db))


@routes.post("/api/v1/users")
async def create_user(request: web.Request) -> web.Response:
    """POST /api/v1/users (admin)."""
    session = await require_session(request, Role.ADMIN)
    created = await users.create_user(request.app[INGEST].db, await read_model(request, UserForm))
    log.info("user_created", id=created["id"], role=created["role"], by=session.user.email)
    return json_response(created, 201)


@routes.get("/api/v1/users/{id}")
async def get_user(request: web.Request) -> web.Response:
    """GET /api/v1/users/{id} (admin)."""
    await require_session(request, Role.ADMIN)
    return json_response(
        users.view(await users.get_user(request.app[INGEST].db, request.match_info["id"]))
    )


@routes.put("/api/v1/users/{id}")
async def update_user(request: web.Request) -> web.Response:
    """PUT /api/v1/users/{id} (admin): a password only when it changes."""
    session = await require_session(request, Role.ADMIN)
    form = await read_model(request, UserForm)
    user_id = request.match_info["id"]
    updated = await users.update_user(request.app[INGEST].db, user_id, form)
    log.info("user_updated", id=user_id, by=session.user.email)
    return json_response(updated)


@routes.delete("/api/v1/users/{id}")
async def delete_user(request: web.Request) -> web.Response:
    """DELETE /api/v1/users/{id} (admin)."""
    session = await require_session(request, Role.ADMIN)
    user_id = request.match_info["id"]
    await users.delete_user(request.app[INGEST].db, user_id)
    log.info("user_deleted", id=user_id, by=session.user.email)
    return web.Response(status=204)


# --- calls, managers, dashboard ---------------------------------------------


@routes.get("/api/v1/admin/calls")
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


@routes.get("/api/v1/admin/calls/{task_id}")
async def get_admin_call(request: web.Request) -> web.Response:
    """GET /api/v1/admin/calls/{task_id}: the call card."""
    session = await require_session(request)
    card = await calls.call_card(
        request.app[INGEST].db, session.user, request.match_info["task_id"]
    )
    return json_response(card)


@routes.get("/api/v1/admin/calls/{task_id}/audio")
async def call_audio(request: web.Request) -> web.StreamResponse:
    """GET /api/v1/admin/calls/{task_id}/audio: the stored audio, with HTTP ranges."""
    session = await require_session(request)
    stream, content_type = await calls.open_audio(
        request.app[INGEST].db, session.user, request.match_info["task_id"]
    )
    return await stream_ranges(request, stream, content_type)


@routes.post("/api/v1/admin/calls/{task_id}/comments")
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
    routes.post(f"/api/v1/admin/calls/{{task_id}}/{command.path}")(run)


for _command in commands.COMMANDS:
    _command_route(_command)


@routes.get("/api/v1/voiceprints")
async def list_voiceprints(request: web.Request) -> web.Response:
    """GET /api/v1/voiceprints (admin): whose voiceprints exist and what they came from."""
    await require_session(request, Role.ADMIN)
    return json_response({"items": await voiceprints.list_voiceprints(request.app[INGEST].db)})


@routes.delete("/api/v1/voiceprints/{manager_id}")
async def delete_voiceprint(request: web.Request) -> web.Response:
    """DELETE /api/v1/voiceprints/{manager_id} (admin): forget a manager's voice."""
    session = await require_session(request, Role.ADMIN)
    manager_id = request.match_info["manager_id"]
    if not await voiceprints.forget(request.app[INGEST].db, manager_id):
        raise NotFound("Голосового отпечатка этого менеджера нет")
    log.info("voiceprint_deleted", manager_id=manager_id, by=session.user.email)
    return web.Response(status=204)


@routes.get("/api/v1/managers")
async def managers(request: web.Request) -> web.Response:
    """GET /api/v1/managers (admin, supervisor): rating and averages in the period."""
    session = await require_session(request, Role.ADMIN, Role.SUPERVISOR)
    filters = call_filters(request)
    return json_response(await reports.managers(request.app[INGEST].db, session.user, filters))


@routes.get("/api/v1/dashboard")
async def dashboard(request: web.Request) -> web.Response:
    """GET /api/v1/dashboard: calls and scores per day, failed stages, talk ratios."""
    session = await require_session(request)
    filters = call_filters(request)
    return json_response(await reports.dashboard(request.app[INGEST].db, session.user, filters))


@routes.get("/api/v1/tables/{id}/rows")
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
