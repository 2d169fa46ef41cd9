"""Webhook deliveries to local receivers: signing, retries by the broker, 410, dead letters."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from devtools.samples import analysis_results
from services.notifier.handlers import Notifier, attempt_later, on_event
from shared.events import CallAnalyzed, CallFailed, Envelope, utcnow
from shared.mongo import Document
from shared.outbox import OutboxRelay
from shared.webhooks import new_webhook_secret, verify
from tests.api_client import bearer, log_in
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, EventTap
from tests.fakes import FakeCrm, reply
from tests.helpers import wait_for

pytestmark = pytest.mark.timeout(120)
Client = TestClient[Any, Any]


async def analysed_task(
    deps: Notifier, checklist_url: str, table_url: str | None = None
) -> tuple[Envelope, dict[str, str]]:
    """A task as the analyzer leaves it, with a binding (and a table) pointing at the CRM."""
    task_id = f"task_{uuid.uuid4().hex[:12]}"
    secrets = {"checklist": new_webhook_secret(), "table": new_webhook_secret()}
    await deps.db.bindings.insert_one(
        {"_id": f"bnd_{task_id}", "webhook": {"url": checklist_url, "secret": secrets["checklist"]}}
    )
    if table_url:
        await deps.db.tables.insert_one(
            {"_id": f"tbl_{task_id}", "webhook": {"url": table_url, "secret": secrets["table"]}}
        )
    results = analysis_results(
        binding_id=f"bnd_{task_id}",
        table_id=f"tbl_{task_id}" if table_url else None,
        table_row={"budget": 500000},
    )
    now = utcnow()
    meta = {
        "call_id": f"call_{task_id}",
        "deal_id": "deal_1",
        "manager_id": "mgr_001",
        "manager_name": "Анна",
        "deal_stage_id": "qual",
        "stage_id": "funnel",
        "stage": "Продажи",
    }
    await deps.db.calls.insert_one(
        {
            "_id": task_id,
            **meta,
            "status": "delivering",
            "received_at": now,
            "updated_at": now,
            "timeline": [],
            "results": results,
            "transcript": [{"text": "секрет"}],
        }
    )
    event = CallAnalyzed(**meta, duration_s=60, checklists=1, tables=len(results["tables"]))
    return Envelope.wrap(event, task_id=task_id), secrets


async def delivery_of(
    deps: Notifier, task_id: str, kind: str = "checklist.completed"
) -> Document | None:
    return await deps.db.deliveries.find_one({"task_id": task_id, "type": kind})


async def settled(deps: Notifier, task_id: str, status: str) -> Document:
    async def reached() -> Document | None:
        found = await delivery_of(deps, task_id)
        return found if found and found["status"] == status else None

    return await wait_for(reached, timeout_s=30)


async def test_delivered_at_once_signed_and_small(
    notifier: Notifier, crm: tuple[FakeCrm, str]
) -> None:
    fake, base = crm
    envelope, secrets = await analysed_task(notifier, f"{base}/checklist", f"{base}/table")
    await notifier.broker.publish(envelope)
    await settled(notifier, envelope.task_id, "succeeded")

    (request,) = fake.at("/checklist")
    payload = verify(secrets["checklist"], request.body, request.headers)
    assert payload["type"] == "checklist.completed"
    for name in (
        "event_id",
        "occurred_at",
        "task_id",
        "call_id",
        "deal_id",
        "manager_id",
        "deal_stage_id",
        "stage_id",
        "stage",
    ):
        assert payload[name] is not None, name
    assert payload["event_id"] == request.headers["webhook-id"]
    assert payload["checklist"]["score"]["text"] == "1/2"
    assert (payload["revision"], payload["reviewed_by"]) == (1, None)  # the machine's first
    assert "секрет" not in request.body.decode()  # no transcript in webhooks

    (table_request,) = fake.at("/table")
    table = verify(secrets["table"], table_request.body, table_request.headers)
    assert table["type"] == "analytics.completed"
    assert table["table"]["row"] == {"budget": 500000}
    assert table["revision"] == 1

    async def done() -> bool:
        task = await notifier.db.calls.find_one({"_id": envelope.task_id})
        return bool(task and task["status"] == "done")

    await wait_for(done)


async def test_a_corrected_call_says_its_revision_and_who_reviewed_it(
    notifier: Notifier, crm: tuple[FakeCrm, str]
) -> None:
    fake, base = crm
    envelope, secrets = await analysed_task(notifier, f"{base}/checklist")
    reviewer = {"id": "usr_1", "email": "lead@example.ru", "name": "Лид"}
    await notifier.db.calls.update_one(
        {"_id": envelope.task_id}, {"$set": {"revision": 3, "reviewed_by": reviewer}}
    )
    await notifier.broker.publish(envelope)
    await settled(notifier, envelope.task_id, "succeeded")
    (request,) = fake.at("/checklist")
    payload = verify(secrets["checklist"], request.body, request.headers)
    assert (payload["revision"], payload["reviewed_by"]) == (3, reviewer)


async def test_a_correction_reaches_the_crm_signed_as_a_new_revision(
    notifier: Notifier, crm: tuple[FakeCrm, str], ingest_client: Client
) -> None:
    fake, base = crm
    envelope, secrets = await analysed_task(notifier, f"{base}/checklist", f"{base}/table")
    await notifier.broker.publish(envelope)
    await settled(notifier, envelope.task_id, "succeeded")
    headers = bearer(await log_in(ingest_client, ADMIN_EMAIL, ADMIN_PASSWORD))
    correction = {
        "binding_id": f"bnd_{envelope.task_id}",
        "stage": "Этап 2",
        "verdict": "passed",
        "reason": "Назвал компанию",
    }
    response = await ingest_client.post(
        f"/api/v1/admin/calls/{envelope.task_id}/corrections", json=correction, headers=headers
    )
    assert response.status == 200, await response.text()

    requests = await wait_for(lambda: _when(len(fake.at("/checklist")) == 2, fake.at("/checklist")))
    first, revised = (verify(secrets["checklist"], r.body, r.headers) for r in requests)
    assert revised["type"] == "checklist.completed"
    assert requests[1].headers["webhook-id"] != requests[0].headers["webhook-id"]
    assert (first["revision"], revised["revision"]) == (1, 2)
    assert revised["reviewed_by"]["email"] == ADMIN_EMAIL
    assert revised["checklist"]["score"]["text"] == "2/2"
    stage = revised["checklist"]["stages"][1]
    assert stage["passed"]
    assert stage["review"]["machine"]["passed"] is False
    assert len(fake.at("/table")) == 1  # the table's row did not change

    async def done_again() -> bool:
        task = await notifier.db.calls.find_one({"_id": envelope.task_id})
        return bool(task and task["status"] == "done" and task["revision"] == 2)

    await wait_for(done_again)


async def _when(condition: bool, value: Any) -> Any:
    return value if condition else None


async def test_500_500_200_is_three_attempts_of_one_webhook_id(
    notifier: Notifier, crm: tuple[FakeCrm, str]
) -> None:
    fake, base = crm
    fake.replies["/flaky"] = [reply(500), reply(500), reply(200)]
    envelope, _ = await analysed_task(notifier, f"{base}/flaky")
    await notifier.broker.publish(envelope)
    delivery = await settled(notifier, envelope.task_id, "succeeded")
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 500, 200]
    assert {r.headers["webhook-id"] for r in fake.at("/flaky")} == {delivery["_id"]}
    assert len({r.headers["webhook-signature"] for r in fake.at("/flaky")}) >= 1


async def test_always_500_dies_after_the_schedule(
    notifier: Notifier, crm: tuple[FakeCrm, str]
) -> None:
    fake, base = crm
    fake.replies["/down"] = [reply(500, body="x" * 5000)]
    envelope, _ = await analysed_task(notifier, f"{base}/down")
    await notifier.broker.publish(envelope)
    delivery = await settled(notifier, envelope.task_id, "dead")
    assert len(delivery["attempts"]) == 4  # the first try and three retries
    assert len(fake.at("/down")) == 4
    assert len(delivery["attempts"][0]["response"]) == 2048  # a bounded snippet
    assert delivery["attempts"][0]["latency_ms"] is not None

    async def done() -> Document | None:  # the task is closed just after its delivery
        return await notifier.db.calls.find_one({"_id": envelope.task_id, "status": "done"})

    task = await wait_for(done)
    assert task["timeline"][-2]["status"] == "webhook_dead"


async def test_410_stops_the_endpoint(notifier: Notifier, crm: tuple[FakeCrm, str]) -> None:
    fake, base = crm
    fake.replies["/gone"] = [reply(410)]
    first, _ = await analysed_task(notifier, f"{base}/gone")
    await notifier.broker.publish(first)
    await settled(notifier, first.task_id, "stopped")
    second, _ = await analysed_task(notifier, f"{base}/gone")
    await notifier.broker.publish(second)
    await settled(notifier, second.task_id, "stopped")
    assert len(fake.at("/gone")) == 1  # the second was never sent


async def test_a_receiver_slower_than_the_timeout_fails_the_attempt(
    notifier: Notifier, crm: tuple[FakeCrm, str]
) -> None:
    fake, base = crm
    fake.replies["/slow"] = [reply(200, delay_s=3.0), reply(200)]
    envelope, _ = await analysed_task(notifier, f"{base}/slow")
    await notifier.broker.publish(envelope)
    delivery = await settled(notifier, envelope.task_id, "succeeded")
    first, second = delivery["attempts"]
    assert first["status_code"] is None
    assert "Timeout" in first["error"]
    assert second["status_code"] == 200


@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_retry_after_is_honoured(
    notifier: Notifier, crm: tuple[FakeCrm, str], form: str
) -> None:
    fake, base = crm
    wait = "2" if form == "seconds" else format_datetime(utcnow() + timedelta(seconds=3), True)
    fake.replies["/busy"] = [reply(429, headers={"Retry-After": wait}), reply(200)]
    envelope, _ = await analysed_task(notifier, f"{base}/busy")
    await notifier.broker.publish(envelope)
    await settled(notifier, envelope.task_id, "succeeded")
    first, second = fake.at("/busy")
    assert second.at - first.at >= 1.9


async def test_stored_but_not_sent_is_delivered_when_the_event_comes_again(
    notifier: Notifier, crm: tuple[FakeCrm, str]
) -> None:
    fake, base = crm
    envelope, secrets = await analysed_task(notifier, f"{base}/later")
    await notifier.broker.publish(envelope)
    delivery = await settled(notifier, envelope.task_id, "succeeded")
    # As if the notifier died after storing: the event is redelivered; nothing is sent twice
    # for a delivered one, and the same webhook-id is used for a pending one.
    await notifier.db.deliveries.update_one(
        {"_id": delivery["_id"]}, {"$set": {"status": "pending", "round_attempts": 0}}
    )
    await notifier.broker.publish(envelope)

    async def twice() -> bool:
        return len(fake.at("/later")) == 2

    await wait_for(twice)
    assert {r.headers["webhook-id"] for r in fake.at("/later")} == {delivery["_id"]}
    bodies = {
        json.dumps(verify(secrets["checklist"], r.body, r.headers)) for r in fake.at("/later")
    }
    assert len(bodies) == 1  # same content both times
    assert await notifier.db.deliveries.count_documents({"task_id": envelope.task_id}) == 1


async def test_finished_but_not_counted_closes_the_task_when_the_event_comes_again(
    notifier: Notifier, crm: tuple[FakeCrm, str]
) -> None:
    fake, base = crm
    envelope, _ = await analysed_task(notifier, f"{base}/counted")
    await notifier.broker.publish(envelope)
    delivery = await settled(notifier, envelope.task_id, "succeeded")

    async def task_done() -> Document | None:
        task = await notifier.db.calls.find_one({"_id": envelope.task_id})
        return task if task and task["status"] == "done" else None

    await wait_for(task_done)
    # As if the notifier died after settling the delivery but before telling the task.
    await notifier.db.calls.update_one(
        {"_id": envelope.task_id},
        {"$set": {"status": "delivering", "deliveries_closed": [], "timeline": []}},
    )
    for _ in range(2):  # the event again, and a third copy that must change nothing
        await on_event(envelope, envelope.event(), deps=notifier)
        again = await task_done()
        assert again is not None
        assert [entry["status"] for entry in again["timeline"]] == ["webhook_succeeded", "done"]
        assert again["deliveries_closed"] == [delivery["_id"]]
    assert len(fake.at("/counted")) == 1  # closing the task sends nothing again


async def test_failures_go_to_the_error_webhook(
    notifier: Notifier, crm: tuple[FakeCrm, str]
) -> None:
    fake, base = crm
    secret = new_webhook_secret()
    await notifier.db.settings.update_one(
        {"_id": "connection"},
        {"$set": {"error_webhook": {"url": f"{base}/errors", "secret": secret}}},
    )
    envelope, _ = await analysed_task(notifier, f"{base}/unused")
    failed = Envelope.wrap(
        CallFailed(
            call_id="call_x",
            deal_id="d",
            manager_id="m",
            code="not_audio",
            message="Файл не является аудио",
            pipeline_stage="download",
        ),
        task_id=envelope.task_id,
    )
    await notifier.broker.publish(failed)

    async def sent() -> list[Any]:
        return fake.at("/errors")

    (request,) = await wait_for(sent)
    payload = verify(secret, request.body, request.headers)
    assert payload["type"] == "call.failed"
    assert payload["error"]["code"] == "not_audio"


async def test_dead_delivery_is_visible_and_redeliverable(
    notifier: Notifier, crm: tuple[FakeCrm, str], ingest_client: Any
) -> None:
    fake, base = crm
    fake.replies["/flaps"] = [reply(503)]
    envelope, _ = await analysed_task(notifier, f"{base}/flaps")
    await notifier.broker.publish(envelope)
    dead = await settled(notifier, envelope.task_id, "dead")

    admin = bearer(await log_in(ingest_client, ADMIN_EMAIL, ADMIN_PASSWORD))
    listed = await (
        await ingest_client.get("/api/v1/deliveries", params={"status": "dead"}, headers=admin)
    ).json()
    assert [item["id"] for item in listed["items"]] == [dead["_id"]]
    assert "secret" not in listed["items"][0]
    assert [a["status_code"] for a in listed["items"][0]["attempts"]] == [503] * 4
    by_call = await (
        await ingest_client.get(
            "/api/v1/deliveries", params={"call_id": dead["call_id"]}, headers=admin
        )
    ).json()
    assert by_call["total"] == 1

    fake.replies["/flaps"] = [reply(200)]
    replayed = await ingest_client.post(
        f"/api/v1/deliveries/{dead['_id']}/redeliver", headers=admin
    )
    assert replayed.status == 200
    succeeded = await settled(notifier, envelope.task_id, "succeeded")
    assert succeeded["attempts"][-1]["status_code"] == 200

    async def done_again() -> bool:
        task = await notifier.db.calls.find_one({"_id": envelope.task_id})
        closed = task and task["deliveries_closed"]
        return bool(task and task["status"] == "done" and closed == [dead["_id"]])

    await wait_for(done_again)
    assert fake.at("/flaps")[-1].headers["webhook-id"] == dead["_id"]

    for name, value in [("status", "lost"), ("offset", str(10**27)), ("limit", "0")]:
        refused = await ingest_client.get("/api/v1/deliveries", params={name: value}, headers=admin)
        assert refused.status == 400, name
        assert [d["field"] for d in (await refused.json())["details"]] == [name]
    missing = await ingest_client.post("/api/v1/deliveries/msg_nope/redeliver", headers=admin)
    assert missing.status == 404
    ingest_client.session.cookie_jar.clear()
    assert (await ingest_client.get("/api/v1/deliveries")).status == 401


async def test_results_that_cannot_become_deliveries_fail_the_task_and_say_so(
    notifier: Notifier, tap: EventTap
) -> None:
    envelope, _ = await analysed_task(notifier, "http://127.0.0.1:9/never")
    broken = {"checklists": [{"score": {"percent": 50.0}}]}  # a bug: no binding_id
    await notifier.db.calls.update_one({"_id": envelope.task_id}, {"$set": {"results": broken}})
    await notifier.broker.publish(envelope)

    async def failed() -> Document | None:
        task = await notifier.db.calls.find_one({"_id": envelope.task_id})
        return task if task and task["status"] == "failed" else None

    task = await wait_for(failed)
    assert task["error"]["code"] == "delivery_failed"
    assert (
        task["error"]["message"]
        == "Не удалось отправить результаты в CRM: ошибка обработки: KeyError"
    )
    await OutboxRelay(notifier.db.calls, notifier.broker).drain_once()

    async def announced() -> list[CallFailed]:
        return [e for _, e in tap.events() if isinstance(e, CallFailed)]

    (event,) = await wait_for(announced)
    assert (event.code, event.pipeline_stage) == ("delivery_failed", "delivery")
    counted = {
        outcome: notifier.metrics.registry.get_sample_value(
            "rop_messages_total", {"consumer": "notifier", "outcome": outcome}
        )
        for outcome in ("retried", "dead_lettered")
    }
    assert counted == {"retried": 1, "dead_lettered": 1}


async def test_an_attempt_that_cannot_be_made_kills_its_delivery_and_closes_the_task(
    notifier: Notifier,
) -> None:
    envelope, _ = await analysed_task(notifier, "http://127.0.0.1:9/never")
    now = utcnow()
    await notifier.db.deliveries.insert_one(
        {
            "_id": "msg_broken",
            "task_id": envelope.task_id,
            "task_deliveries": 1,
            "type": "checklist.completed",
            "url": "http://127.0.0.1:9/never",
            "body": "{}",  # a bug: no secret to sign with
            "status": "pending",
            "attempts": [],
            "round_attempts": 0,
            "created_at": now,
            "updated_at": now,
        }
    )
    await attempt_later(notifier, "msg_broken", delay_s=0.1)

    async def dead() -> Document | None:
        delivery = await notifier.db.deliveries.find_one({"_id": "msg_broken"})
        return delivery if delivery and delivery["status"] == "dead" else None

    delivery = await wait_for(dead)
    assert delivery["attempts"][-1]["error"] == "ошибка обработки: KeyError"

    async def done() -> Document | None:
        task = await notifier.db.calls.find_one({"_id": envelope.task_id})
        return task if task and task["status"] == "done" else None

    assert (await wait_for(done))["deliveries_closed"] == ["msg_broken"]
