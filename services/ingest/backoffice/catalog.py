"""Script templates, bindings, analytics tables, trackers and alert rules: validated
documents with stable ids.

Bindings and tables own a webhook endpoint whose secret is generated when it is
first saved; its URL cannot change afterwards (the seed: "URL для webhook-ов нельзя
изменить после настройки"). A template in use by a binding cannot be deleted, nor a
tracker a template's point listens with. Every save of a template is a new version
(1, 2, …), kept in `template_versions`: results name the version they were scored with,
and reviews are judged per version. An alert rule belongs to whoever saved it last: it
fires only on the calls they may see.
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
from services.ingest.backoffice.accounts import User
from services.ingest.intake.submission import require_allowed_link
from shared.alerts import AlertRule
from shared.errors import Conflict, InvalidRequest, NotFound
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
            fields["owner_id"] = (
                str,
                Field(description="Who saved it last: it fires on the calls they may see."),
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
TRACKER = Kind(TRACKERS, Tracker, "trk", "Словарь не найден")
ALERT_RULE = Kind(ALERT_RULES, AlertRule, "alr", "Правило уведомлений не найдено")


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
    """Every document of a kind, oldest first, as `viewer` sees them."""
    documents = await db[kind.collection].find({}).sort("created_at", 1).to_list()
    return [view(document, viewer) for document in documents]


async def names(db: AsyncDatabase[Document], kind: Kind) -> list[tuple[str, str]]:
    """Every document's id and name, oldest first (what a form's select lists)."""
    found = db[kind.collection].find({}, {"name": 1}).sort("created_at", 1)
    return [(document["_id"], document["name"]) for document in await found.to_list()]


async def get(db: AsyncDatabase[Document], kind: Kind, item_id: str) -> Document:
    """One document by id."""
    document = await db[kind.collection].find_one({"_id": item_id})
    if document is None:
        raise NotFound(kind.not_found)
    return document


async def _check_references(db: AsyncDatabase[Document], item: BaseModel) -> None:
    if (
        isinstance(item, Binding)
        and await db[TEMPLATES].find_one({"_id": item.template_id}) is None
    ):
        raise InvalidRequest(
            "Шаблон скрипта не найден",
            details=[{"field": "template_id", "message": "нет шаблона с таким id"}],
        )
    if isinstance(item, Template):
        named = item.tracker_ids()
        known = {t["_id"] async for t in db[TRACKERS].find({"_id": {"$in": sorted(named)}})}
        missing = [
            {"field": f"stages.{s}.points.{p}.tracker_id", "message": "нет словаря с таким id"}
            for s, stage in enumerate(item.stages)
            for p, point in enumerate(stage.points)
            if point.tracker_id is not None and point.tracker_id not in known
        ]
        if missing:
            raise InvalidRequest("Словарь не найден", details=missing)
    if isinstance(item, AlertRule):
        await _check_alert_references(db, item)


async def _check_alert_references(db: AsyncDatabase[Document], rule: AlertRule) -> None:
    named: list[tuple[str, str, list[str | None], str]] = [
        ("template_id", TEMPLATES, [rule.template_id], "Шаблон скрипта не найден"),
        ("tracker_id", TRACKERS, [rule.tracker_id], "Словарь не найден"),
        ("user_ids", USERS, [*rule.user_ids], "Пользователь не найден"),
    ]
    for field, collection, ids, message in named:
        wanted = {item_id for item_id in ids if item_id is not None}
        found = {d["_id"] async for d in db[collection].find({"_id": {"$in": sorted(wanted)}})}
        if wanted - found:
            raise InvalidRequest(message, details=[{"field": field, "message": message}])


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


def _saved_by(kind: Kind, by: User | None) -> Document:
    return {"owner_id": by.id} if kind is ALERT_RULE and by is not None else {}


async def create(
    db: AsyncDatabase[Document],
    kind: Kind,
    item: BaseModel,
    *,
    policy: UrlPolicy,
    by: User | None = None,
) -> Document:
    """Store a new validated document and return it; webhooks (allowed by the URL
    policy) get their secret now."""
    await _check_references(db, item)
    now = utcnow()
    document = {
        "_id": f"{kind.id_prefix}_{secrets.token_hex(6)}",
        **_with_webhook_secret(item.model_dump(mode="json"), None, policy),
        **_saved_by(kind, by),
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


async def versions(db: AsyncDatabase[Document], template_id: str) -> list[TemplateVersion]:
    """Every saved version of a template, newest first."""
    await get(db, TEMPLATE, template_id)
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
    by: User | None = None,
) -> Document:
    """Replace a document's fields (webhook URL unchanged, secret kept); the stored
    document comes back."""
    previous = await get(db, kind, item_id)
    await _check_references(db, item)
    fields: dict[str, Any] = _with_webhook_secret(item.model_dump(mode="json"), previous, policy)
    fields |= _saved_by(kind, by)
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


async def delete(db: AsyncDatabase[Document], kind: Kind, item_id: str) -> None:
    """Delete a document; a template still bound to a funnel cannot go."""
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
