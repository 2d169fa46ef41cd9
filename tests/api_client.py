"""The admin API as tests use it: users made directly, login, Bearer headers."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from pymongo import AsyncMongoClient

from services.ingest.backoffice.accounts import Role, hash_password, new_user_id
from shared.events import utcnow
from shared.settings import Settings
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD

Client = TestClient[Any, Any]


async def add_user(
    settings: Settings, email: str, password: str, role: Role, *, active: bool = True
) -> None:
    """Insert a user straight into the database (manager users get `mgr_001`)."""
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo_url)
    await mongo.get_default_database().users.insert_one(
        {
            "_id": new_user_id(),
            "created_at": utcnow(),
            "email": email,
            "password_hash": await hash_password(password),
            "role": role.value,
            "manager_id": "mgr_001" if role is Role.MANAGER else None,
            "active": active,
        }
    )
    await mongo.close()


async def log_in(client: Client, email: str, password: str) -> dict[str, Any]:
    """Log in through the API; the answer holds the token."""
    response = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    body: dict[str, Any] = await response.json()
    assert response.status == 200, body
    return body


def bearer(session: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {session['token']}"}


async def admin(client: Client) -> dict[str, str]:
    """Headers of the initial admin."""
    return bearer(await log_in(client, ADMIN_EMAIL, ADMIN_PASSWORD))


async def user(client: Client, headers: dict[str, str], **fields: Any) -> dict[str, str]:
    """Create a user through the API (as `headers`) and return their headers."""
    body = {"password": "long enough 1", **fields}
    response = await client.post("/api/v1/users", json=body, headers=headers)
    assert response.status == 201, await response.text()
    return bearer(await log_in(client, fields["email"], "long enough 1"))
