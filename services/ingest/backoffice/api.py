"""The back office's JSON API (what the web app shows): login, settings, catalog, users,
calls, reports and deliveries, behind sessions and roles."""

from __future__ import annotations

import functools
import secrets
from typing import Annotated, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from services.ingest import web_sessions
from services.ingest.apidoc import Access, Answer, IsoTime, documented
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
from services.ingest.backoffice.accounts import Role, UserView
from services.ingest.backoffice.commands import CommentForm
from services.ingest.backoffice.filters import CallFilters
from services.ingest.backoffice.users import UserForm, UserRecord
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
from services.ingest.intake.submission import JSON_TYPE, validated
from services.ingest.intake.tasks import TaskId
from shared import voiceprints
from shared.connection import load_connection_settings
from shared.errors import NotFound
from shared.logging import get_logger
from shared.voiceprints import VoiceprintSummary

log = get_logger(__name__)
routes = web.RouteTableDef()

SESSION = Access.SESSION
INVALID = {400: "invalid_request: names the field"}
MISSING = {404: "not_found"}
NOT_YOURS = {403: "forbidden: another manager's call, or the role may not"}


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    email: str = Field(min_length=3, max_length=254)
    password: str = Field(min_length=1, max_length=1024)


class SessionStarted(TypedDict):
    """A logged-in person's credentials."""

    token: Annotated[str, Field(description="Send as `Authorization: Bearer`.")]
    csrf_token: Annotated[
        str, Field(description="Send as X-CSRF-Token on unsafe requests made with the cookie.")
    ]
    expires_at: IsoTime
    user: UserView


class WhoAmI(TypedDict):
    user: UserView
    csrf_token: str


class LoggedOut(TypedDict):
    status: Literal["success"]


class Queued(TypedDict):
    """The call waits for its analysis again; results go out with new webhook ids."""

    status: Literal["queued"]
    task_id: TaskId


class Voiceprints(TypedDict):
    items: list[VoiceprintSummary]


@routes.post("/api/v1/auth/login")
@documented(
    "Log in: sets an HttpOnly session cookie and returns a token",
    access=Access.PUBLIC,
    body={JSON_TYPE: LoginRequest},
    answers={200: Answer("Logged in", SessionStarted)},
    errors={
        400: "invalid_request",
        401: "unauthorized: wrong email or password, or switched off",
        429: "rate_limited: too many failed attempts from this address; Retry-After says "
        "when to try again",
        503: "unavailable: the database cannot be reached",
    },
)
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
@documented(
    "Log out: ends the browser session, or revokes the Bearer token",
    access=SESSION,
    answers={200: Answer("Logged out", LoggedOut)},
)
async def logout(request: web.Request) -> web.Response:
    """POST /api/v1/auth/logout."""
    session = await require_session(request)
    if session.token:
        await accounts.revoke_token(request.app[INGEST].db, session.token)
    else:
        await web_sessions.end(request)
    return json_response({"status": "success"})


@routes.get("/api/v1/auth/me")
@documented(
    "Who is logged in, and the CSRF token of their forms",
    access=SESSION,
    answers={200: Answer("OK", WhoAmI)},
)
async def me(request: web.Request) -> web.Response:
    """GET /api/v1/auth/me: who is logged in."""
    session = await require_session(request)
    return json_response({"user": session.user.public(), "csrf_token": session.csrf_token})


@routes.get("/api/v1/settings/connection")
@documented(
    "Connection settings (admin)",
    access=SESSION,
    answers={200: Answer("OK", connection.ConnectionView)},
)
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
@documented(
    "Change the minimum call duration, the error webhook and whether voiceprints are kept (admin)",
    access=SESSION,
    body={JSON_TYPE: connection.ConnectionUpdate},
    answers={200: Answer("Changed", connection.ConnectionView)},
    errors=INVALID,
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


def _catalog_routes(path: str, kind: catalog.Kind, what: str) -> None:
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

    body = {JSON_TYPE: kind.model}
    view = kind.view_model
    one = f"{path}/{{id}}"
    routes.get(path)(
        documented(
            f"List {what}",
            access=SESSION,
            answers={200: Answer("OK", list[view])},  # type: ignore[valid-type]
        )(list_items)
    )
    routes.post(path)(
        documented(
            f"Create {what}",
            access=SESSION,
            body=body,
            answers={201: Answer("Created", view)},
            errors=INVALID,
        )(create_item)
    )
    routes.get(one)(
        documented(
            f"One of {what}", access=SESSION, answers={200: Answer("OK", view)}, errors=MISSING
        )(get_item)
    )
    routes.put(one)(
        documented(
            f"Replace one of {what}",
            access=SESSION,
            body=body,
            answers={200: Answer("Replaced", view)},
            errors={**INVALID, **MISSING},
        )(replace_item)
    )
    routes.delete(one)(
        documented(
            f"Delete one of {what}", access=SESSION, answers={204: Answer("Deleted")},
            errors={**MISSING, 409: "conflict: still in use"},
        )(delete_item)
    )  # fmt: skip


_catalog_routes("/api/v1/templates", catalog.TEMPLATE, "script templates")
_catalog_routes("/api/v1/bindings", catalog.BINDING, "script bindings")
_catalog_routes("/api/v1/tables", catalog.TABLE, "analytics tables")


@routes.get("/api/v1/deliveries")
@documented(
    "Webhook delivery log (admin, supervisor)",
    access=SESSION,
    query=deliveries.DeliveryFilters,
    answers={200: Answer("OK", deliveries.DeliveryPage)},
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
    access=SESSION,
    answers={200: Answer("Queued to be sent", deliveries.DeliveryView)},
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


# --- users (admin) ----------------------------------------------------------


@routes.get("/api/v1/users")
@documented("Users (admin)", access=SESSION, answers={200: Answer("OK", list[UserRecord])})
async def list_users(request: web.Request) -> web.Response:
    """GET /api/v1/users (admin)."""
    await require_session(request, Role.ADMIN)
    return json_response(await users.list_users(request.app[INGEST].db))


@routes.post("/api/v1/users")
@documented(
    "Create a user (admin)",
    access=SESSION,
    body={JSON_TYPE: UserForm},
    answers={201: Answer("Created", UserRecord)},
    errors={**INVALID, 409: "conflict: email taken"},
)
async def create_user(request: web.Request) -> web.Response:
    """POST /api/v1/users (admin)."""
    session = await require_session(request, Role.ADMIN)
    created = await users.create_user(request.app[INGEST].db, await read_model(request, UserForm))
    log.info("user_created", id=created["id"], role=created["role"], by=session.user.email)
    return json_response(created, 201)


@routes.get("/api/v1/users/{id}")
@documented(
    "One user (admin)", access=SESSION, answers={200: Answer("OK", UserRecord)}, errors=MISSING
)
async def get_user(request: web.Request) -> web.Response:
    """GET /api/v1/users/{id} (admin)."""
    await require_session(request, Role.ADMIN)
    return json_response(
        users.view(await users.get_user(request.app[INGEST].db, request.match_info["id"]))
    )


@routes.put("/api/v1/users/{id}")
@documented(
    "Change a user; password only when given (admin)",
    access=SESSION,
    body={JSON_TYPE: UserForm},
    answers={200: Answer("Changed", UserRecord)},
    errors={**INVALID, **MISSING, 409: "conflict: the last admin, or email taken"},
)
async def update_user(request: web.Request) -> web.Response:
    """PUT /api/v1/users/{id} (admin): a password only when it changes."""
    session = await require_session(request, Role.ADMIN)
    form = await read_model(request, UserForm)
    user_id = request.match_info["id"]
    updated = await users.update_user(request.app[INGEST].db, user_id, form)
    log.info("user_updated", id=user_id, by=session.user.email)
    return json_response(updated)


@routes.delete("/api/v1/users/{id}")
@documented(
    "Delete a user (admin)",
    access=SESSION,
    answers={204: Answer("Deleted")},
    errors={**MISSING, 409: "conflict: the last admin"},
)
async def delete_user(request: web.Request) -> web.Response:
    """DELETE /api/v1/users/{id} (admin)."""
    session = await require_session(request, Role.ADMIN)
    user_id = request.match_info["id"]
    await users.delete_user(request.app[INGEST].db, user_id)
    log.info("user_deleted", id=user_id, by=session.user.email)
    return web.Response(status=204)


# --- calls, managers, dashboard ---------------------------------------------


@routes.get("/api/v1/admin/calls")
@documented(
    "Calls the caller may see, filtered and paged",
    access=SESSION,
    query=CallFilters,
    answers={200: Answer("OK", calls.CallPage, xlsx=True)},
    errors=INVALID,
)
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
@documented(
    "The call card: results, transcript, comments, deliveries",
    access=SESSION,
    answers={200: Answer("OK", calls.CallCard)},
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
    access=SESSION,
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
    access=SESSION,
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
        access=SESSION,
        answers={202 if command.queues_analysis else 200: answer},
        errors={**MISSING, **NOT_YOURS, 409: f"conflict: {command.conflict}"},
    )(run)
    routes.post(f"/api/v1/admin/calls/{{task_id}}/{command.path}")(run)


for _command in commands.COMMANDS:
    _command_route(_command)


@routes.get("/api/v1/voiceprints")
@documented(
    "Managers' voiceprints: calls and speech they were learnt from, never the numbers (admin)",
    access=SESSION,
    answers={200: Answer("OK", Voiceprints)},
)
async def list_voiceprints(request: web.Request) -> web.Response:
    """GET /api/v1/voiceprints (admin): whose voiceprints exist and what they came from."""
    await require_session(request, Role.ADMIN)
    return json_response({"items": await voiceprints.list_voiceprints(request.app[INGEST].db)})


@routes.delete("/api/v1/voiceprints/{manager_id}")
@documented(
    "Forget a manager's voiceprint and their calls' voice embeddings (admin)",
    access=SESSION,
    answers={204: Answer("Deleted")},
    errors=MISSING,
)
async def delete_voiceprint(request: web.Request) -> web.Response:
    """DELETE /api/v1/voiceprints/{manager_id} (admin): forget a manager's voice."""
    session = await require_session(request, Role.ADMIN)
    manager_id = request.match_info["manager_id"]
    if not await voiceprints.forget(request.app[INGEST].db, manager_id):
        raise NotFound("Голосового отпечатка этого менеджера нет")
    log.info("voiceprint_deleted", manager_id=manager_id, by=session.user.email)
    return web.Response(status=204)


@routes.get("/api/v1/managers")
@documented(
    "Rating, calls, average score, perfect calls, talk ratio, weekly averages per manager "
    "(admin, supervisor)",
    access=SESSION,
    query=CallFilters,
    answers={200: Answer("OK", reports.ManagersReport)},
    errors=INVALID,
)
async def managers(request: web.Request) -> web.Response:
    """GET /api/v1/managers (admin, supervisor): rating and averages in the period."""
    session = await require_session(request, Role.ADMIN, Role.SUPERVISOR)
    filters = call_filters(request)
    return json_response(await reports.managers(request.app[INGEST].db, session.user, filters))


@routes.get("/api/v1/dashboard")
@documented(
    "Calls and average score per day, stages failed most, talk ratios",
    access=SESSION,
    query=CallFilters,
    answers={200: Answer("OK", reports.Dashboard)},
    errors=INVALID,
)
async def dashboard(request: web.Request) -> web.Response:
    """GET /api/v1/dashboard: calls and scores per day, failed stages, talk ratios."""
    session = await require_session(request)
    filters = call_filters(request)
    return json_response(await reports.dashboard(request.app[INGEST].db, session.user, filters))


@routes.get("/api/v1/tables/{id}/rows")
@documented(
    "Rows a table collected (admin, supervisor)",
    access=SESSION,
    query=CallFilters,
    answers={200: Answer("OK", reports.TableRows, xlsx=True)},
    errors={**INVALID, **MISSING},
)
async def table_rows(request: web.Request) -> web.Response:
    """GET /api/v1/tables/{id}/rows (admin, supervisor): JSON, or `?format=xlsx`."""
    session = await require_session(request, Role.ADMIN, Role.SUPERVISOR)
    db = request.app[INGEST].db
    table = await catalog.get(db, catalog.TABLE, request.match_info["id"])
    filters = call_filters(request)
    rows = await reports.table_rows(db, session.user, table["_id"], filters)
    if not wants_xlsx(request):
        return json_response(reports.TableRows(items=rows))
    return await xlsx_response(
        f"{table['_id']}.xlsx",
        functools.partial(exports.table_workbook, table, rows, filters.zone),
    )
