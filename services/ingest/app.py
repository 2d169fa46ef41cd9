"""The gateway application: the CRM intake, the back office's API and pages, the OpenAPI
document, health and metrics, behind one edge (errors, auth, access log, headers)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Literal

from aiohttp import web
from aiohttp_session import session_middleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pymongo.errors import PyMongoError
from typing_extensions import TypedDict

from services.ingest import web_sessions, webapp
from services.ingest.apidoc import Access, Answer, documented
from services.ingest.backoffice.api import ROUTE_TABLES as BACKOFFICE_ROUTES
from services.ingest.bootstrap import bootstrap
from services.ingest.edge import (
    INGEST,
    METRICS,
    READY_TIMEOUT_S,
    edge_middleware,
    json_response,
)
from services.ingest.intake import api as intake_api
from services.ingest.intake.submission import MAX_BODY_BYTES
from services.ingest.metrics import IngestMetrics
from services.ingest.openapi import build_openapi
from shared.mongo import WEB_SESSIONS, ping
from shared.settings import Settings
from shared.webhooks import WEBHOOK_BODIES

routes = web.RouteTableDef()


class Health(TypedDict):
    status: Literal["ok"]


ReadyStatus = Literal["ready", "degraded", "unavailable"]


class Readiness(TypedDict):
    status: ReadyStatus
    checks: dict[Literal["mongo", "broker"], Literal["ok", "down"]]


@routes.get("/api/v1/openapi.json")
@documented("This document", access=Access.PUBLIC, answer=dict[str, Any])
async def openapi(_request: web.Request) -> web.Response:
    """GET /api/v1/openapi.json."""
    return json_response(OPENAPI)


@routes.get("/healthz")
@documented("Liveness", access=Access.PUBLIC, answer=Answer("Alive", Health))
async def healthz(_request: web.Request) -> web.Response:
    """GET /healthz: the process is alive."""
    return json_response(Health(status="ok"))


@routes.get("/readyz")
@documented(
    "Readiness: database reachable (broker reported, not required)",
    access=Access.PUBLIC,
    answers={200: Answer("Ready", Readiness), 503: Answer("Database unreachable", Readiness)},
)
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
    status: ReadyStatus = (
        "ready" if mongo_ok and broker_ok else "degraded" if mongo_ok else "unavailable"
    )
    body: Readiness = {
        "status": status,
        "checks": {"mongo": "ok" if mongo_ok else "down", "broker": "ok" if broker_ok else "down"},
    }
    return json_response(body, 200 if mongo_ok else 503)


@routes.get("/metrics")
@documented(
    "Prometheus metrics",
    access=Access.PUBLIC,
    answer=Answer("Text format", media_type="text/plain"),
)
async def metrics(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus text format."""
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


OPENAPI = build_openapi(intake_api.routes, *BACKOFFICE_ROUTES, routes, webhooks=WEBHOOK_BODIES)

# On every answer: not sniffed, not framed, no version banner; and never cached (API
# answers carry the API key or webhook secrets, pages and their Excel exports people's
# calls), except the web app's versioned static files.
RESPONSE_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Server": "rop"}


async def _harden(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(RESPONSE_HEADERS)
    if not request.path.startswith("/static/"):
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
    app.router.add_routes(intake_api.routes)
    for table in BACKOFFICE_ROUTES:
        app.router.add_routes(table)
    app.router.add_routes(routes)
    webapp.setup(app, settings.timezone)
    return app
