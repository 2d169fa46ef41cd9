"""Logging in and out through the JSON API: a session cookie for browsers, a Bearer
token for scripts."""

from __future__ import annotations

import secrets
from typing import Annotated, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from services.ingest import web_sessions
from services.ingest.apidoc import Access, Answer, IsoTime, documented
from services.ingest.backoffice import accounts
from services.ingest.backoffice.accounts import UserView
from services.ingest.edge import INGEST, client_address, json_response, read_model, require_session
from services.ingest.intake.submission import JSON_TYPE

routes = web.RouteTableDef()


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


@routes.post("/api/v1/auth/login")
@documented(
    "Log in: sets an HttpOnly session cookie and returns a token",
    access=Access.PUBLIC,
    body={JSON_TYPE: LoginRequest},
    answer=Answer("Logged in", SessionStarted),
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
    answer=Answer("Logged out", LoggedOut),
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
    answer=WhoAmI,
)
async def me(request: web.Request) -> web.Response:
    """GET /api/v1/auth/me: who is logged in."""
    session = await require_session(request)
    return json_response({"user": session.user.public(), "csrf_token": session.csrf_token})
