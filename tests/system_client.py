"""The running system as the end-to-end tests drive it over HTTP: log in, bind the test
script, submit calls, read their statuses, check the webhooks, scrape the metrics."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, API_KEY
from tests.fakes import FakeCrm

SCRIPT = {
    "name": "E2E",
    "stages": [
        {
            "name": "Greeting",
            "threshold": 60,
            "points": [{"text": "Named the company", "weight": 100, "phrases": ["flower company"]}],
        },
        {
            "name": "Next step",
            "threshold": 50,
            "points": [{"text": "Call back", "weight": 100, "phrases": ["call you back"]}],
        },
    ],
}


async def post(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with session.post(url, **kwargs) as response:
        return response.status, await response.json()


async def bind_script(
    session: aiohttp.ClientSession, api: str, webhook_url: str
) -> tuple[dict[str, str], dict[str, Any]]:
    """Log in as the admin, save SCRIPT and bind it to `webhook_url`."""
    _, login = await post(
        session, f"{api}/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    )
    admin = {"Authorization": f"Bearer {login['token']}"}
    _, template = await post(session, f"{api}/templates", json=SCRIPT, headers=admin)
    _, binding = await post(
        session,
        f"{api}/bindings",
        headers=admin,
        json={"template_id": template["id"], "webhook": {"url": webhook_url}},
    )
    return admin, binding


async def submit_calls(
    session: aiohttp.ClientSession, api: str, url: str, names: list[str], duration_s: float
) -> None:
    """Submit one call per name, all with the same recording; each must be accepted."""
    for name in names:
        status, body = await post(
            session,
            f"{api}/calls",
            params={"apiKey": API_KEY},
            json={
                "call_id": name,
                "audio_url": url,
                "duration": duration_s,
                "manager_id": "mgr_001",
                "deal_id": "deal_1",
            },
        )
        assert status == 200, body


async def call_statuses(
    session: aiohttp.ClientSession, api: str, names: list[str]
) -> dict[str, str]:
    """Each call's status as the CRM's status API reports it."""
    statuses = {}
    for name in names:
        async with session.get(f"{api}/calls/{name}", params={"apiKey": API_KEY}) as response:
            statuses[name] = (await response.json()).get("status", f"HTTP {response.status}")
    return statuses


def webhooks_once(fake: FakeCrm, names: list[str]) -> str:
    """One webhook-id per call, never with different content; what arrived, in words."""
    by_id: dict[str, set[bytes]] = {}
    received = fake.at("/checklist")
    for request in received:
        by_id.setdefault(request.headers["webhook-id"], set()).add(
            json.dumps(json.loads(request.body), sort_keys=True).encode()
        )
    assert len(by_id) == len(names)
    assert all(len(bodies) == 1 for bodies in by_id.values())
    return (
        f"{len(names)} calls done, {len(received)} webhooks received with {len(by_id)} "
        f"webhook-ids ({len(received) - len(by_id)} redelivered with the same content)"
    )


async def scrape(port: int) -> dict[tuple[str, ...], float]:
    """A worker's /metrics: each sample by its name and label values."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        text = await response.text()
    return {
        (sample.name, *sample.labels.values()): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
