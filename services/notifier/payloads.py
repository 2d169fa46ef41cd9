"""What the CRM receives: the webhook bodies of an analysed or failed call and the
delivery documents they are stored in before sending. Pure: no I/O here."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping

from shared.events import CallFailed, CallMeta, Envelope, call_meta, utcnow
from shared.mongo import Document

# What a webhook needs of a task: never the transcript, which can be large.
TASK_FIELDS = {
    "results": 1,
    "revision": 1,
    "reviewed_by": 1,
    **{name: 1 for name in CallMeta.model_fields},
}


def delivery_id(event_id: str, owner: str) -> str:
    """The stable webhook-id of one endpoint's copy of one event."""
    return "msg_" + hashlib.sha256(f"{event_id}:{owner}".encode()).hexdigest()[:24]


def common(envelope: Envelope, task: Document, kind: str, webhook_id: str) -> Document:
    return {
        "type": kind,
        "event_id": webhook_id,
        "occurred_at": envelope.occurred_at.isoformat(),
        "task_id": envelope.task_id,
        **call_meta(task),
    }


def revision(task: Document) -> Document:
    """Which version of the call's results this is: 1 first, one more at every re-analysis
    or correction; `reviewed_by` names the person behind the latest correction."""
    return {"revision": task.get("revision") or 1, "reviewed_by": task.get("reviewed_by")}


def owners(task: Document) -> list[str]:
    """The bindings and tables whose webhooks an analysed task's results go to."""
    results = task.get("results") or {}
    return [c["binding_id"] for c in results.get("checklists", [])] + [
        t["table_id"] for t in results.get("tables", [])
    ]


def analysis_deliveries(
    envelope: Envelope,
    task: Document,
    webhooks: Mapping[str, Document],
    *,
    reviewed: Collection[str] | None = None,
) -> list[Document]:
    """A checklist delivery per binding and a row delivery per table of the results, to
    the owners' webhooks (an owner deleted since the analysis gets nothing); after a
    correction, only the checklists of the `reviewed` bindings."""
    results = task.get("results") or {}
    planned = []
    for checklist in results.get("checklists", []):
        if checklist["binding_id"] not in webhooks:
            continue  # deleted since the analysis: nowhere to send
        if reviewed is not None and checklist["binding_id"] not in reviewed:
            continue
        webhook_id = delivery_id(envelope.event_id, checklist["binding_id"])
        body = {
            **common(envelope, task, "checklist.completed", webhook_id),
            **revision(task),
            "language": results.get("language"),
            "checklist": checklist,
            "metrics": results.get("metrics"),
        }
        planned.append((webhook_id, "checklist.completed", webhooks[checklist["binding_id"]], body))
    for row in results.get("tables", []) if reviewed is None else []:
        if row["table_id"] not in webhooks:
            continue
        webhook_id = delivery_id(envelope.event_id, row["table_id"])
        body = {
            **common(envelope, task, "analytics.completed", webhook_id),
            **revision(task),
            "language": results.get("language"),
            "table": {"id": row["table_id"], "name": row["name"], "row": row["row"]},
        }
        planned.append((webhook_id, "analytics.completed", webhooks[row["table_id"]], body))
    return [delivery(envelope.task_id, *item, of=len(planned)) for item in planned]


def delivery(
    task_id: str | None,
    webhook_id: str,
    kind: str,
    endpoint: Document,
    body: Document,
    *,
    of: int = 1,
) -> Document:
    """A delivery as planned, before its first attempt; `of` is how many the task waits
    for (0: it waits for none, as with alerts)."""
    now = utcnow()
    return {
        "_id": webhook_id,
        "task_id": task_id,
        "task_deliveries": of,
        "call_id": body.get("call_id"),
        "manager_id": body.get("manager_id"),  # who may see it (the back office's rule)
        "type": kind,
        "url": endpoint["url"],
        "secret": endpoint["secret"],
        "body": json.dumps(body, ensure_ascii=False, separators=(",", ":")),
        "status": "pending",
        "attempts": [],
        "round_attempts": 0,
        "created_at": now,
        "updated_at": now,
    }


def error_delivery(
    envelope: Envelope, task: Document, event: CallFailed, endpoint: Document
) -> Document:
    """The `call.failed` delivery to the error webhook."""
    webhook_id = delivery_id(envelope.event_id, "error_webhook")
    body = {
        **common(envelope, task, "call.failed", webhook_id),
        "error": {"code": event.code, "message": event.message, "stage": event.pipeline_stage},
    }
    return delivery(envelope.task_id, webhook_id, "call.failed", endpoint, body)
