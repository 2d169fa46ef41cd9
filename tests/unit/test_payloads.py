"""Webhook bodies and delivery documents, built without a database."""

from __future__ import annotations

import json

from services.notifier.payloads import analysis_deliveries, delivery_id, error_delivery, owners
from shared.events import CallAnalyzed, CallFailed, Envelope

META = {"call_id": "c1", "deal_id": "d1", "manager_id": "mgr_1"}
TASK = {
    **META,
    "revision": 2,
    "reviewed_by": {"email": "head@example.ru"},
    "results": {
        "checklists": [{"binding_id": "bnd_1", "score": {"percent": 50.0}}],
        "tables": [{"table_id": "tbl_1", "name": "Сделки", "row": {"budget": 500}}],
        "metrics": {"talk_ratio": 0.4},
    },
}
HOOKS = {
    "bnd_1": {"url": "https://crm.example/checklist", "secret": "whsec_a"},
    "tbl_1": {"url": "https://crm.example/table", "secret": "whsec_b"},
}
ANALYSED = Envelope.wrap(CallAnalyzed(**META, duration_s=60, checklists=1, tables=1), task_id="t1")


def test_each_owner_gets_one_delivery_with_a_stable_id() -> None:
    assert owners(TASK) == ["bnd_1", "tbl_1"]
    checklist, row = analysis_deliveries(ANALYSED, TASK, HOOKS)
    assert checklist["_id"] == delivery_id(ANALYSED.event_id, "bnd_1")
    assert [checklist["url"], row["url"]] == [HOOKS["bnd_1"]["url"], HOOKS["tbl_1"]["url"]]
    assert {checklist["task_deliveries"], row["task_deliveries"]} == {2}
    assert (checklist["manager_id"], checklist["status"]) == ("mgr_1", "pending")
    body = json.loads(checklist["body"])
    assert body["event_id"] == checklist["_id"]  # the body's id is the webhook-id
    assert (body["type"], body["revision"], body["metrics"]) == (
        "checklist.completed",
        2,
        {"talk_ratio": 0.4},
    )
    assert json.loads(row["body"])["table"] == {
        "id": "tbl_1",
        "name": "Сделки",
        "row": {"budget": 500},
    }


def test_an_owner_deleted_since_the_analysis_gets_nothing() -> None:
    (only,) = analysis_deliveries(ANALYSED, TASK, {"tbl_1": HOOKS["tbl_1"]})
    assert only["type"] == "analytics.completed"
    assert only["task_deliveries"] == 1


def test_a_failure_goes_to_the_error_webhook() -> None:
    event = CallFailed(
        **META, code="download_failed", message="Файл скачать не может", pipeline_stage="download"
    )
    failed = Envelope.wrap(event, task_id="t1")
    delivery = error_delivery(failed, TASK, event, HOOKS["bnd_1"])
    assert delivery["_id"] == delivery_id(failed.event_id, "error_webhook")
    assert json.loads(delivery["body"])["error"] == {
        "code": "download_failed",
        "message": "Файл скачать не может",
        "stage": "download",
    }
