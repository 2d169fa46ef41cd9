"""Alerts («Уведомления») end to end: rules saved through the admin API, raised by the
notifier from the events of analysed, failed and disputed calls, sent in-app, by email to
a real local SMTP server (one by one and as a daily digest) and by signed webhook to a
local receiver; each once per call, only to the people who may see the call."""

from __future__ import annotations

import socket
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from devtools.processes import free_port
from devtools.samples import analysed_call
from services.notifier.handlers import Notifier, on_event, send_digests
from shared.connection import update_connection_settings
from shared.events import CallAnalyzed, CallFailed, Envelope, call_meta, utcnow
from shared.mongo import Document
from shared.settings import Settings
from shared.url_policy import UrlPolicy, UrlRefused
from shared.webhooks import verify
from tests.api_client import admin, user
from tests.conftest import FAST_WEBHOOKS, running_notifier
from tests.fakes import FakeCrm
from tests.helpers import wait_for
from tests.mailbox import Mailbox, smtp_server

pytestmark = pytest.mark.timeout(120)
Client = TestClient[Any, Any]

HEAD = "head1@company.test"  # supervises mgr_1
OTHER_HEAD = "head2@company.test"  # supervises mgr_2
SENDER = "rop@company.test"


async def people(client: Client, headers: dict[str, str]) -> dict[str, dict[str, str]]:
    """The two supervisors' headers, and the users' ids by email."""
    made = {
        HEAD: await user(
            client, headers, email=HEAD, role="supervisor", team_manager_ids=["mgr_1"]
        ),
        OTHER_HEAD: await user(
            client, headers, email=OTHER_HEAD, role="supervisor", team_manager_ids=["mgr_2"]
        ),
    }
    listed = await (await client.get("/api/v1/users", headers=headers)).json()
    return {"headers": made, "ids": {u["email"]: u["id"] for u in listed}}  # type: ignore[dict-item]


async def rule(client: Client, headers: dict[str, str], **fields: Any) -> Document:
    body = {"name": fields.get("condition", "rule"), "channels": ["in_app"], **fields}
    created = await client.post("/api/v1/alert-rules", json=body, headers=headers)
    assert created.status == 201, await created.text()
    saved: Document = await created.json()
    return saved


async def analysed(
    deps: Notifier, index: int, *, manager_id: str = "mgr_1", tracker_id: str = "trk_1"
) -> Envelope:
    """An analysed call (1 of 2 stages, 50 %; «Этап 2» failed with a forbidden point said,
    the «Конкуренты» tracker said) and the event that announces it."""
    call = analysed_call(index, manager_id=manager_id)
    stage = call["results"]["checklists"][0]["stages"][1]
    stage["notes"] = ["Нарушено: Не обещать скидку"]
    call["results"]["trackers"] = [
        {
            "tracker_id": tracker_id,
            "name": "Конкуренты",
            "hits": 2,
            "quotes": [
                {"text": "компания Лютик", "start_s": 4.0, "end_s": 5.0, "speaker": "client"}
            ],
        }
    ]
    await deps.db.calls.insert_one(call)
    event = CallAnalyzed(**call_meta(call), duration_s=60, checklists=1, tables=0)
    return Envelope.wrap(event, task_id=call["_id"])


async def notified(client: Client, headers: dict[str, str], count: int) -> dict[str, Any]:
    async def arrived() -> dict[str, Any] | None:
        listed: dict[str, Any] = await (
            await client.get("/api/v1/notifications", headers=headers)
        ).json()
        return listed if len(listed["items"]) >= count else None

    return await wait_for(arrived)


async def test_each_condition_fires_once_per_call_and_only_for_those_who_see_it(
    ingest_client: Client, notifier: Notifier
) -> None:
    headers = await admin(ingest_client)
    team = await people(ingest_client, headers)
    tracker = await ingest_client.post(
        "/api/v1/trackers",
        json={"name": "Конкуренты", "phrases": ["компания Лютик"]},
        headers=headers,
    )
    tracker_id = (await tracker.json())["id"]
    # The sample calls' script («Первичный звонок»), as far as rules need it to exist.
    await notifier.db.templates.insert_one({"_id": "tpl_1", "name": "Первичный звонок"})
    # The other supervisor is named, but mgr_1 is not on their team: they get nothing.
    named = {"user_ids": [team["ids"][OTHER_HEAD]]}
    await rule(ingest_client, headers, condition="score_below", score_below=60, **named)
    await rule(
        ingest_client, headers, condition="stage_failed", template_id="tpl_1", stage="Этап 2"
    )
    await rule(
        ingest_client, headers, condition="stage_failed", template_id="tpl_1", stage="Этап 1"
    )
    await rule(ingest_client, headers, condition="forbidden_broken")
    await rule(ingest_client, headers, condition="call_failed")
    await rule(ingest_client, headers, condition="score_below", score_below=60, stage_id="other")
    # A rule of the other supervisor never fires on calls they may not see.
    await rule(
        ingest_client,
        team["headers"][OTHER_HEAD],
        condition="score_below",
        score_below=60,
        team_supervisors=False,
        user_ids=[team["ids"][HEAD]],
    )
    trackers_rule = await rule(
        ingest_client, headers, condition="tracker_hit", tracker_id=tracker_id
    )

    envelope = await analysed(notifier, 1, tracker_id=tracker_id)
    await notifier.broker.publish(envelope)
    failed = analysed_call(2, manager_id="mgr_1") | {"status": "failed", "results": None}
    await notifier.db.calls.insert_one(failed)
    failure = CallFailed(
        **call_meta(failed),
        code="download_failed",
        message="Файл не найден (404)",
        pipeline_stage="download",
    )
    failed_envelope = Envelope.wrap(failure, task_id=failed["_id"])
    await notifier.broker.publish(failed_envelope)

    listed = await notified(ingest_client, team["headers"][HEAD], 5)
    summaries = sorted(item["summary"] for item in listed["items"])
    assert summaries == [
        "Звонок не обработан: Файл не найден (404)",
        "Нарушено: Не обещать скидку (этап «Этап 2», скрипт «Первичный звонок»)",
        "Оценка 50% (1/2) по скрипту «Первичный звонок»",
        "Словарь «Конкуренты»: 2 раза, «компания Лютик»",
        "Этап «Этап 2» не пройден (скрипт «Первичный звонок»)",
    ]
    assert listed["unread"] == 5
    # Redelivered, and analysed again: raised once all the same.
    await on_event(envelope, CallAnalyzed.model_validate(envelope.data), deps=notifier)
    again = Envelope.wrap(CallAnalyzed.model_validate(envelope.data), task_id=envelope.task_id)
    await on_event(again, CallAnalyzed.model_validate(envelope.data), deps=notifier)
    await on_event(failed_envelope, failure, deps=notifier)
    assert await notifier.db.notifications.count_documents({}) == 5
    assert await notifier.db.alerts.count_documents({}) == 5
    other = await ingest_client.get("/api/v1/notifications", headers=team["headers"][OTHER_HEAD])
    assert await other.json() == {"items": [], "unread": 0}

    # Read one by opening it, then the rest at once; only one's own.
    log = await (await ingest_client.get("/api/v1/alerts", headers=headers)).json()
    tracker_alert = next(a for a in log["items"] if a["rule_id"] == trackers_rule["id"])
    assert tracker_alert["targets"] == [{"channel": "in_app", "to": HEAD, "status": "delivered"}]
    assert (
        await ingest_client.get("/api/v1/alerts", headers=team["headers"][OTHER_HEAD])
    ).status == 200
    assert (
        await (
            await ingest_client.get("/api/v1/alerts", headers=team["headers"][OTHER_HEAD])
        ).json()
    )["items"] == []
    first = listed["items"][0]["id"]
    none = await ingest_client.post(
        "/api/v1/notifications/read", json={"ids": [first]}, headers=team["headers"][OTHER_HEAD]
    )
    assert await none.json() == {"marked": 0}
    one = await ingest_client.post(
        "/api/v1/notifications/read", json={"ids": [first]}, headers=team["headers"][HEAD]
    )
    assert await one.json() == {"marked": 1}
    rest = await ingest_client.post(
        "/api/v1/notifications/read", json={}, headers=team["headers"][HEAD]
    )
    assert await rest.json() == {"marked": 4}
    assert (await notified(ingest_client, team["headers"][HEAD], 5))["unread"] == 0


async def smtp_settings(client: Client, headers: dict[str, str], port: int) -> None:
    body = {
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_security": "none",
        "smtp_sender": SENDER,
    }
    saved = await client.put("/api/v1/settings/connection", json=body, headers=headers)
    assert saved.status == 200, await saved.text()
    smtp = (await saved.json())["smtp"]
    assert smtp == {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "username": "",
        "sender": SENDER,
        "password_set": False,
    }


async def test_emails_one_by_one_a_daily_digest_and_a_signed_webhook(
    ingest_client: Client, notifier: Notifier, crm: tuple[FakeCrm, str]
) -> None:
    fake, base = crm
    headers = await admin(ingest_client)
    await people(ingest_client, headers)
    with smtp_server() as (mailbox, port):
        await smtp_settings(ingest_client, headers, port)
        loud = await rule(
            ingest_client,
            headers,
            name="Низкая оценка",
            condition="score_below",
            score_below=60,
            channels=["email", "webhook"],
            emails=["Sales@Company.test"],
            webhook={"url": f"{base}/alerts"},
        )
        await rule(
            ingest_client,
            headers,
            name="Сводка",
            condition="forbidden_broken",
            channels=["email"],
            team_supervisors=False,
            emails=["daily@company.test"],
            digest=True,
        )
        envelopes = [await analysed(notifier, index) for index in (1, 2)]
        for envelope in envelopes:
            await notifier.broker.publish(envelope)

        async def mailed() -> list[Any]:
            sent = mailbox.to("sales@company.test") + mailbox.to(HEAD)
            return sent if len(sent) == 4 else []

        (message, *_) = await wait_for(mailed)
        assert message["From"] == SENDER
        assert message["Subject"] == "Низкая оценка: Оценка 50% (1/2) по скрипту «Первичный звонок»"
        assert "/calls/task_00000000000" in message.get_content()
        await wait_for(lambda: _at(fake, "/alerts", 2))
        secret = (
            await (
                await ingest_client.get(f"/api/v1/alert-rules/{loud['id']}", headers=headers)
            ).json()
        )["webhook"]["secret"]
        for request in fake.at("/alerts"):
            payload = verify(secret, request.body, request.headers)
            assert payload["type"] == "alert.fired"
            assert payload["alert"]["rule"] == "Низкая оценка"
            assert payload["manager_id"] == "mgr_1"
        # A redelivery sends nothing again.
        await on_event(envelopes[0], CallAnalyzed.model_validate(envelopes[0].data), deps=notifier)
        assert len(mailbox.to("sales@company.test")) == 2
        assert len(fake.at("/alerts")) == 2

        # The digest waits for its hour, then goes once with both calls.
        assert mailbox.to("daily@company.test") == []
        tomorrow = utcnow() + timedelta(days=1, hours=1)
        assert await send_digests(notifier, tomorrow) == 1
        assert await send_digests(notifier, tomorrow) == 0
        (digest,) = mailbox.to("daily@company.test")
        assert digest["Subject"] == "Цифровой РОП: 2 уведомл. за день"
        assert "call_1," in digest.get_content()
        assert "call_2," in digest.get_content()

    log = await (await ingest_client.get("/api/v1/alerts", headers=headers)).json()
    outcomes = sorted(
        (target["channel"], target["to"], target["status"])
        for item in log["items"]
        if item["call_id"] == "call_1"
        for target in item["targets"]
    )
    assert outcomes == [
        ("digest", "daily@company.test", "succeeded"),
        ("email", f"mailto:{HEAD}", "succeeded"),
        ("email", "mailto:sales@company.test", "succeeded"),
        ("webhook", f"{base}/alerts", "succeeded"),
    ]
    # Alerts are not what the call waits for: its status is the pipeline's.
    assert (await notifier.db.calls.find_one({"_id": envelopes[0].task_id}))["status"] == "done"


async def _at(fake: FakeCrm, path: str, count: int) -> bool:
    return len(fake.at(path)) >= count


async def test_a_mail_server_that_is_down_delays_the_alert_and_never_loses_it(
    ingest_client: Client, settings: Settings
) -> None:
    headers = await admin(ingest_client)
    await people(ingest_client, headers)
    port = free_port()  # nothing listens there yet
    await smtp_settings(ingest_client, headers, port)
    await rule(ingest_client, headers, condition="forbidden_broken", channels=["email"])
    patient = {**FAST_WEBHOOKS, "webhook_retry_schedule_s": ("0.3", "0.5", "1", "2", "4", "8")}
    async with running_notifier(settings.model_copy(update=patient)) as deps:
        await deps.broker.publish(await analysed(deps, 1))

        async def retrying() -> Document | None:
            return await deps.db.deliveries.find_one({"type": "alert.email", "status": "retrying"})

        failed = await wait_for(retrying)
        assert "Connect" in failed["attempts"][0]["error"]
        with smtp_server(port) as (mailbox, _):

            async def delivered() -> Mailbox | None:
                return mailbox if mailbox.to(HEAD) else None

            await wait_for(delivered, timeout_s=30)
            found = await wait_for(
                lambda: deps.db.deliveries.find_one({"type": "alert.email", "status": "succeeded"})
            )
            assert found["attempts"][-1]["status_code"] == 250


async def test_a_dispute_opened_by_a_manager_reaches_their_supervisor(
    ingest_client: Client, notifier: Notifier
) -> None:
    headers = await admin(ingest_client)
    team = await people(ingest_client, headers)
    manager = await user(
        ingest_client, headers, email="anna@company.test", role="manager", manager_id="mgr_1"
    )
    await rule(ingest_client, headers, name="Спорные оценки", condition="dispute_opened")
    call = analysed_call(1, manager_id="mgr_1")
    await notifier.db.calls.insert_one(call)
    opened = await ingest_client.post(
        f"/api/v1/admin/calls/{call['_id']}/disputes",
        json={"binding_id": "bnd_1", "stage": "Этап 2", "comment": "Я назвал компанию"},
        headers=manager,
    )
    assert opened.status == 201, await opened.text()
    (item,) = (await notified(ingest_client, team["headers"][HEAD], 1))["items"]
    assert item["rule"] == "Спорные оценки"
    assert item["summary"] == "Оспорен этап «Этап 2» (скрипт «Первичный звонок»): Я назвал компанию"
    assert item["task_id"] == call["_id"]
    nothing = await ingest_client.get("/api/v1/notifications", headers=team["headers"][OTHER_HEAD])
    assert (await nothing.json())["items"] == []


async def test_a_rule_s_addresses_reach_only_those_who_may_see_the_call(
    ingest_client: Client, notifier: Notifier
) -> None:
    headers = await admin(ingest_client)
    team = await people(ingest_client, headers)
    await user(ingest_client, headers, email="b1@company.test", role="manager", manager_id="mgr_2")
    lead = team["headers"][HEAD]
    outsider = {"condition": "forbidden_broken", "channels": ["email"]}
    refused = await ingest_client.post(
        "/api/v1/alert-rules",
        json={"name": "Наружу", **outsider, "emails": ["friend@mail.test"]},
        headers=lead,
    )
    assert refused.status == 400
    assert [d["field"] for d in (await refused.json())["details"]] == ["emails"]
    # Another team's people, listed by address, are held to what they may see.
    await rule(ingest_client, lead, **outsider, emails=[OTHER_HEAD, "b1@company.test"])
    # An admin may list an address of nobody here.
    await rule(
        ingest_client, headers, **outsider, team_supervisors=False, emails=["boss@mail.test"]
    )
    with smtp_server() as (mailbox, port):
        await smtp_settings(ingest_client, headers, port)
        await notifier.broker.publish(await analysed(notifier, 1))  # mgr_1's call
        await wait_for(lambda: _mail_to(mailbox, "boss@mail.test"))
        await wait_for(lambda: _mail_to(mailbox, HEAD))
        log = await (await ingest_client.get("/api/v1/alerts", headers=headers)).json()
        sent = sorted(target["to"] for item in log["items"] for target in item["targets"])
        assert sent == ["mailto:boss@mail.test", f"mailto:{HEAD}"]
        assert mailbox.to(OTHER_HEAD) == mailbox.to("b1@company.test") == []


async def test_a_rule_is_its_author_s_and_admins_to_change(ingest_client: Client) -> None:
    headers = await admin(ingest_client)
    team = await people(ingest_client, headers)
    lead, other = team["headers"][HEAD], team["headers"][OTHER_HEAD]
    made = await rule(
        ingest_client, lead, name="Низкие оценки", condition="score_below", score_below=50
    )
    one = f"/api/v1/alert-rules/{made['id']}"
    silenced = {
        "name": "Низкие оценки",
        "condition": "score_below",
        "score_below": 1,
        "channels": ["in_app"],
    }
    assert (await ingest_client.put(one, json=silenced, headers=other)).status == 403
    assert (await ingest_client.delete(one, headers=other)).status == 403
    assert (await ingest_client.get(one, headers=other)).status == 403
    listed = await (await ingest_client.get("/api/v1/alert-rules", headers=other)).json()
    assert listed == []
    by_admin = await ingest_client.put(one, json={**silenced, "score_below": 40}, headers=headers)
    assert by_admin.status == 200
    assert (await by_admin.json())["owner_id"] == team["ids"][HEAD]  # still the author's
    assert (await ingest_client.delete(one, headers=lead)).status == 204


async def test_rules_are_checked_when_saved(ingest_client: Client) -> None:
    headers = await admin(ingest_client)
    cases = [
        ({"condition": "score_below"}, "score_below"),
        ({"condition": "tracker_hit", "tracker_id": "trk_missing"}, "tracker_id"),
        ({"condition": "call_failed", "channels": ["webhook"]}, "webhook"),
        ({"condition": "call_failed", "team_supervisors": False}, "получателей"),
        (
            {
                "condition": "call_failed",
                "webhook": {"url": "http://169.254.169.254/latest/meta-data/"},
                "channels": ["webhook"],
            },
            "webhook.url",
        ),
        # A name goes into e-mail subjects: one line.
        ({"condition": "call_failed", "name": "Сбой\r\nBcc: all@evil.test"}, "одну строку"),
    ]
    for fields, says in cases:
        answer = await ingest_client.post(
            "/api/v1/alert-rules",
            json={"name": "x", "channels": ["in_app"], **fields},
            headers=headers,
        )
        assert answer.status == 400, fields
        assert says in await answer.text(), (fields, await answer.text())
    manager = await user(
        ingest_client, headers, email="anna@company.test", role="manager", manager_id="mgr_1"
    )
    refused = await ingest_client.get("/api/v1/alert-rules", headers=manager)
    assert refused.status == 403


async def test_a_dispute_comment_on_many_lines_makes_a_one_line_subject(
    ingest_client: Client, notifier: Notifier
) -> None:
    headers = await admin(ingest_client)
    await people(ingest_client, headers)
    manager = await user(
        ingest_client, headers, email="anna@company.test", role="manager", manager_id="mgr_1"
    )
    await rule(
        ingest_client,
        headers,
        name="Спорные оценки",
        condition="dispute_opened",
        channels=["in_app", "email"],
    )
    call = analysed_call(1, manager_id="mgr_1")
    await notifier.db.calls.insert_one(call)
    with smtp_server() as (mailbox, port):
        await smtp_settings(ingest_client, headers, port)
        opened = await ingest_client.post(
            f"/api/v1/admin/calls/{call['_id']}/disputes",
            json={
                "binding_id": "bnd_1",
                "stage": "Этап 2",
                "comment": "Я назвал компанию.\r\nBcc: all@evil.test\n\nПроверьте.",
            },
            headers=manager,
        )
        assert opened.status == 201, await opened.text()
        (message,) = await wait_for(lambda: _mail_to(mailbox, HEAD))
    assert message["Subject"] == (
        "Спорные оценки: Оспорен этап «Этап 2» (скрипт «Первичный звонок»): "
        "Я назвал компанию. Bcc: all@evil.test Проверьте."
    )
    assert message["Bcc"] is None
    assert mailbox.to("all@evil.test") == []


async def _mail_to(mailbox: Mailbox, address: str) -> list[Any]:
    return mailbox.to(address)


async def test_the_mail_server_is_under_the_url_policy_when_saved(ingest_client: Client) -> None:
    headers = await admin(ingest_client)
    for host in (
        "169.254.169.254",
        "0",
        "2852039166",
        "0251.0376.0251.0376",
        "[::ffff:169.254.169.254]",
        "metadata.google.internal",
        "smtp.company.test\r\nRCPT TO:<all@evil.test>",
        "smtp://smtp.company.test",
    ):
        answer = await ingest_client.put(
            "/api/v1/settings/connection",
            json={"smtp_host": host, "smtp_sender": SENDER},
            headers=headers,
        )
        assert answer.status == 400, host
        assert [d["field"] for d in (await answer.json())["details"]] == ["smtp_host"], host
    shown = await ingest_client.get("/api/v1/settings/connection", headers=headers)
    assert (await shown.json())["smtp"] is None


async def test_a_mail_server_the_policy_refuses_ends_the_email_dead_in_the_log(
    ingest_client: Client, notifier: Notifier
) -> None:
    headers = await admin(ingest_client)
    await people(ingest_client, headers)
    await rule(ingest_client, headers, condition="forbidden_broken", channels=["email"])
    with smtp_server() as (mailbox, port):
        # Saved by a version that did not check it: 0.0.0.0 reaches this machine.
        await update_connection_settings(
            notifier.db,
            {"smtp": {"host": "0.0.0.0", "port": port, "security": "none", "sender": SENDER}},
        )
        await notifier.broker.publish(await analysed(notifier, 1))
        dead = await wait_for(
            lambda: notifier.db.deliveries.find_one({"type": "alert.email", "status": "dead"})
        )
        assert dead["attempts"][-1]["error"] == "Почтовый сервер: Адрес 0.0.0.0 запрещён"
        assert mailbox.messages == []


async def test_the_mail_server_is_reached_only_at_addresses_the_policy_allows() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    try:
        for host in ("localhost", "127.0.0.1", "0.0.0.0"):
            with pytest.raises(UrlRefused):
                await UrlPolicy().connect(host, port, timeout_s=5)
        with pytest.raises(UrlRefused):
            await UrlPolicy(allow_loopback=True).connect("0.0.0.0", port, timeout_s=5)
        with pytest.raises(UrlRefused):
            await UrlPolicy(allow_loopback=True, ports=frozenset({25})).connect(
                "127.0.0.1", port, timeout_s=5
            )
        sock = await UrlPolicy(allow_loopback=True).connect("localhost", port, timeout_s=5)
        with sock:
            assert sock.getpeername()[:2] in {("127.0.0.1", port), ("::1", port)}
    finally:
        listener.close()


async def test_the_connection_page_says_when_email_links_cannot_be_opened(
    ingest_client: Client,
) -> None:
    await admin(ingest_client)  # signs the web app in too (its cookie)
    page = await (await ingest_client.get("/settings/connection")).text()
    assert "Не задан адрес сайта (ROP_PUBLIC_BASE_URL)" in page


async def test_the_mail_server_s_password_is_never_shown(ingest_client: Client) -> None:
    headers = await admin(ingest_client)
    body = {
        "smtp_host": "smtp.company.test",
        "smtp_username": "rop",
        "smtp_password": "mail secret",
        "smtp_sender": SENDER,
    }
    saved = await ingest_client.put("/api/v1/settings/connection", json=body, headers=headers)
    assert "mail secret" not in await saved.text()
    assert (await saved.json())["smtp"]["password_set"] is True
    # Changing the port keeps the password; an empty host removes the mail server.
    port = await ingest_client.put(
        "/api/v1/settings/connection",
        json={"smtp_port": 465, "smtp_security": "ssl"},
        headers=headers,
    )
    assert (await port.json())["smtp"] == {
        "host": "smtp.company.test",
        "port": 465,
        "security": "ssl",
        "username": "rop",
        "sender": SENDER,
        "password_set": True,
    }
    removed = await ingest_client.put(
        "/api/v1/settings/connection", json={"smtp_host": ""}, headers=headers
    )
    assert (await removed.json())["smtp"] is None
    lacking = await ingest_client.put(
        "/api/v1/settings/connection", json={"smtp_host": "smtp.company.test"}, headers=headers
    )
    assert lacking.status == 400
    assert (await lacking.json())["details"] == [
        {
            "field": "smtp_sender",
            "message": "Для почты нужны сервер (smtp_host) и адрес отправителя (smtp_sender)",
        }
    ]
