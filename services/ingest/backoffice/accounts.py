"""Users, roles and sessions of the admin API.

Passwords are hashed with argon2. Browsers get an aiohttp-session session
(`web_sessions.py`); scripts get an API token, an opaque random string sent as a Bearer
token, of which the database stores only the SHA-256, so a leaked database holds no
usable tokens.
Login attempts are counted per address and per account from an address in the
database (so every replica sees them); past the limit, logins wait until the window ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.ingest.intake.tasks import CALL_NOT_FOUND
from shared.errors import Forbidden, NotFound, TooManyRequests, Unauthorized
from shared.events import utcnow
from shared.mongo import LOGIN_FAILURES, SESSIONS, USERS, Document, all_of, calls
from shared.people import Role, User, UserView

__all__ = ["CALL_NOT_YOURS", "Role", "User", "UserView"]
CALL_NOT_YOURS = "Это звонок другого менеджера"

INITIAL_PASSWORD_FILE = "initial-admin-password"
BAD_CREDENTIALS = "Неверный email или пароль"
FAILURE_WINDOW_S = 15 * 60
MAX_FAILURES_PER_PAIR = 5  # one account from one address
MAX_FAILURES_PER_ADDRESS = 20  # any accounts from one address

_hasher = PasswordHasher()


async def find_visible(
    collection: AsyncCollection[Document],
    viewer: User,
    item_id: str,
    *,
    not_yours: str,
    projection: Document | None = None,
) -> Document | None:
    """The document with this id if the viewer may see it; None if there is none;
    Forbidden (`not_yours`) if there is one they may not see."""
    document = await collection.find_one(all_of({"_id": item_id}, viewer.visibility()), projection)
    if document is None and await collection.count_documents({"_id": item_id}, limit=1):
        raise Forbidden(not_yours)
    return document


async def visible_task(
    db: AsyncDatabase[Document], viewer: User, task_id: str, projection: Document | None = None
) -> Document:
    """A call the viewer may see and act on (404 if there is none, 403 if not theirs)."""
    document = await find_visible(
        calls(db), viewer, task_id, not_yours=CALL_NOT_YOURS, projection=projection
    )
    if document is None:
        raise NotFound(CALL_NOT_FOUND)
    return document


@dataclass(frozen=True)
class Session:
    """A logged-in user and the CSRF token of their forms; `token` for an API token."""

    user: User
    csrf_token: str
    token: str | None = None
    expires_at: datetime | None = None


@functools.cache
def _unknown_user_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def hash_password(password: str) -> str:
    """Hash off the event loop: argon2 is deliberately slow."""
    return await asyncio.to_thread(_hasher.hash, password)


async def _password_matches(password_hash: str, password: str) -> bool:
    try:
        return await asyncio.to_thread(_hasher.verify, password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def ensure_initial_admin(
    db: AsyncDatabase[Document], *, email: str, password: str | None, state_dir: Path
) -> Path | None:
    """Create the first admin if there are no users yet.

    Without a configured password one is generated and written to a file only
    the operator can read; its path is returned so the caller can point to it.
    """
    if await db[USERS].find_one({}, {"_id": 1}) is not None:
        return None
    generated = password is None
    password = password or secrets.token_urlsafe(18)
    try:
        await db[USERS].insert_one(
            {
                "_id": new_user_id(),
                "email": email.lower(),
                "password_hash": await hash_password(password),
                "role": Role.ADMIN.value,
                "manager_id": None,
                "active": True,
                "created_at": utcnow(),
            }
        )
    except DuplicateKeyError:
        # Another replica created it first; keep theirs.
        return None
    if not generated:
        return None
    return await asyncio.to_thread(_write_private_file, state_dir / INITIAL_PASSWORD_FILE, password)


def _write_private_file(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    path.touch(mode=0o600)
    path.write_text(text + "\n")
    return path


def new_user_id() -> str:
    return f"usr_{secrets.token_hex(8)}"


async def _take_attempt(db: AsyncDatabase[Document], key: str, limit: int) -> None:
    """Count one login attempt under `key`; past `limit` in the window, TooManyRequests.

    The attempt is counted before the password is checked, in one atomic update, so
    guesses sent in parallel cannot all pass the check before any of them is counted.
    """
    now = utcnow()
    counter: Document | None = None
    while counter is None:  # None: the window ended in between
        # A counter whose window ended starts again.
        await db[LOGIN_FAILURES].delete_one({"_id": key, "expires_at": {"$lte": now}})
        with contextlib.suppress(DuplicateKeyError):  # a parallel attempt made it
            await db[LOGIN_FAILURES].insert_one(
                {"_id": key, "failures": 0, "expires_at": now + timedelta(seconds=FAILURE_WINDOW_S)}
            )
        counter = await db[LOGIN_FAILURES].find_one_and_update(
            {"_id": key}, {"$inc": {"failures": 1}}, return_document=ReturnDocument.AFTER
        )
    if counter["failures"] > limit:
        wait_s = max(1, int((counter["expires_at"] - now).total_seconds()))
        raise TooManyRequests(
            f"Слишком много неудачных попыток входа. Повторите через {-(-wait_s // 60)} мин.",
            retry_after_s=wait_s,
        )


async def authenticate(
    db: AsyncDatabase[Document], *, email: str, password: str, address: str
) -> User:
    """The active user with these credentials; Unauthorized otherwise.

    Attempts are limited per address (any accounts) and per account from that address,
    and the limit is taken before the password is checked: past it, TooManyRequests. An
    account is never locked as a whole, so a stranger guessing from elsewhere cannot
    lock its owner out; a right password forgives that pair's failures.
    """
    email = email.strip().lower()
    address_key = f"address:{address}"
    pair_key = f"account:{email}|{address_key}"
    await _take_attempt(db, address_key, MAX_FAILURES_PER_ADDRESS)
    await _take_attempt(db, pair_key, MAX_FAILURES_PER_PAIR)
    document = await db[USERS].find_one({"email": email})
    # Verify against a dummy hash for unknown users so timing does not reveal who exists.
    password_hash = document["password_hash"] if document else _unknown_user_hash()
    matches = await _password_matches(password_hash, password)
    if document is None or not matches or not document.get("active", True):
        raise Unauthorized(BAD_CREDENTIALS)
    await db[LOGIN_FAILURES].delete_one({"_id": pair_key})
    # A login that worked is no failure of its address (an office behind one NAT).
    await db[LOGIN_FAILURES].update_one({"_id": address_key}, {"$inc": {"failures": -1}})
    return User.from_document(document)


async def issue_token(
    db: AsyncDatabase[Document], user: User, *, ttl_s: int, csrf_token: str
) -> Session:
    """An API token for scripts (Bearer), valid for `ttl_s`."""
    token = secrets.token_urlsafe(32)
    expires_at = utcnow() + timedelta(seconds=ttl_s)
    await db[SESSIONS].insert_one(
        {
            "_id": _token_hash(token),
            "user_id": user.id,
            "csrf_token": csrf_token,
            "created_at": utcnow(),
            "expires_at": expires_at,
        }
    )
    return Session(user=user, token=token, csrf_token=csrf_token, expires_at=expires_at)


async def active_user(db: AsyncDatabase[Document], user_id: str) -> User | None:
    """The user with this id if they may still log in."""
    document = await db[USERS].find_one({"_id": user_id})
    if document is None or not document.get("active", True):
        return None
    return User.from_document(document)


async def session_for(db: AsyncDatabase[Document], token: str) -> Session | None:
    """Resolve an API token to its live session and active user, or None."""
    document = await db[SESSIONS].find_one({"_id": _token_hash(token)})
    if document is None or document["expires_at"] <= utcnow():
        return None
    user = await active_user(db, document["user_id"])
    if user is None:
        return None
    return Session(
        user=user, token=token, csrf_token=document["csrf_token"], expires_at=document["expires_at"]
    )


async def revoke_token(db: AsyncDatabase[Document], token: str) -> None:
    """End an API token."""
    await db[SESSIONS].delete_one({"_id": _token_hash(token)})
