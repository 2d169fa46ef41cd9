"""The aiohttp edge: routes, authentication, error mapping, access logs and metrics."""

from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pymongo.errors import PyMongoError

from services.ingest import accounts, catalog, deliveries, handlers
from services.ingest.accounts import Role, Session
from services.ingest.bootstrap import Ingest, bootstrap
from services.ingest.metrics import IngestMetrics
from services.ingest.openapi import OPENAPI
from services.ingest.submission import (
    JSON_TYPE,
    MAX_BODY_BYTES,
    MULTIPART_TYPE,
    URLENCODED_TYPE,
    CallSubmission,
    media_type,
    parse_form_submission,
    parse_json_submission,
    validation_error,
)
from shared.connection import load_connection_settings
from shared.errors import (
    Forbidden,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    RopError,
    Unauthorized,
    Unavailable,
)
from shared.logging import get_logger, redact_text
from shared.mongo import ping
from shared.settings import Settings

log = get_logger(__name__)

INGEST = web.AppKey("ingest", Ingest)
METRICS = web.AppKey("metrics", IngestMetrics)

SESSION_COOKIE = "rop_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ADMIN_BODY_LIMIT_BYTES = 512 * 1024
READY_TIMEOUT_S = 2.0

HTTP_STATUS = {
    "invalid_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "duplicate_call": 409,
    "conflict": 409,
    "unavailable": 503,
    "internal": 500,
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ModelT = TypeVar("ModelT", bound=BaseModel)


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(
        body, status=status, dumps=lambda obj: json.dumps(obj, ensure_ascii=False)
    )


def error_response(error: RopError) -> web.Response:
    """Render an error with the HTTP status of its code."""
    return _json(error.to_body(), HTTP_STATUS.get(error.code, 500))


def _error_from_http(exc: web.HTTPException) -> RopError:
    if exc.status == 404:
        return NotFound()
    if exc.status == 405:
        return MethodNotAllowed()
    if exc.status == 413:
        return _too_large()
    return InvalidRequest(details=[{"field": "request", "message": exc.reason}])


def _too_large(limit_bytes: int = MAX_BODY_BYTES) -> InvalidRequest:
    return InvalidRequest(
        f"Тело запроса больше {limit_bytes // 1024} КиБ",
        details=[{"field": "body", "message": "слишком большой запрос"}],
    )


def _route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def edge_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give each request an id, map errors to JSON bodies, log access and count it."""
    request_id = request.headers.get("X-Request-ID", "")
    if not (0 < len(request_id) <= 64 and request_id.isascii() and request_id.isprintable()):
        request_id = uuid.uuid4().hex
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    try:
        response = await handler(request)
    except RopError as exc:
        response = error_response(exc)
    except web.HTTPException as exc:
        response = error_response(_error_from_http(exc))
    except PyMongoError as exc:
        log.error("database_unavailable", error=repr(exc))
        response = error_response(Unavailable())
    except Exception:
        log.exception("unhandled_error")
        response = error_response(RopError())
    finally:
        structlog.contextvars.unbind_contextvars("request_id", "task_id")
    elapsed_s = time.perf_counter() - started
    route = _route_name(request)
    metrics = request.app[METRICS]
    metrics.requests.labels(route, request.method, str(response.status)).inc()
    metrics.latency.labels(route).observe(elapsed_s)
    response.headers["X-Request-ID"] = request_id
    log.info(
        "http_request",
        request_id=request_id,
        method=request.method,
        path=redact_text(str(request.rel_url)),
        status=response.status,
        latency_ms=round(elapsed_s * 1000, 2),
        remote=request.remote,
    )
    return response


# --- request bodies ---------------------------------------------------------


async def read_body(request: web.Request, limit_bytes: int = MAX_BODY_BYTES) -> bytes:
    """Read the whole body, refusing it as soon as it passes the limit."""
    if request.content_length is not None and request.content_length > limit_bytes:
        raise _too_large(limit_bytes)
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > limit_bytes:
            raise _too_large(limit_bytes)
    return bytes(body)


def _require_content_type(request: web.Request, *allowed: str) -> str:
    kind = media_type(request.content_type)
    if kind not in allowed:
        raise InvalidRequest(
            f"Неподдерживаемый Content-Type: ожидается {' или '.join(allowed)}",
            details=[{"field": "Content-Type", "message": f"получено {kind or 'пусто'}"}],
        )
    return kind


async def read_model(request: web.Request, model: type[ModelT]) -> ModelT:
    """Parse a JSON body of the admin API into a model; 400 names the bad fields."""
    _require_content_type(request, JSON_TYPE)
    body = await read_body(request, ADMIN_BODY_LIMIT_BYTES)
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise validation_error(exc) from exc


# --- authentication ---------------------------------------------------------


def _require_api_key(request: web.Request) -> None:
    supplied = request.query.get("apiKey") or request.headers.get("X-API-Key") or ""
    expected = request.app[INGEST].state.connection.api_key
    if not hmac.compare_digest(supplied.encode(), expected.encode()):
        raise Unauthorized()


def _session_token(request: web.Request) -> tuple[str | None, bool]:
    authorization = request.headers.get("Authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip(), False
    return request.cookies.get(SESSION_COOKIE), True


async def require_session(request: web.Request, *roles: Role) -> Session:
    """Resolve the caller's session: 401 without one, 403 for another role or no CSRF token."""
    token, from_cookie = _session_token(request)
    session = await accounts.session_for(request.app[INGEST].db, token) if token else None
    if session is None:
        raise Unauthorized("Требуется вход в систему")
    if from_cookie and request.method not in SAFE_METHODS:
        supplied = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(supplied.encode(), session.csrf_token.encode()):
            raise Forbidden("Недействительный CSRF-токен")
    if roles and session.user.role not in roles:
        raise Forbidden()
    return session


# --- CRM API ----------------------------------------------------------------


async def _submit(
    request: web.Request, parse: Callable[[bytes, str], CallSubmission], source: str
) -> web.Response:
    ingest = request.app[INGEST]
    try:
        _require_api_key(request)
        allowed = (JSON_TYPE,) if source == "json" else (MULTIPART_TYPE, URLENCODED_TYPE)
        _require_content_type(request, *allowed)
        submission = parse(await read_body(request), request.headers.get("Content-Type", ""))
        structlog.contextvars.bind_contextvars(call_id=submission.call_id)
        acceptance = await handlers.accept_call(
            submission,
            db=ingest.db,
            inserter=ingest.inserter,
            relay=ingest.relay,
            state=ingest.state,
            source=source,
        )
        log.info("call_accepted", task_id=acceptance.task_id, status=acceptance.body["status"])
    except RopError as exc:
        ingest.metrics.calls_rejected.labels(exc.code).inc()
        raise
    finally:
        structlog.contextvars.unbind_contextvars("call_id")
    ingest.metrics.calls_accepted.labels(acceptance.body["status"]).inc()
    return _json(acceptance.body)


async def submit_form(request: web.Request) -> web.Response:
    """POST /api/v1/calls/audio-upload: multipart or urlencoded form."""
    return await _submit(request, parse_form_submission, "form")


async def submit_json(request: web.Request) -> web.Response:
    """POST /api/v1/calls: JSON."""
    return await _submit(request, lambda body, _type: parse_json_submission(body), "json")


async def get_task(request: web.Request) -> web.Response:
    """GET /api/v1/tasks/{task_id}."""
    _require_api_key(request)
    return _json(await handlers.get_task(request.app[INGEST].db, request.match_info["task_id"]))


async def get_call(request: web.Request) -> web.Response:
    """GET /api/v1/calls/{call_id}."""
    _require_api_key(request)
    return _json(
        await handlers.get_task_by_call_id(request.app[INGEST].db, request.match_info["call_id"])
    )


# --- admin API --------------------------------------------------------------


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    email: str = Field(min_length=3, max_length=254)
    password: str = Field(min_length=1, max_length=1024)


def _is_https(request: web.Request) -> bool:
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


async def login(request: web.Request) -> web.Response:
    """POST /api/v1/auth/login: a session cookie for browsers, a token for scripts."""
    ingest = request.app[INGEST]
    credentials = await read_model(request, LoginRequest)
    session = await accounts.log_in(
        ingest.db,
        email=credentials.email,
        password=credentials.password,
        ttl_s=ingest.settings.session_ttl_s,
    )
    response = _json(
        {
            "token": session.token,
            "csrf_token": session.csrf_token,
            "expires_at": session.expires_at.isoformat(),
            "user": session.user.public(),
        }
    )
    response.set_cookie(
        SESSION_COOKIE,
        session.token,
        max_age=ingest.settings.session_ttl_s,
        httponly=True,
        samesite="Lax",
        secure=_is_https(request),
        path="/",
    )
    return response


async def logout(request: web.Request) -> web.Response:
    """POST /api/v1/auth/logout."""
    session = await require_session(request)
    await accounts.log_out(request.app[INGEST].db, session.token)
    response = _json({"status": "success"})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


async def me(request: web.Request) -> web.Response:
    """GET /api/v1/auth/me: who is logged in."""
    session = await require_session(request)
    return _json({"user": session.user.public(), "csrf_token": session.csrf_token})


def _base_url(request: web.Request) -> str:
    configured = request.app[INGEST].settings.public_base_url
    return configured or f"{request.scheme}://{request.host}"


async def get_connection(request: web.Request) -> web.Response:
    """GET /api/v1/settings/connection (admin)."""
    await require_session(request, Role.ADMIN)
    ingest = request.app[INGEST]
    # Read fresh: another replica may have changed it since the last background refresh.
    ingest.state.connection = await load_connection_settings(ingest.db)
    return _json(handlers.connection_view(ingest.state.connection, base_url=_base_url(request)))


async def put_connection(request: web.Request) -> web.Response:
    """PUT /api/v1/settings/connection (admin): minimum duration and error webhook."""
    session = await require_session(request, Role.ADMIN)
    update = await read_model(request, handlers.ConnectionUpdate)
    ingest = request.app[INGEST]
    ingest.state.connection = await handlers.update_connection(
        ingest.db, ingest.state.connection, update
    )
    log.info(
        "connection_settings_updated", by=session.user.email, fields=sorted(update.model_fields_set)
    )
    return _json(handlers.connection_view(ingest.state.connection, base_url=_base_url(request)))


def add_catalog_routes(app: web.Application, path: str, kind: catalog.Kind) -> None:
    """CRUD of templates, bindings or tables for admins and supervisors (SPEC §4.1)."""
    roles = (Role.ADMIN, Role.SUPERVISOR)

    async def list_items(request: web.Request) -> web.Response:
        await require_session(request, *roles)
        return _json(await catalog.list_all(request.app[INGEST].db, kind))

    async def create_item(request: web.Request) -> web.Response:
        session = await require_session(request, *roles)
        item = await read_model(request, kind.model)
        created = await catalog.create(request.app[INGEST].db, kind, item)
        log.info("catalog_created", kind=kind.collection, id=created["id"], by=session.user.email)
        return _json(created, 201)

    async def get_item(request: web.Request) -> web.Response:
        await require_session(request, *roles)
        document = await catalog.get(request.app[INGEST].db, kind, request.match_info["id"])
        return _json(catalog.view(document))

    async def replace_item(request: web.Request) -> web.Response:
        session = await require_session(request, *roles)
        item = await read_model(request, kind.model)
        item_id = request.match_info["id"]
        updated = await catalog.replace(request.app[INGEST].db, kind, item_id, item)
        log.info("catalog_updated", kind=kind.collection, id=item_id, by=session.user.email)
        return _json(updated)

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
    await require_session(request, Role.ADMIN, Role.SUPERVISOR)
    try:
        limit = int(request.query.get("limit", "50"))
        offset = int(request.query.get("offset", "0"))
    except ValueError as exc:
        raise InvalidRequest(
            "Некорректная страница", details=[{"field": "limit", "message": "целое число"}]
        ) from exc
    filters = {
        key: request.query[key]
        for key in ("status", "endpoint", "call_id", "task_id")
        if key in request.query
    }
    page = await deliveries.list_deliveries(
        request.app[INGEST].db, filters=filters, limit=limit, offset=offset
    )
    return _json(page)


async def redeliver(request: web.Request) -> web.Response:
    """POST /api/v1/deliveries/{id}/redeliver (admin, supervisor)."""
    session = await require_session(request, Role.ADMIN, Role.SUPERVISOR)
    ingest = request.app[INGEST]
    delivery_id = request.match_info["id"]
    replayed = await deliveries.redeliver(ingest.db, ingest.broker, delivery_id)
    log.info("delivery_replayed", delivery_id=delivery_id, by=session.user.email)
    return _json(replayed)


# --- operations -------------------------------------------------------------


async def openapi(_request: web.Request) -> web.Response:
    """GET /api/v1/openapi.json."""
    return _json(OPENAPI)


async def healthz(_request: web.Request) -> web.Response:
    """GET /healthz: the process is alive."""
    return _json({"status": "ok"})


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
    return _json(body, 200 if mongo_ok else 503)


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus text format."""
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(settings: Settings) -> web.Application:
    """Build the gateway application; its resources live as long as the app runs."""
    app = web.Application(middlewares=[edge_middleware], client_max_size=MAX_BODY_BYTES)
    app[METRICS] = IngestMetrics()

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
    app.router.add_get("/api/v1/deliveries", list_deliveries)
    app.router.add_post("/api/v1/deliveries/{id}/redeliver", redeliver)
    app.router.add_get("/api/v1/openapi.json", openapi)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app
