"""Who the people of the back office are and the one rule of what each may see: roles,
users as every service reads them, and their visibility of calls."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, Field
from pymongo.asynchronous.database import AsyncDatabase

from shared.mongo import USERS, Document
from shared.results import Reviewer


class Role(StrEnum):
    ADMIN = "admin"
    SUPERVISOR = "supervisor"
    MANAGER = "manager"


class UserView(BaseModel):
    """A user as the API shows them (never the password)."""

    id: str
    email: str
    name: str = Field(description="What the web app shows; the email when empty.")
    role: Role
    manager_id: str | None = Field(description="A manager's CRM `manager_id`.")
    team_manager_ids: list[str] = Field(description="A supervisor's team; empty: every manager.")
    active: bool = Field(description="False: switched off, cannot log in.")


_NOTHING: Document = {"_id": {"$in": []}}


@dataclass(frozen=True)
class User:
    """A person who logs into the admin API."""

    id: str
    email: str
    role: Role
    manager_id: str | None
    active: bool
    name: str = ""
    team_manager_ids: tuple[str, ...] = ()

    @classmethod
    def from_document(cls, document: Document) -> User:
        """Build from a `users` document."""
        return cls(
            id=str(document["_id"]),
            email=document["email"],
            role=Role(document["role"]),
            manager_id=document.get("manager_id"),
            active=document.get("active", True),
            name=document.get("name") or "",
            team_manager_ids=tuple(document.get("team_manager_ids") or ()),
        )

    def public(self) -> Document:
        """What the API shows of a user."""
        return UserView(
            id=self.id,
            email=self.email,
            name=self.name,
            role=self.role,
            manager_id=self.manager_id,
            team_manager_ids=list(self.team_manager_ids),
            active=self.active,
        ).model_dump(mode="json")

    def reviewer(self) -> Reviewer:
        """Who this user is on what they corrected."""
        return {"id": self.id, "email": self.email, "name": self.name or self.email}

    @property
    def sees_secrets(self) -> bool:
        """Webhook signing secrets are shown to admins only (SPEC §4.1)."""
        return self.role is Role.ADMIN

    def visibility(self, manager_id: str = "") -> Document:
        """The one rule of what this user may see and act on, as a Mongo filter: calls and
        what belongs to a call (its deliveries carry the call's `manager_id`). A manager
        their own, a supervisor their team's (all managers when no team is set), an admin
        everything; narrowed to one manager when `manager_id` is given."""
        if manager_id:
            return {"manager_id": manager_id} if self.sees_manager(manager_id) else _NOTHING
        seen = self.managers_seen
        if seen is None:
            return {}
        if not seen:  # a manager not linked to a CRM manager id sees nothing
            return _NOTHING
        if len(seen) == 1:
            return {"manager_id": next(iter(seen))}
        return {"manager_id": {"$in": sorted(seen)}}

    @property
    def managers_seen(self) -> frozenset[str] | None:
        """The managers whose calls are the user's to see; None: every manager."""
        if self.role is Role.MANAGER:
            return frozenset({self.manager_id} if self.manager_id else ())
        if self.role is Role.SUPERVISOR and self.team_manager_ids:
            return frozenset(self.team_manager_ids)
        return None

    def sees_manager(self, manager_id: str) -> bool:
        """Whether this manager's calls are the user's to see."""
        seen = self.managers_seen
        return seen is None or manager_id in seen

    def sees_calls_of(self, other: User) -> bool:
        """Whether some of the calls `other` may see are this user's to see too (what
        belongs to `other`'s calls, a dictionary counted on them, is then theirs to see)."""
        mine, theirs = self.managers_seen, other.managers_seen
        if mine is None or theirs is None:
            return mine != frozenset() and theirs != frozenset()
        return bool(mine & theirs)


async def owners_of(db: AsyncDatabase[Document], documents: Iterable[Document]) -> dict[str, User]:
    """The users who own these documents (their `owner_id`) and still exist, by id."""
    ids = sorted({document["owner_id"] for document in documents if document.get("owner_id")})
    found = db[USERS].find({"_id": {"$in": ids}}, {"password_hash": 0})
    return {user.id: user for user in map(User.from_document, await found.to_list())}
