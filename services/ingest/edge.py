"""The HTTP edge shared by the API and the web pages: the app keys, error mapping,
access logs, request bodies and authentication."""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import IO, Annotated, Any, Literal, NotRequired, TypeVar

import structlog
from aiohttp import web
from pydantic import BaseModel, Field, ValidationError, WithJsonSchema
from pymongo.errors import PyMongoError
from typing_extensions import TypedDict

from services.ingest import web_sessions
from services.ingest.backoffice import accounts
from services.ingest.backoffice.accounts import Role, Session
from services.ingest.backoffice.disputes import DisputeFilters
from services.ingest.backoffice.exports import XLSX_TYPE
from services.ingest.backoffice.filters import CallFilters
from services.ingest.backoffice.search import SearchFilters
from services.ingest.backoffice.trust import TrustFilters
from services.ingest.bootstrap import Ingest
from services.ingest.intake.submission import (
    JSON_TYPE,
    MAX_BODY_BYTES,
    invalid_fields,
    media_type,
    validated,
    validation_error,
)
from services.ingest.metrics import IngestMetrics
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

log = get_logger(__name__)

INGEST = web.AppKey("ingest", Ingest)
METRICS = web.AppKey("metrics", IngestMetrics)

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
    "rate_limited": 429,
    "unavailable": 503,
    "internal": 500,
}


class ErrorBody(TypedDict):
    """Every refusal and failure answers this (`RopError.to_body`)."""

    status: Literal["error"]
    code: Annotated[str, WithJsonSchema({"type": "string", "enum": list(HTTP_STATUS)})]
    message: Annotated[str, Field(description="Russian text for people.")]
    details: Annotated[
        list[dict[str, Any]], Field(description="What was wrong: `field` and `message`.")
    ]
    task_id: NotRequired[
        Annotated[str, Field(description="With duplicate_call: the first submission's task.")]
    ]
    retry_after_s: NotRequired[
        Annotated[int, Field(description="With rate_limited: as the Retry-After header.")]
    ]


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ModelT = TypeVar("ModelT", bound=BaseModel)


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.json_response(
        body, status=status, dumps=lambda obj: json.dumps(obj, ensure_ascii=False)
    )


def error_response(error: RopError) -> web.Response:
    """Render an error with the HTTP status of its code (and Retry-After when it has one)."""
    response = json_response(error.to_body(), HTTP_STATUS.get(error.code, 500))
    if "retry_after_s" in error.extra:
        response.headers["Retry-After"] = str(error.extra["retry_after_s"])
    return response


def error_from_http(exc: web.HTTPException) -> RopError:
    """aiohttp's own refusal (no route, another method, a body too large) as our error."""
    if exc.status == 404:
        return NotFound()
    if exc.status == 405:
        return MethodNotAllowed()
    if exc.status == 413:
        return too_large()
    return InvalidRequest(details=[{"field": "request", "message": exc.reason}])


def too_large(limit_bytes: int = MAX_BODY_BYTES) -> InvalidRequest:
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
    metrics = request.app[METRICS]
    metrics.in_progress.inc()
    try:
        response = await handler(request)
    except RopError as exc:
        response = error_response(exc)
    except web.HTTPException as exc:
        response = error_response(error_from_http(exc))
        if "Allow" in exc.headers:  # a 405 says which methods there are (RFC 9110)
            response.headers["Allow"] = exc.headers["Allow"]
    except PyMongoError as exc:
        log.error("database_unavailable", error=repr(exc))
        response = error_response(Unavailable())
    except Exception:
        log.exception("unhandled_error")
        response = error_response(RopError())
    finally:
        metrics.in_progress.dec()
        structlog.contextvars.unbind_contextvars("request_id", "task_id")
    elapsed_s = time.perf_counter() - started
    route = _route_name(request)
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
        remote=client_address(request),
    )
    return response


# --- request bodies ---------------------------------------------------------


async def read_body(request: web.Request, limit_bytes: int = MAX_BODY_BYTES) -> bytes:
    """Read the whole body, refusing it as soon as it passes the limit."""
    if request.content_length is not None and request.content_length > limit_bytes:
        raise too_large(limit_bytes)
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > limit_bytes:
            raise too_large(limit_bytes)
    return bytes(body)


def require_content_type(request: web.Request, *allowed: str) -> str:
    kind = media_type(request.content_type)
    if kind not in allowed:
        raise InvalidRequest(
            f"Неподдерживаемый Content-Type: ожидается {' или '.join(allowed)}",
            details=[{"field": "Content-Type", "message": f"получено {kind or 'пусто'}"}],
        )
    return kind


async def read_model(request: web.Request, model: type[ModelT]) -> ModelT:
    """Parse a JSON body of the admin API into a model; 400 names the bad fields."""
    require_content_type(request, JSON_TYPE)
    body = await read_body(request, ADMIN_BODY_LIMIT_BYTES)
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise validation_error(exc) from exc


# --- authentication ---------------------------------------------------------


def require_api_key(request: web.Request) -> None:
    supplied = request.query.get("apiKey") or request.headers.get("X-API-Key") or ""
    expected = request.app[INGEST].state.connection.api_key
    if not hmac.compare_digest(supplied.encode(), expected.encode()):
        raise Unauthorized()


def bearer_token(request: web.Request) -> str | None:
    """The API token of an `Authorization: Bearer …` header."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def browser_session(request: web.Request) -> Session | None:
    """The logged-in user of the browser's session cookie, if any (and still active)."""
    found = await web_sessions.current(request)
    if found is None:
        return None
    user_id, csrf_token = found
    user = await accounts.active_user(request.app[INGEST].db, user_id)
    return Session(user=user, csrf_token=csrf_token) if user else None


async def require_session(request: web.Request, *roles: Role) -> Session:
    """Resolve the caller's session: 401 without one, 403 for another role or no CSRF token."""
    token = bearer_token(request)
    if token:
        session = await accounts.session_for(request.app[INGEST].db, token)
    else:
        session = await browser_session(request)
    if session is None:
        raise Unauthorized("Требуется вход в систему")
    cookie_change = token is None and request.method not in SAFE_METHODS
    authorize(session, roles, csrf=request.headers.get(CSRF_HEADER, "") if cookie_change else None)
    return session


def authorize(
    session: Session,
    roles: Sequence[Role],
    *,
    csrf: str | None = None,
    refused: str = Forbidden.message,
    stale: str = "Недействительный CSRF-токен",
) -> None:
    """The one check of the back office, for the API and the pages alike: the role (any
    when `roles` is empty), then, for a change made with a browser session, that `csrf`
    is the session's CSRF token. What a person may see beyond that is `User.visibility`."""
    if roles and session.user.role not in roles:
        raise Forbidden(refused)
    if csrf is not None and not hmac.compare_digest(csrf.encode(), session.csrf_token.encode()):
        raise Forbidden(stale)


def client_address(request: web.Request) -> str:
    """The caller's address: the peer's, or behind `ROP_TRUSTED_PROXY_HOPS` = N proxies the
    one the outermost of them saw, the N-th address of X-Forwarded-For from the right
    (what comes before it the caller could have written)."""
    hops = request.app[INGEST].settings.trusted_proxy_hops
    forwarded = [
        address.strip()
        for header in request.headers.getall("X-Forwarded-For", [])
        for address in header.split(",")
        if address.strip()
    ]
    if hops and len(forwarded) >= hops:
        return forwarded[-hops]
    return request.remote or ""


def is_https(request: web.Request) -> bool:
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def base_url(request: web.Request) -> str:
    configured = request.app[INGEST].settings.public_base_url
    return configured or f"{request.scheme}://{request.host}"


RANGE_CHUNK_BYTES = 256 * 1024


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """The one range of a `Range: bytes=…` header as (first, last), or None if unsatisfiable."""
    unit, _, spec = header.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        return None
    first_text, _, last_text = spec.strip().partition("-")
    try:
        if not first_text:  # the last N bytes
            length = int(last_text)
            return (max(0, size - length), size - 1) if length > 0 and size else None
        first = int(first_text)
        last = int(last_text) if last_text else size - 1
    except ValueError:
        return None
    if first > last or first >= size:
        return None
    return first, min(last, size - 1)


async def stream_ranges(request: web.Request, stream: Any, content_type: str) -> web.StreamResponse:
    """Send a seekable GridFS file whole or the one byte range asked for (206), so an
    audio player can seek without downloading the whole call."""
    size = int(stream.length)
    headers = {"Accept-Ranges": "bytes", "Content-Type": content_type}
    first, last, status = 0, size - 1, 200
    if range_header := request.headers.get("Range"):
        wanted = byte_range(range_header, size)
        if wanted is None:
            return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
        first, last, status = *wanted, 206
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    left = last - first + 1  # 0 for an empty file (last is -1)
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = left
    await response.prepare(request)
    await stream.seek(first)
    while left > 0:
        chunk = await stream.read(min(RANGE_CHUNK_BYTES, left))
        if not chunk:
            break
        await response.write(chunk)
        left -= len(chunk)
    await response.write_eof()
    return response


SEND_CHUNK = 1 << 16


async def xlsx_response(
    request: web.Request, filename: str, workbook: Awaitable[IO[bytes]]
) -> web.StreamResponse:
    """An Excel file as a download, sent from its temporary file (closed afterwards)."""
    with await workbook as file:
        size = os.fstat(file.fileno()).st_size
        response = web.StreamResponse(
            headers={
                "Content-Type": XLSX_TYPE,
                "Content-Length": str(size),
                "Content-Disposition": f'attachment; filename="{filename}"',
            }
        )
        await response.prepare(request)
        while chunk := await asyncio.to_thread(file.read, SEND_CHUNK):
            await response.write(chunk)
        await response.write_eof()
    return response


def wants_xlsx(request: web.Request) -> bool:
    """`format=xlsx` asks for an Excel file instead of JSON; any other format is a 400."""
    formats = request.query.getall("format", [])
    if any(value != "xlsx" for value in formats):
        raise invalid_fields([{"field": "format", "message": "только xlsx"}])
    return bool(formats)


def query_model(
    request: web.Request, model: type[ModelT], *, form: bool, blank_means: tuple[str, ...] = ()
) -> ModelT:
    """A model of the query, days in the configured zone unless `tz` is given; a web form's
    fields left empty mean "any" (but those in `blank_means`, where empty is a choice)."""
    values = {
        key: value
        for key, value in request.query.items()
        if not (form and value == "" and key not in blank_means)
    }
    return validated(model, {"tz": request.app[INGEST].settings.timezone, **values})


def dispute_filters(request: web.Request, *, form: bool = False) -> DisputeFilters:
    """The disputes queue's filters of the query (an empty status: any)."""
    return query_model(request, DisputeFilters, form=form, blank_means=("status",))


def trust_filters(request: web.Request, *, form: bool = False) -> TrustFilters:
    """The trust report's filters of the query."""
    return query_model(request, TrustFilters, form=form)


def call_filters(request: web.Request, *, form: bool = False) -> CallFilters:
    """The calls filters of the query (of a web form's fields left empty with `form`);
    days in the configured zone unless `tz` is given. A bad value is a 400 naming the field."""
    return CallFilters.from_query(
        request.query, tz=request.app[INGEST].settings.timezone, form=form
    )


def search_filters(request: web.Request, *, form: bool = False) -> SearchFilters:
    """The search's words and calls filters of the query."""
    return query_model(request, SearchFilters, form=form)
