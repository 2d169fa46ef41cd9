"""Browser sessions: aiohttp-session with its data kept in MongoDB.

The cookie holds only a random key (HttpOnly, SameSite=Lax, Secure behind HTTPS); the
database stores the session under the key's SHA-256, with the user id so that switching
a user off ends their sessions, and an expiry that a TTL index enforces. Logging in
always starts a new session (a fresh key), so a key planted before login is useless.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import timedelta

from aiohttp import web
from aiohttp_session import AbstractStorage, Session, SessionData, get_session, new_session
from pymongo.asynchronous.collection import AsyncCollection

from shared.events import utcnow
from shared.mongo import Document

SESSION_COOKIE = "rop_session"


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class MongoSessionStorage(AbstractStorage):
    """aiohttp-session storage backed by a MongoDB collection."""

    def __init__(
        self,
        collection: Callable[[], AsyncCollection[Document]],
        *,
        max_age_s: int,
        secure: bool,
    ) -> None:
        super().__init__(
            cookie_name=SESSION_COOKIE,
            max_age=max_age_s,
            httponly=True,
            samesite="Lax",
            secure=secure,
        )
        self._collection = collection

    async def load_session(self, request: web.Request) -> Session:
        key = self.load_cookie(request)
        if key:
            document = await self._collection().find_one(
                {"_id": _key_hash(key), "expires_at": {"$gt": utcnow()}}
            )
            if document is not None:
                data = SessionData(created=document["created"], session=document["data"])
                return Session(key, data=data, new=False, max_age=self.max_age)
        return Session(None, data=None, new=True, max_age=self.max_age)

    async def save_session(
        self, request: web.Request, response: web.StreamResponse, session: Session
    ) -> None:
        key = session.identity
        if session.empty:
            self.save_cookie(response, "", max_age=session.max_age)
            if key:
                await self._collection().delete_one({"_id": _key_hash(str(key))})
            return
        key = str(key) if key else secrets.token_urlsafe(32)
        stored = self._get_session_data(session)
        await self._collection().replace_one(
            {"_id": _key_hash(key)},
            {
                "data": stored["session"],
                "created": stored["created"],
                "user_id": stored["session"].get("user_id"),
                "expires_at": utcnow() + timedelta(seconds=self.max_age or 0),
            },
            upsert=True,
        )
        self.save_cookie(response, key, max_age=session.max_age)


async def start(request: web.Request, *, user_id: str, csrf_token: str) -> None:
    """Log the browser in: a new session (new key) for this user."""
    session = await new_session(request)
    session["user_id"] = user_id
    session["csrf_token"] = csrf_token


async def current(request: web.Request) -> tuple[str, str] | None:
    """The (user id, CSRF token) of the browser's session, if it has one."""
    if SESSION_COOKIE not in request.cookies:
        return None  # no cookie: nothing to look up
    session = await get_session(request)
    if "user_id" not in session:
        return None
    return str(session["user_id"]), str(session["csrf_token"])


async def end(request: web.Request) -> None:
    """Log the browser out: the session is deleted and the cookie cleared."""
    (await get_session(request)).invalidate()
