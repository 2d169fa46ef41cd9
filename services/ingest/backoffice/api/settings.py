"""What admins (and, for the catalog, supervisors) set up through the JSON API: the
connection, script templates, bindings and tables, users, voiceprints."""

from __future__ import annotations

from aiohttp import web
from typing_extensions import TypedDict

from services.ingest.apidoc import INVALID, MISSING, Answer, documented
from services.ingest.backoffice import catalog, connection, trackers, users
from services.ingest.backoffice.accounts import Role
from services.ingest.backoffice.users import UserForm, UserRecord
from services.ingest.edge import INGEST, base_url, json_response, read_model, require_session
from services.ingest.intake.submission import JSON_TYPE
from shared import voiceprints
from shared.connection import load_connection_settings
from shared.errors import NotFound
from shared.logging import get_logger
from shared.voiceprints import VoiceprintSummary

log = get_logger(__name__)
routes = web.RouteTableDef()


class Voiceprints(TypedDict):
    items: list[VoiceprintSummary]


@routes.get("/api/v1/settings/connection")
@documented(
    "Connection settings (admin)",
    answer=connection.ConnectionView,
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
    "Change the minimum call duration, the error webhook, whether voiceprints are kept, the "
    "blind-review share and the alerts' mail server and digest hour (admin)",
    body={JSON_TYPE: connection.ConnectionUpdate},
    answer=Answer("Changed", connection.ConnectionView),
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
    """CRUD of templates, bindings, tables or trackers for admins and supervisors (SPEC §4.1)."""
    roles = (Role.ADMIN, Role.SUPERVISOR)
    body = {JSON_TYPE: kind.model}
    view = kind.view_model
    one = f"{path}/{{id}}"

    @routes.get(path)
    @documented(f"List {what}", list[view])  # type: ignore[valid-type]
    async def list_items(request: web.Request) -> web.Response:
        session = await require_session(request, *roles)
        return json_response(await catalog.list_all(request.app[INGEST].db, kind, session.user))

    @routes.post(path)
    @documented(f"Create {what}", body=body, answers={201: Answer("Created", view)}, errors=INVALID)
    async def create_item(request: web.Request) -> web.Response:
        session = await require_session(request, *roles)
        item = await read_model(request, kind.model)
        ingest = request.app[INGEST]
        created = await catalog.create(ingest.db, kind, item, policy=ingest.policy, by=session.user)
        log.info("catalog_created", kind=kind.collection, id=created["_id"], by=session.user.email)
        return json_response(catalog.view(created, session.user), 201)

    @routes.get(one)
    @documented(f"One of {what}", view, errors=MISSING)
    async def get_item(request: web.Request) -> web.Response:
        session = await require_session(request, *roles)
        document = await catalog.get(
            request.app[INGEST].db, kind, request.match_info["id"], session.user
        )
        return json_response(catalog.view(document, session.user))

    @routes.put(one)
    @documented(
        f"Replace one of {what}",
        Answer("Replaced", view),
        body=body,
        errors={**INVALID, **MISSING},
    )
    async def replace_item(request: web.Request) -> web.Response:
        session = await require_session(request, *roles)
        item = await read_model(request, kind.model)
        item_id = request.match_info["id"]
        ingest = request.app[INGEST]
        updated = await catalog.replace(
            ingest.db, kind, item_id, item, policy=ingest.policy, by=session.user
        )
        log.info("catalog_updated", kind=kind.collection, id=item_id, by=session.user.email)
        return json_response(catalog.view(updated, session.user))

    @routes.delete(one)
    @documented(
        f"Delete one of {what}",
        answers={204: Answer("Deleted")},
        errors={**MISSING, 409: "conflict: still in use"},
    )
    async def delete_item(request: web.Request) -> web.Response:
        session = await require_session(request, *roles)
        item_id = request.match_info["id"]
        await catalog.delete(request.app[INGEST].db, kind, item_id, by=session.user)
        log.info("catalog_deleted", kind=kind.collection, id=item_id, by=session.user.email)
        return web.Response(status=204)


_catalog_routes("/api/v1/templates", catalog.TEMPLATE, "script templates")
_catalog_routes("/api/v1/bindings", catalog.BINDING, "script bindings")
_catalog_routes("/api/v1/tables", catalog.TABLE, "analytics tables")
_catalog_routes("/api/v1/trackers", catalog.TRACKER, "trackers (named phrase lists)")
_catalog_routes(
    "/api/v1/alert-rules",
    catalog.ALERT_RULE,
    "alert rules (they fire on the calls of whoever made them; theirs and admins' to change)",
)


@routes.post("/api/v1/trackers/{id}/apply")
@documented(
    "Count a tracker on the analysed calls of a period (admin, supervisor: the calls they "
    "see), from their stored transcripts, without transcribing them again; the analyzers "
    "do it in the background",
    body={JSON_TYPE: trackers.ApplyForm},
    answers={202: Answer("Marked", trackers.Applied)},
    errors={**INVALID, **MISSING},
)
async def apply_tracker(request: web.Request) -> web.Response:
    """POST /api/v1/trackers/{id}/apply: `date_from`, `date_to` (days in `tz`, else the
    configured zone)."""
    session = await require_session(request, Role.ADMIN, Role.SUPERVISOR)
    form = await read_model(request, trackers.ApplyForm)
    tracker_id = request.match_info["id"]
    ingest = request.app[INGEST]
    applied = await trackers.apply(
        ingest.db, session.user, tracker_id, form.filters(ingest.settings.timezone)
    )
    log.info(
        "tracker_applied", tracker_id=tracker_id, calls=applied["calls"], by=session.user.email
    )
    return json_response(applied, 202)


@routes.get("/api/v1/templates/{id}/versions")
@documented(
    "Every saved version of a script template, newest first (admin, supervisor)",
    catalog.TemplateVersions,
    errors=MISSING,
)
async def template_versions(request: web.Request) -> web.Response:
    """GET /api/v1/templates/{id}/versions: what each version said."""
    session = await require_session(request, Role.ADMIN, Role.SUPERVISOR)
    items = await catalog.versions(request.app[INGEST].db, request.match_info["id"], session.user)
    return json_response({"items": items})


# --- users (admin) ----------------------------------------------------------


@routes.get("/api/v1/users")
@documented("Users (admin)", answer=list[UserRecord])
async def list_users(request: web.Request) -> web.Response:
    """GET /api/v1/users (admin)."""
    await require_session(request, Role.ADMIN)
    return json_response(await users.list_users(request.app[INGEST].db))


@routes.post("/api/v1/users")
@documented(
    "Create a user (admin)",
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
    "One user (admin)",
    answer=UserRecord,
    errors=MISSING,
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
    body={JSON_TYPE: UserForm},
    answer=Answer("Changed", UserRecord),
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


@routes.get("/api/v1/voiceprints")
@documented(
    "Managers' voiceprints: calls and speech they were learnt from, never the numbers (admin)",
    answer=Voiceprints,
)
async def list_voiceprints(request: web.Request) -> web.Response:
    """GET /api/v1/voiceprints (admin): whose voiceprints exist and what they came from."""
    await require_session(request, Role.ADMIN)
    return json_response({"items": await voiceprints.list_voiceprints(request.app[INGEST].db)})


@routes.delete("/api/v1/voiceprints/{manager_id}")
@documented(
    "Forget a manager's voiceprint and their calls' voice embeddings (admin)",
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
