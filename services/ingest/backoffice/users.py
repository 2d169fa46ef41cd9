"""The users an admin manages: who logs in, with which role, linked to which CRM manager.

Switching a user off keeps everything they wrote and ends their sessions; deleting
removes only the login (calls belong to CRM manager ids). The last active admin can be
neither switched off, demoted nor deleted, so the system is never left without one.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.ingest.backoffice.accounts import Role, User, UserView, hash_password, new_user_id
from shared import voiceprints
from shared.errors import Conflict, InvalidRequest, NotFound
from shared.events import utcnow
from shared.mongo import SESSIONS, USERS, WEB_SESSIONS, Document

USER_NOT_FOUND = "Пользователь не найден"
EMAIL_TAKEN = "Пользователь с таким email уже есть"
LAST_ADMIN = "Нельзя отключить, понизить или удалить последнего администратора"
MIN_PASSWORD = 8


class UserForm(BaseModel):
    """What an admin sends to create or change a user (no password: keep the old one)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    email: str = Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    name: str = Field("", max_length=200)
    role: Role
    manager_id: str | None = Field(None, max_length=200)
    team_manager_ids: list[str] = Field(default_factory=list, max_length=500)
    active: StrictBool = True
    password: str | None = Field(None, min_length=MIN_PASSWORD, max_length=1024)

    @field_validator("manager_id")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("team_manager_ids")
    @classmethod
    def _clean_team(cls, value: list[str]) -> list[str]:
        return sorted({item.strip() for item in value if item.strip()})


class UserRecord(UserView):
    """A user as the users admin shows them: also when they were created."""

    created_at: str = Field(description="ISO 8601.")


def view(document: Document) -> Document:
    """The API shape of a user: never the password hash."""
    created_at = document["created_at"].isoformat()
    return UserRecord(**User.from_document(document).public(), created_at=created_at).model_dump()


async def list_users(db: AsyncDatabase[Document]) -> list[Document]:
    """Every user, by email."""
    return [view(document) for document in await db[USERS].find({}).sort("email", 1).to_list()]


async def get_user(db: AsyncDatabase[Document], user_id: str) -> Document:
    """One user document by id."""
    document = await db[USERS].find_one({"_id": user_id})
    if document is None:
        raise NotFound(USER_NOT_FOUND)
    return document


def _fields(form: UserForm) -> Document:
    return {
        "email": form.email.lower(),
        "name": form.name,
        "role": form.role.value,
        "manager_id": form.manager_id,
        "team_manager_ids": form.team_manager_ids if form.role is Role.SUPERVISOR else [],
        "active": form.active,
    }


async def create_user(db: AsyncDatabase[Document], form: UserForm) -> Document:
    """Create a user; a password is required for a new one."""
    if not form.password:
        raise InvalidRequest(
            "Укажите пароль",
            details=[{"field": "password", "message": f"не короче {MIN_PASSWORD} символов"}],
        )
    document = {
        "_id": new_user_id(),
        **_fields(form),
        "password_hash": await hash_password(form.password),
        "created_at": utcnow(),
    }
    try:
        await db[USERS].insert_one(document)
    except DuplicateKeyError as exc:
        raise Conflict(EMAIL_TAKEN, details=[{"field": "email", "message": EMAIL_TAKEN}]) from exc
    return view(document)


async def _keeps_an_admin(db: AsyncDatabase[Document], user_id: str) -> bool:
    others = {"_id": {"$ne": user_id}, "role": Role.ADMIN.value, "active": True}
    return await db[USERS].count_documents(others, limit=1) > 0


async def update_user(db: AsyncDatabase[Document], user_id: str, form: UserForm) -> Document:
    """Replace a user's fields; a new password is set only when given. Switching a user
    off ends their sessions."""
    current = await get_user(db, user_id)
    stays_admin = form.role is Role.ADMIN and form.active
    demoted = current["role"] == Role.ADMIN.value and not stays_admin
    if demoted and not await _keeps_an_admin(db, user_id):
        raise Conflict(LAST_ADMIN)
    changes = _fields(form)
    if form.password:
        changes["password_hash"] = await hash_password(form.password)
    try:
        await db[USERS].update_one({"_id": user_id}, {"$set": changes})
    except DuplicateKeyError as exc:
        raise Conflict(EMAIL_TAKEN, details=[{"field": "email", "message": EMAIL_TAKEN}]) from exc
    if not form.active or form.password:
        await _end_sessions(db, user_id)
    return view(await get_user(db, user_id))


async def delete_user(db: AsyncDatabase[Document], user_id: str) -> None:
    """Delete a user and their sessions; a manager's voiceprint goes with them."""
    current = await get_user(db, user_id)
    if current["role"] == Role.ADMIN.value and not await _keeps_an_admin(db, user_id):
        raise Conflict(LAST_ADMIN)
    await db[USERS].delete_one({"_id": user_id})
    await _end_sessions(db, user_id)
    if current.get("manager_id"):
        await voiceprints.forget(db, current["manager_id"])


async def _end_sessions(db: AsyncDatabase[Document], user_id: str) -> None:
    """Log the user out everywhere: browser sessions and API tokens."""
    await db[SESSIONS].delete_many({"user_id": user_id})
    await db[WEB_SESSIONS].delete_many({"user_id": user_id})
