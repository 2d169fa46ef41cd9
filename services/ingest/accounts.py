"""Users, roles and sessions of the admin API.

Passwords are hashed with argon2. A session is an opaque random token: the
browser keeps it in an HttpOnly cookie, scripts send it as a Bearer token; the
database stores only its SHA-256, so a leaked database holds no usable tokens.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from shared.errors import Unauthorized
from shared.events import utcnow
from shared.mongo import SESSIONS, USERS, Document

INITIAL_PASSWORD_FILE = "initial-admin-password"
BAD_CREDENTIALS = "Неверный email или пароль"

_hasher = PasswordHasher()


class Role(StrEnum):
    ADMIN = "admin"
    SUPERVISOR = "supervisor"
    MANAGER = "manager"


@dataclass(frozen=True)
class User:
    """A person who logs into the admin API."""

    id: str
    email: str
    role: Role
    manager_id: str | None
    active: bool

    @classmethod
    def from_document(cls, document: Document) -> User:
        """Build from a `users` document."""
        return cls(
            id=str(document["_id"]),
            email=document["email"],
            role=Role(document["role"]),
            manager_id=document.get("manager_id"),
            active=document.get("active", True),
        )

    def public(self) -> Document:
        """What the API shows of a user."""
        return {
            "id": self.id,
            "email": self.email,
            "role": self.role.value,
            "manager_id": self.manager_id,
            "active": self.active,
        }


@dataclass(frozen=True)
class Session:
    """A logged-in user, with the token that proves it and the CSRF token for forms."""

    user: User
    token: str
    csrf_token: str
    expires_at: datetime


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


async def log_in(db: AsyncDatabase[Document], *, email: str, password: str, ttl_s: int) -> Session:
    """Check the credentials of an active user and open a session."""
    document = await db[USERS].find_one({"email": email.strip().lower()})
    # Verify against a dummy hash for unknown users so timing does not reveal who exists.
    password_hash = document["password_hash"] if document else _unknown_user_hash()
    matches = await _password_matches(password_hash, password)
    if document is None or not matches or not document.get("active", True):
        raise Unauthorized(BAD_CREDENTIALS)
    user = User.from_document(document)
    token, csrf_token = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    expires_at = utcnow() + timedelta(seconds=ttl_s)
    await db[SESSIONS].insert_one(
        {
            "_id": _token_hash(token),
            "user_id": document["_id"],
            "csrf_token": csrf_token,
            "created_at": utcnow(),
            "expires_at": expires_at,
        }
    )
    return Session(user=user, token=token, csrf_token=csrf_token, expires_at=expires_at)


async def session_for(db: AsyncDatabase[Document], token: str) -> Session | None:
    """Resolve a token to its live session and active user, or None."""
    document = await db[SESSIONS].find_one({"_id": _token_hash(token)})
    if document is None or document["expires_at"] <= utcnow():
        return None
    user_document = await db[USERS].find_one({"_id": document["user_id"]})
    if user_document is None or not user_document.get("active", True):
        return None
    return Session(
        user=User.from_document(user_document),
        token=token,
        csrf_token=document["csrf_token"],
        expires_at=document["expires_at"],
    )


async def log_out(db: AsyncDatabase[Document], token: str) -> None:
    """End a session."""
    await db[SESSIONS].delete_one({"_id": _token_hash(token)})
