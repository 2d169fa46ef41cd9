"""Logging in and out of the web application."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from services.ingest import web_sessions
from services.ingest.backoffice import accounts
from services.ingest.backoffice.accounts import Session
from services.ingest.edge import (
    INGEST,
    browser_session,
    client_address,
    is_https,
)
from services.ingest.webapp.frame import (
    ALL,
    action,
    redirect,
    render,
    safe_next,
)
from shared.errors import (
    TooManyRequests,
    Unauthorized,
)
from shared.logging import get_logger

log = get_logger(__name__)
routes = web.RouteTableDef()


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


@routes.get("/login")
async def login_page(request: web.Request) -> web.StreamResponse:
    """GET /login."""
    if await browser_session(request) is not None:
        return redirect(safe_next(request.query.get("next")))
    return _login_form(request, {"next": request.query.get("next", "")})


@routes.post("/login")
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
    response = redirect(safe_next(target))
    response.del_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@routes.post("/logout")
@action(*ALL)
async def logout(
    request: web.Request, session: Session, _form: MultiDictProxy[str]
) -> web.Response:
    """POST /logout."""
    await web_sessions.end(request)
    return redirect("/login")


@routes.get("/")
async def home(request: web.Request) -> web.StreamResponse:
    """GET /: the calls list."""
    return redirect("/calls")
