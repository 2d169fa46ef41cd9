"""Script templates, bindings, analytics tables, trackers and alert rules: validated
documents with stable ids.

Bindings and tables own a webhook endpoint whose secret is generated when it is
first saved; its URL cannot change afterwards (the seed: "URL для webhook-ов нельзя
изменить после настройки"). A template in use by a binding cannot be deleted, nor a
tracker a template's point listens with. Every save of a template is a new version
(1, 2, …), kept in `template_versions`: results name the version they were scored with,
and reviews are judged per version.

Alert rules and trackers belong to whoever made them: only they and admins change them.
A rule fires only on the calls its owner may see, and is shown only to them (and
admins); a tracker is counted only on the calls its owner may see, and shown to whoever
may see some of those calls. Those made before owners were kept, and the samples, are
everyone's to see and the admins' to change.
"""

from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, Field, create_model
from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError
from typing_extensions import TypedDict

from services.ingest.apidoc import IsoTime
from services.ingest.backoffice.accounts import Role, User
from services.ingest.intake.submission import require_allowed_link
from shared.alerts import AlertRule
from shared.errors import Conflict, Forbidden, InvalidRequest, NotFound
from shared.events import utcnow
from shared.mongo import (
    ALERT_RULES,
    BINDINGS,
    TABLES,
    TEMPLATE_VERSIONS,
    TEMPLATES,
    TRACKERS,
    USERS,
    Document,
)
from shared.people import owners_of
from shared.scripts import Binding, Stage, Table, Template, Tracker
from shared.url_policy import UrlPolicy
from shared.webhooks import new_webhook_secret

WEBHOOK_FIXED = "URL вебхука нельзя изменить после сохранения"


@dataclass(frozen=True)
class Kind:
    """One kind of catalog document."""

    collection: str
    model: type[BaseModel]
    id_prefix: str
    not_found: str
    owned: bool = False  # belongs to whoever made it (see the module's docstring)

    @functools.cached_property
    def view_model(self) -> type[BaseModel]:
        """What the API answers (`view`): the saved fields with their id and times."""
        fields: dict[str, Any] = {
            "id": (str, ...),
            "created_at": (IsoTime, ...),
            "updated_at": (IsoTime, ...),
        }
        if "webhook" in self.model.model_fields:
            fields["webhook"] = (WebhookView, ...)
        if self.model is Template:
            fields["version"] = (int, Field(ge=1, description="1 when created, one more a save"))
        if self.model is AlertRule:
            fields["webhook"] = (WebhookView | None, ...)
        if self.owned:
            fields["owner_id"] = (
                str | None,
                Field(
                    None,
                    description="Who made it: only they and admins change it; it fires (is "
                    "counted) on the calls they may see. null: everyone's, admins change it.",
                ),
            )
        return create_model(f"{self.model.__name__}View", __base__=self.model, **fields)


class WebhookView(BaseModel):
    """A saved webhook endpoint: its secret only for admins, that it is set for all."""

    url: str
    secret: Annotated[str | None, Field(description="`whsec_…`; null unless admin")]
    secret_set: bool


class TemplateVersion(TypedDict):
    version: int
    name: str
    stages: list[Stage]
    saved_at: IsoTime


class TemplateVersions(TypedDict):
    items: list[TemplateVersion]


TEMPLATE = Kind(TEMPLATES, Template, "tpl", "Шаблон скрипта не найден")
BINDING = Kind(BINDINGS, Binding, "bnd", "Привязка скрипта не найдена")
TABLE = Kind(TABLES, Table, "tbl", "Таблица не найдена")
TRACKER = Kind(TRACKERS, Tracker, "trk", "Словарь не найден", owned=True)
ALERT_RULE = Kind(ALERT_RULES, AlertRule, "alr", "Правило уведомлений не найдено", owned=True)
NOT_YOURS = "Это создал другой пользователь: изменить или удалить может он или администратор"
NOT_SHOWN = "Это относится к звонкам, которые вам не видны"


def may_change(kind: Kind, document: Document, viewer: User) -> bool:
    """Whether `viewer` may change or delete the document."""
    if not kind.owned or viewer.role is Role.ADMIN:
        return True
    return document.get("owner_id") == viewer.id


def _shown(kind: Kind, document: Document, viewer: User, owners: dict[str, User]) -> bool:
    owner = owners.get(document.get("owner_id") or "")
    if may_change(kind, document, viewer) or owner is None:
        return True
    return kind is TRACKER and viewer.sees_calls_of(owner)


async def _visible(
    db: AsyncDatabase[Document], kind: Kind, documents: list[Document], viewer: User
) -> list[Document]:
    """The documents `viewer` may see."""
    if not kind.owned:
        return documents
    owners = await owners_of(db, documents)
    return [d for d in documents if _shown(kind, d, viewer, owners)]


def view(document: Document, viewer: User) -> Document:
    """The API shape for `viewer`: `id` instead of `_id`, ISO times, and a webhook's
    signing secret only for those who may see it; others see that it is set."""
    shown = {key: value for key, value in document.items() if key != "_id"}
    for key in ("created_at", "updated_at"):
        if key in shown:
            shown[key] = shown[key].isoformat()
    if shown.get("webhook"):
        webhook = shown["webhook"]
        shown["webhook"] = {
            "url": webhook["url"],
            "secret": webhook["secret"] if viewer.sees_secrets else None,
            "secret_set": True,
        }
    return {"id": document["_id"], **shown}


async def list_all(db: AsyncDatabase[Document], kind: Kind, viewer: User) -> list[Document]:
    """Every document of a kind `viewer` may see, oldest first, as they see it."""
    documents = await db[kind.collection].find({}).sort("created_at", 1).to_list()
    return [view(document, viewer) for document in await _visible(db, kind, documents, viewer)]


async def names(db: AsyncDatabase[Document], kind: Kind, viewer: User) -> list[tuple[str, str]]:
    """The id and name of every document `viewer` may see, oldest first (what a form's
    select lists)."""
    found = db[kind.collection].find({}, {"name": 1, "owner_id": 1}).sort("created_at", 1)
    documents = await _visible(db, kind, await found.to_list(), viewer)
    return [(document["_id"], document["name"]) for document in documents]


async def get(db: AsyncDatabase[Document], kind: Kind, item_id: str, viewer: User) -> Document:
    """One document by id, if `viewer` may see it (403 if not)."""
    document = await db[kind.collection].find_one({"_id": item_id})
    if document is None:
        raise NotFound(kind.not_found)
    if not await _visible(db, kind, [document], viewer):
        raise Forbidden(NOT_SHOWN)
    return document


async def _changeable(db: AsyncDatabase[Document], kind: Kind, item_id: str, by: User) -> Document:
    document = await get(db, kind, item_id, by)
    if not may_change(kind, document, by):
        raise Forbidden(NOT_YOURS)
    return document


async def _check_references(db: AsyncDatabase[Document], item: BaseModel, by: User | None) -> None:
    """What the item names exists and, for trackers, is `by`'s to see (None: the
    system's own samples)."""
    if (
        isinstance(item, Binding)
        and await db[TEMPLATES].find_one({"_id": item.template_id}) is None
    ):
        raise InvalidRequest(
            "Шаблон скрипта не найден",
            details=[{"field": "template_id", "message": "нет шаблона с таким id"}],
        )
    if isinstance(item, Template):
        known = await _trackers_seen(db, item.tracker_ids(), by)
        missing = [
            {"field": f"stages.{s}.points.{p}.tracker_id", "message": "нет словаря с таким id"}
            for s, stage in enumerate(item.stages)
            for p, point in enumerate(stage.points)
            if point.tracker_id is not None and point.tracker_id not in known
        ]
        if missing:
            raise InvalidRequest("Словарь не найден", details=missing)
    if isinstance(item, AlertRule):
        await _check_alert_references(db, item, by)


async def _trackers_seen(db: AsyncDatabase[Document], ids: set[str], by: User | None) -> set[str]:
    found = await db[TRACKERS].find({"_id": {"$in": sorted(ids)}}, {"owner_id": 1}).to_list()
    if by is not None:
        found = await _visible(db, TRACKER, found, by)
    return {document["_id"] for document in found}


async def _check_alert_references(
    db: AsyncDatabase[Document], rule: AlertRule, by: User | None
) -> None:
    if rule.tracker_id is not None and not await _trackers_seen(db, {rule.tracker_id}, by):
        raise InvalidRequest(
            "Словарь не найден", details=[{"field": "tracker_id", "message": "Словарь не найден"}]
        )
    named: list[tuple[str, str, list[str | None], str]] = [
        ("template_id", TEMPLATES, [rule.template_id], "Шаблон скрипта не найден"),
        ("user_ids", USERS, [*rule.user_ids], "Пользователь не найден"),
    ]
    for field, collection, ids, message in named:
        wanted = {item_id for item_id in ids if item_id is not None}
        found = {d["_id"] async for d in db[collection].find({"_id": {"$in": sorted(wanted)}})}
        if wanted - found:
            raise InvalidRequest(message, details=[{"field": field, "message": message}])
    if by is not None and by.role is not Role.ADMIN and rule.emails:
        people = db[USERS].find({"email": {"$in": rule.emails}}, {"email": 1})
        outside = sorted(set(rule.emails) - {d["email"] async for d in people})
        if outside:
            message = (
                "Адреса не пользователей системы может указать только администратор: "
                + ", ".join(outside)
            )
            raise InvalidRequest(message, details=[{"field": "emails", "message": message}])


def _with_webhook_secret(
    fields: Document, previous: Document | None, policy: UrlPolicy
) -> Document:
    if not fields.get("webhook"):
        return fields
    url = fields["webhook"]["url"]
    if previous is not None and previous.get("webhook"):
        if previous["webhook"]["url"] != url:
            raise InvalidRequest(
                WEBHOOK_FIXED, details=[{"field": "webhook.url", "message": WEBHOOK_FIXED}]
            )
        return {**fields, "webhook": previous["webhook"]}
    require_allowed_link(policy, url, "webhook.url")  # only a new URL: a saved one is fixed
    return {**fields, "webhook": {"url": url, "secret": new_webhook_secret()}}


async def create(
    db: AsyncDatabase[Document],
    kind: Kind,
    item: BaseModel,
    *,
    policy: UrlPolicy,
    by: User | None = None,
) -> Document:
    """Store a new validated document and return it, `by`'s if of an owned kind (None:
    the system's samples, everyone's); webhooks (allowed by the URL policy) get their
    secret now."""
    await _check_references(db, item, by)
    now = utcnow()
    document = {
        "_id": f"{kind.id_prefix}_{secrets.token_hex(6)}",
        **_with_webhook_secret(item.model_dump(mode="json"), None, policy),
        **({"owner_id": by.id} if kind.owned and by is not None else {}),
        "created_at": now,
        "updated_at": now,
    }
    if kind is TEMPLATE:
        document["version"] = 1
    try:
        await db[kind.collection].insert_one(document)
    except DuplicateKeyError as exc:  # a 48-bit id collision: let the client retry
        raise Conflict("Повторите запрос") from exc
    await _keep_version(db, kind, document)
    return document


async def _keep_version(db: AsyncDatabase[Document], kind: Kind, document: Document) -> None:
    """A template's saved version, as it was (saving the same version again changes
    nothing: a retried save)."""
    if kind is not TEMPLATE:
        return
    version = {
        "_id": f"{document['_id']}@{document['version']}",
        "template_id": document["_id"],
        "version": document["version"],
        "name": document["name"],
        "stages": document["stages"],
        "saved_at": document["updated_at"],
    }
    await db[TEMPLATE_VERSIONS].replace_one({"_id": version["_id"]}, version, upsert=True)


async def versions(
    db: AsyncDatabase[Document], template_id: str, viewer: User
) -> list[TemplateVersion]:
    """Every saved version of a template, newest first."""
    await get(db, TEMPLATE, template_id, viewer)
    found = db[TEMPLATE_VERSIONS].find({"template_id": template_id}).sort("version", -1)
    return [
        {
            "version": version["version"],
            "name": version["name"],
            "stages": version["stages"],
            "saved_at": version["saved_at"].isoformat(),
        }
        for version in await found.to_list()
    ]


async def replace(
    db: AsyncDatabase[Document],
    kind: Kind,
    item_id: str,
    item: BaseModel,
    *,
    policy: UrlPolicy,
    by: User,
) -> Document:
    """Replace a document's fields (webhook URL unchanged, secret kept, owner kept) if
    `by` may change it; the stored document comes back."""
    previous = await _changeable(db, kind, item_id, by)
    await _check_references(db, item, by)
    fields: dict[str, Any] = _with_webhook_secret(item.model_dump(mode="json"), previous, policy)
    fields["updated_at"] = utcnow()
    update: Document = {"$set": fields}
    if kind is TEMPLATE:  # saved before versions were kept: that was version 1
        update["$inc" if "version" in previous else "$set"] = {
            "version": 1 if "version" in previous else 2
        }
    document = await db[kind.collection].find_one_and_update(
        {"_id": item_id}, update, return_document=ReturnDocument.AFTER
    )
    if document is None:
        raise NotFound(kind.not_found)
    await _keep_version(db, kind, document)
    return document


async def delete(db: AsyncDatabase[Document], kind: Kind, item_id: str, *, by: User) -> None:
    """Delete a document if `by` may change it; a template still bound to a funnel, or a
    tracker still listened with, cannot go."""
    await _changeable(db, kind, item_id, by)
    if kind is TEMPLATE and await db[BINDINGS].find_one({"template_id": item_id}) is not None:
        raise Conflict("Шаблон используется в привязках: сначала удалите их")
    in_use = {"stages.points.tracker_id": item_id}
    if kind is TRACKER and await db[TEMPLATES].find_one(in_use) is not None:
        raise Conflict("Словарь используется в шаблонах скриптов: сначала уберите его из пунктов")
    if kind is TRACKER and await db[ALERT_RULES].find_one({"tracker_id": item_id}) is not None:
        raise Conflict("Словарь используется в правилах уведомлений: сначала измените их")
    result = await db[kind.collection].delete_one({"_id": item_id})
    if result.deleted_count == 0:
        raise NotFound(kind.not_found)
