"""Login limits of the admin API: atomic under parallel guesses, per address and per
account from an address, so that a stranger cannot lock an account's owner out."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from services.ingest.app import create_app
from services.ingest.backoffice.accounts import MAX_FAILURES_PER_ADDRESS, MAX_FAILURES_PER_PAIR
from shared.settings import Settings
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD

Client = TestClient[Any, Any]
STRANGER = "203.0.113.7"
OWNER = "198.51.100.2"


@pytest.fixture
async def proxied(settings: Settings) -> AsyncIterator[Client]:
    """The gateway behind one proxy that appends the caller's address to X-Forwarded-For."""
    client: Client = TestClient(
        TestServer(create_app(settings.model_copy(update={"trusted_proxy_hops": 1})))
    )
    await client.start_server()
    yield client
    await client.close()


async def log_in(client: Client, password: str, *, email: str = ADMIN_EMAIL, via: str = "") -> Any:
    """A login attempt; `via` is the X-Forwarded-For header that reaches the gateway."""
    headers = {"X-Forwarded-For": via} if via else {}
    return await client.post(
        "/api/v1/auth/login", json={"email": email, "password": password}, headers=headers
    )


async def test_the_sixth_attempt_waits_even_with_the_right_password(ingest_client: Client) -> None:
    for _ in range(MAX_FAILURES_PER_PAIR):
        assert (await log_in(ingest_client, "wrong")).status == 401
    limited = await log_in(ingest_client, ADMIN_PASSWORD)
    assert limited.status == 429
    assert 0 < int(limited.headers["Retry-After"]) <= 15 * 60
    assert (await limited.json())["code"] == "rate_limited"


async def test_parallel_guesses_are_counted_before_any_is_checked(ingest_client: Client) -> None:
    answers = await asyncio.gather(*(log_in(ingest_client, f"guess {n}") for n in range(40)))
    statuses = Counter(answer.status for answer in answers)
    assert statuses == {401: MAX_FAILURES_PER_PAIR, 429: 40 - MAX_FAILURES_PER_PAIR}


async def test_a_stranger_cannot_lock_the_owner_out(proxied: Client) -> None:
    for _ in range(MAX_FAILURES_PER_PAIR + 3):
        await log_in(proxied, "wrong", via=STRANGER)
    stranger = await log_in(proxied, ADMIN_PASSWORD, via=STRANGER)
    assert stranger.status == 429
    owner = await log_in(proxied, ADMIN_PASSWORD, via=OWNER)
    assert owner.status == 200


async def test_an_address_is_limited_across_accounts(proxied: Client) -> None:
    for n in range(MAX_FAILURES_PER_ADDRESS):
        wrong = await log_in(proxied, "wrong", email=f"u{n}@x.local", via=STRANGER)
        assert wrong.status == 401
    another = await log_in(proxied, "wrong", email="last@x.local", via=STRANGER)
    assert another.status == 429
    elsewhere = await log_in(proxied, ADMIN_PASSWORD, via=OWNER)
    assert elsewhere.status == 200


async def test_logins_that_work_spend_nothing_and_forgive_failures(ingest_client: Client) -> None:
    for _ in range(MAX_FAILURES_PER_ADDRESS + 5):
        assert (await log_in(ingest_client, ADMIN_PASSWORD)).status == 200
    for _ in range(3):
        for _ in range(MAX_FAILURES_PER_PAIR - 1):
            assert (await log_in(ingest_client, "wrong")).status == 401
        assert (await log_in(ingest_client, ADMIN_PASSWORD)).status == 200


async def test_an_address_the_caller_wrote_is_not_believed(
    ingest_client: Client, proxied: Client
) -> None:
    # Without a trusted proxy the header is the caller's own words: all from one peer.
    for n in range(MAX_FAILURES_PER_PAIR):
        await log_in(ingest_client, "wrong", via=f"192.0.2.{n}")
    assert (await log_in(ingest_client, ADMIN_PASSWORD)).status == 429
    # Behind one proxy only the address it appended counts, not what came before it.
    for n in range(MAX_FAILURES_PER_PAIR):
        await log_in(proxied, "wrong", via=f"192.0.2.{n}, {STRANGER}")
    faked = await log_in(proxied, ADMIN_PASSWORD, via=f"{OWNER}, {STRANGER}")
    assert faked.status == 429
