"""Alerts: what the rules make of a call's results, failure or dispute.

An alert's id comes from its rule and its subject (the call; for a dispute, the
dispute), so an event that comes again, or a call analysed again, raises nothing twice.
Raising one writes the alert (the log), each recipient's in-app notification and its
daily-digest items, and plans its emails and signed webhook as deliveries, which the
notifier stores and attempts like the CRM's: retried by the broker's waiting rooms and
logged, so a broken mail server or receiver delays alerts and never loses them. The task
waits for none of them.

Who hears: the rule fires only on calls its author may see, and reaches only the people
who may see the call (the back office's one visibility rule), whatever the rule names or
lists: an address of a user is that user; an address of nobody here is an admin's to list.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.notifier import payloads
from services.notifier.endpoints import Directory, StoredRule
from shared.alerts import Message, Occasion, alert_id, digest_text, next_digest_at
from shared.connection import load_connection_settings
from shared.events import CallAnalyzed, CallDisputed, CallFailed, Envelope, Event, call_meta
from shared.logging import get_logger
from shared.mongo import ALERTS, DIGEST_ITEMS, NOTIFICATIONS, USERS, Document
from shared.people import Role, User

log = get_logger(__name__)

OCCASIONS: dict[type[Event], Occasion] = {
    CallAnalyzed: "analysed",
    CallFailed: "failed",
    CallDisputed: "disputed",
}
DIGEST_BATCH = 5000


@dataclass(frozen=True)
class Alerting:
    """What raising alerts needs."""

    db: AsyncDatabase[Document]
    directory: Directory
    public_url: str  # where the web app is, for links to the call's card
    timezone: str  # of the digest hour


def _summary(stored: StoredRule, event: Event, task: Document) -> str | None:
    if isinstance(event, CallFailed):
        return f"Звонок не обработан: {event.message}"
    if isinstance(event, CallDisputed):
        return f"Оспорен этап «{event.script_stage}» (скрипт «{event.script}»): {event.comment}"
    return stored.rule.fired_by_results(task.get("results") or {})


async def raise_alerts(
    alerting: Alerting, envelope: Envelope, event: Event, task: Document
) -> list[Document]:
    """Raise the alerts the event fires; return the deliveries (emails, webhooks) that
    are still to be stored and attempted."""
    occasion = OCCASIONS.get(type(event))
    if occasion is None:
        return []
    await alerting.directory.refresh(alerting.db)
    fired = [
        (stored, summary)
        for stored in alerting.directory.rules
        if stored.rule.occasion == occasion
        and stored.rule.covers(task)
        and (summary := _summary(stored, event, task)) is not None
    ]
    if not fired:
        return []
    people = await _people(alerting.db, [stored for stored, _ in fired])
    subject = event.dispute_id if isinstance(event, CallDisputed) else envelope.task_id
    planned: list[Document] = []
    for stored, summary in fired:
        owner = people.get(stored.owner_id or "")
        if (
            owner is None
            or not owner.active
            or not owner.sees_manager(task.get("manager_id") or "")
        ):
            continue  # its author may not see this call: neither may the rule
        alert = _Alert(alerting, stored, alert_id(stored.id, subject), envelope, task, summary)
        planned += await alert.raise_it(people.values(), owner)
    return planned


async def _people(db: AsyncDatabase[Document], rules: list[StoredRule]) -> dict[str, User]:
    """The users the rules may need, switched off or not (one switched off hears
    nothing, and their address is still theirs): the rules' authors, the users they name
    or whose addresses they list and, when any asks for them, every supervisor."""
    ids = sorted(
        {id_ for stored in rules for id_ in (*stored.rule.user_ids, stored.owner_id or "")}
    )
    emails = sorted({address for stored in rules for address in stored.rule.emails})
    wanted: list[Document] = [{"_id": {"$in": ids}}, {"email": {"$in": emails}}]
    if any(stored.rule.team_supervisors for stored in rules):
        wanted.append({"role": Role.SUPERVISOR.value})
    found = db[USERS].find({"$or": wanted}, {"password_hash": 0})
    return {user.id: user for user in map(User.from_document, await found.to_list())}


@dataclass(frozen=True)
class _Alert:
    alerting: Alerting
    stored: StoredRule
    id: str
    envelope: Envelope
    task: Document
    summary: str

    @property
    def message(self) -> Message:
        task = self.task
        who = task.get("manager_name") or task.get("manager_id")
        return Message(
            rule=self.stored.rule.name,
            summary=self.summary,
            call=f"Звонок {task.get('call_id')}, менеджер {who}",
            link=f"{self.alerting.public_url}/calls/{self.envelope.task_id}",
        )

    def recipients(self, people: Iterable[User], owner: User) -> tuple[list[User], list[str]]:
        """The users the rule names who may see the call, and the addresses its emails
        go to: theirs, and those the rule lists, an address of a user held to that
        user's view of calls like a named user, an address of nobody here only when an
        admin's rule lists it."""
        rule, manager_id = self.stored.rule, self.task.get("manager_id") or ""
        people = list(people)
        named = [
            person
            for person in people
            if person.id in rule.user_ids
            or (rule.team_supervisors and person.role is Role.SUPERVISOR)
        ]

        def sees_call(person: User) -> bool:
            return person.active and person.sees_manager(manager_id)

        users = [person for person in named if sees_call(person)]
        by_email = {person.email.lower(): person for person in people}
        listed = {
            address
            for address in rule.emails
            if (sees_call(by_email[address]) if address in by_email else owner.role is Role.ADMIN)
        }
        return users, sorted({user.email for user in users} | listed)

    async def raise_it(self, people: Iterable[User], owner: User) -> list[Document]:
        rule, db = self.stored.rule, self.alerting.db
        users, addresses = self.recipients(people, owner)
        targets: list[Document] = []
        if "in_app" in rule.channels:
            targets += [{"channel": "in_app", "to": user.email} for user in users]
        by_email = "email" in rule.channels
        emails = [self._email(address) for address in addresses if by_email and not rule.digest]
        if by_email and rule.digest:
            targets += [{"channel": "digest", "to": address} for address in addresses]
        webhooks = [self._webhook()] if "webhook" in rule.channels and self.stored.webhook else []
        targets += [
            {"channel": delivery["channel"], "to": delivery["url"], "delivery_id": delivery["_id"]}
            for delivery in [*emails, *webhooks]
        ]
        message = self.message
        document = {
            "_id": self.id,
            "rule_id": self.stored.id,
            "rule": rule.name,
            "condition": rule.condition,
            "task_id": self.envelope.task_id,
            **call_meta(self.task),
            "summary": self.summary,
            "link": message.link,
            "at": self.envelope.occurred_at,
            "targets": targets,
        }
        try:
            await db[ALERTS].insert_one(document)
        except DuplicateKeyError:
            pass  # raised before; what follows is idempotent and completes it
        else:
            log.info("alert_raised", alert_id=self.id, rule_id=self.stored.id, targets=len(targets))
        if "in_app" in rule.channels:
            await _insert_new(db, NOTIFICATIONS, [self._notification(user) for user in users])
        if by_email and rule.digest:
            await self._to_digest(addresses)
        return [*emails, *webhooks]

    def _notification(self, user: User) -> Document:
        return {
            "_id": f"{self.id}:{user.id}",
            "user_id": user.id,
            "alert_id": self.id,
            "rule": self.stored.rule.name,
            "summary": self.summary,
            "task_id": self.envelope.task_id,
            "call_id": self.task.get("call_id"),
            "manager_id": self.task.get("manager_id"),
            "manager_name": self.task.get("manager_name"),
            "at": self.envelope.occurred_at,
            "read": False,
        }

    def _delivery(self, channel: str, endpoint: Document, kind: str, body: Document) -> Document:
        webhook_id = payloads.delivery_id(self.id, f"{channel}:{endpoint['url']}")
        delivery = payloads.delivery(self.envelope.task_id, webhook_id, kind, endpoint, body, of=0)
        return {
            **delivery,
            "call_id": self.task.get("call_id"),
            "manager_id": self.task.get("manager_id"),
            "alert_id": self.id,
            "rule_id": self.stored.id,
            "channel": channel,
        }

    def _email(self, address: str) -> Document:
        message = self.message
        body = {"to": address, "subject": message.subject, "text": message.text()}
        return self._delivery("email", email_endpoint(address), "alert.email", body)

    def _webhook(self) -> Document:
        assert self.stored.webhook is not None
        endpoint = self.stored.webhook
        webhook_id = payloads.delivery_id(self.id, f"webhook:{endpoint['url']}")
        body = {
            **payloads.common(self.envelope, self.task, "alert.fired", webhook_id),
            "alert": {
                "id": self.id,
                "rule_id": self.stored.id,
                "rule": self.stored.rule.name,
                "condition": self.stored.rule.condition,
                "summary": self.summary,
                "link": self.message.link,
            },
        }
        return self._delivery("webhook", endpoint, "alert.fired", body)

    async def _to_digest(self, addresses: list[str]) -> None:
        connection = await load_connection_settings(self.alerting.db)
        due_at = next_digest_at(
            self.envelope.occurred_at, hour=connection.digest_hour, zone=self.alerting.timezone
        )
        message = self.message
        items = [
            {
                "_id": f"{self.id}:{address}",
                "alert_id": self.id,
                "address": address,
                "due_at": due_at,
                "message": message.__dict__,
            }
            for address in addresses
        ]
        await _insert_new(self.alerting.db, DIGEST_ITEMS, items)


def email_endpoint(address: str) -> Document:
    """Where an email delivery goes, as the delivery log shows it."""
    return {"url": f"mailto:{address}", "secret": None}


async def _insert_new(
    db: AsyncDatabase[Document], collection: str, documents: list[Document]
) -> None:
    """Insert what is not there yet (by id): written once however often it comes."""
    if not documents:
        return
    try:
        await db[collection].insert_many(documents, ordered=False)
    except BulkWriteError as exc:
        if any(error["code"] != 11000 for error in exc.details["writeErrors"]):
            raise


async def digests_due(
    db: AsyncDatabase[Document], now: datetime
) -> list[tuple[Document, list[str]]]:
    """The daily digests due by `now`: one email delivery per address of the alerts
    waiting for it, with the ids of those digest items. Its id comes from the items, so
    a digest planned again after a crash is the same delivery."""
    found = db[DIGEST_ITEMS].find({"due_at": {"$lte": now}}).sort("due_at", 1).limit(DIGEST_BATCH)
    by_address: dict[str, list[Document]] = {}
    for item in await found.to_list():
        by_address.setdefault(item["address"], []).append(item)
    digests = []
    for address, items in by_address.items():
        ids = sorted(item["_id"] for item in items)
        subject, text = digest_text([Message(**item["message"]) for item in items])
        body = {"to": address, "subject": subject, "text": text}
        digest_id = "dgs_" + hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:24]
        delivery = payloads.delivery(
            None, digest_id, "alert.digest", email_endpoint(address), body, of=0
        )
        digests.append(({**delivery, "channel": "email"}, ids))
    return digests


async def digest_sent(db: AsyncDatabase[Document], digest_id: str, item_ids: list[str]) -> None:
    """The items are in their digest's delivery: no longer due."""
    await db[DIGEST_ITEMS].update_many(
        {"_id": {"$in": item_ids}}, {"$unset": {"due_at": ""}, "$set": {"digest_id": digest_id}}
    )
