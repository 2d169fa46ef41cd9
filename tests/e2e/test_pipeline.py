"""The whole chain with every service as its own process: CRM request to CRM webhook.

Real RabbitMQ, SecantusDB, ffmpeg and faster-whisper; the CRM (file host and webhook
endpoints) is a fake on 127.0.0.1.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from devtools.samples import Line
from devtools.system import System
from shared.webhooks import verify
from tests.audio import GOOD_CALL, call
from tests.conftest import API_KEY
from tests.fakes import FakeCrm
from tests.fileserver import FileServer
from tests.helpers import wait_for
from tests.system_client import (
    bind_script,
    call_statuses,
    post,
    scrape,
    submit_calls,
    webhooks_once,
)

pytestmark = pytest.mark.timeout(300)

SILENT_MANAGER: list[Line] = [("client", 2.0, "Hello? Is anybody there?")]


async def test_calls_go_from_the_crm_request_to_the_crm_webhooks(
    system: System, crm: tuple[FakeCrm, str], files: FileServer
) -> None:
    fake, hooks = crm
    api = await system.api()
    async with aiohttp.ClientSession() as session:
        admin, binding = await bind_script(session, api, f"{hooks}/checklist")
        _, table = await post(
            session,
            f"{api}/tables",
            headers=admin,
            json={
                "name": "Deals",
                "webhook": {"url": f"{hooks}/table"},
                "fields": [
                    {
                        "key": "budget",
                        "type": "number",
                        "method": "regex",
                        "pattern": r"budget is ([\d ,]+)",
                    }
                ],
            },
        )
        async with session.put(
            f"{api}/settings/connection",
            headers=admin,
            json={"error_webhook_url": f"{hooks}/errors", "min_call_duration_s": 3},
        ) as response:
            connection = await response.json()
        secrets = {
            "/checklist": binding["webhook"]["secret"],
            "/table": table["webhook"]["secret"],
            "/errors": connection["error_webhook"]["secret"],
        }

        def submission(call_id: str, url: str, duration: float = 22) -> dict[str, Any]:
            return {
                "call_id": call_id,
                "audio_url": url,
                "duration": duration,
                "manager_id": "mgr_001",
                "deal_id": "deal_1",
            }

        good_url = files.file("/good.mp3", call(GOOD_CALL, duration_s=22))
        silent_url = files.file("/silent.mp3", call(SILENT_MANAGER, duration_s=22))
        key = {"apiKey": API_KEY}
        answers = {
            "good_json": await post(
                session, f"{api}/calls", params=key, json=submission("good_json", good_url)
            ),
            "good_form": await post(
                session,
                f"{api}/calls/audio-upload",
                params=key,
                data={
                    k: str(v)
                    for k, v in submission("good_form", good_url).items()
                    if k != "duration"
                },
            ),
            "silent": await post(
                session, f"{api}/calls", params=key, json=submission("silent", silent_url)
            ),
            "missing": await post(
                session,
                f"{api}/calls",
                params=key,
                json=submission("missing", f"{files.base_url}/nope.mp3"),
            ),
            "html": await post(
                session,
                f"{api}/calls",
                params=key,
                json=submission("html", files.body("/page.mp3", b"<html>hi</html>")),
            ),
            "short": await post(
                session, f"{api}/calls", params=key, json=submission("short", good_url, duration=2)
            ),
        }
        duplicate = await post(
            session, f"{api}/calls", params=key, json=submission("good_json", good_url)
        )
        bad_key = await post(
            session,
            f"{api}/calls",
            params={"apiKey": "wrong"},
            json=submission("bad_key", good_url),
        )

        assert {name: status for name, (status, _) in answers.items()} == dict.fromkeys(
            answers, 200
        )
        assert answers["short"][1]["status"] == "skipped"
        assert duplicate[0] == 409
        assert duplicate[1]["task_id"] == answers["good_json"][1]["task_id"]
        assert bad_key[0] == 401

        expected = {
            "good_json": "done",
            "good_form": "done",
            "silent": "done",
            "missing": "failed",
            "html": "failed",
            "short": "skipped",
        }

        async def all_terminal() -> dict[str, str] | None:
            statuses = {}
            for name in expected:
                async with session.get(f"{api}/calls/{name}", params=key) as response:
                    statuses[name] = (await response.json())["status"]
            return statuses if statuses == expected else None

        await wait_for(all_terminal, timeout_s=120)

    checklists = {}
    for request in fake.received:
        payload = verify(secrets[request.path], request.body, request.headers)
        if request.path == "/checklist":
            checklists[payload["call_id"]] = payload
    verdicts = {
        call_id: {s["name"]: s["passed"] for s in payload["checklist"]["stages"]}
        for call_id, payload in checklists.items()
    }
    assert verdicts == {
        "good_json": {"Greeting": True, "Next step": True},
        "good_form": {"Greeting": True, "Next step": True},
        "silent": {"Greeting": False, "Next step": False},
    }
    rows = [verify(secrets["/table"], r.body, r.headers) for r in fake.at("/table")]
    assert {row["call_id"]: row["table"]["row"]["budget"] for row in rows}["good_json"] == 500000
    errors = {
        payload["call_id"]: payload["error"]["code"]
        for payload in (verify(secrets["/errors"], r.body, r.headers) for r in fake.at("/errors"))
    }
    assert errors == {"missing": "download_failed", "html": "not_audio"}

    downloader, analyzer, notifier = [
        await scrape(system.health[name]) for name in ("downloader", "analyzer", "notifier")
    ]
    assert downloader[("rop_messages_total", "downloader", "ok")] >= 5
    assert {
        outcome: downloader[("rop_outcomes_total", "download", outcome)]
        for outcome in ("call.audio_stored", "download_failed", "not_audio")
    } == {"call.audio_stored": 3, "download_failed": 1, "not_audio": 1}
    assert analyzer[("rop_outcomes_total", "analysis", "call.analyzed")] == 3
    assert analyzer[("rop_analysis_stage_seconds_count", "asr")] >= 3
    assert analyzer[("rop_message_lag_seconds_count", "analyzer")] >= 3
    assert ("rop_analysis_jobs", "queued") in analyzer
    assert notifier[("rop_outcomes_total", "delivery", "succeeded")] >= 6  # 3 + 1 row + 2 errors
    assert notifier[("rop_message_handling_seconds_count", "notifier")] >= 5


async def test_analyzer_killed_mid_batch_every_call_completes_once(
    system: System, crm: tuple[FakeCrm, str], files: FileServer
) -> None:
    fake, hooks = crm
    api = await system.api()
    async with aiohttp.ClientSession() as session:
        await bind_script(session, api, f"{hooks}/checklist")
        url = files.file("/good.mp3", call(GOOD_CALL, duration_s=22))
        names = [f"batch_{i}" for i in range(6)]
        await submit_calls(session, api, url, names, 22)

        async def some_analysed() -> bool:
            return len(fake.at("/checklist")) >= 1

        await wait_for(some_analysed, timeout_s=60)
        system.kill("analyzer")
        system.start("analyzer")

        async def all_done() -> bool:
            return set((await call_statuses(session, api, names)).values()) == {"done"}

        await wait_for(all_done, timeout_s=120)
    webhooks_once(fake, names)
