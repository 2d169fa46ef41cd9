"""MongoDB access through PyMongo's async API, and every index the system relies on."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]

CALLS = "calls"
CALL_DETAILS = "call_details"
SETTINGS = "settings"
USERS = "users"
SESSIONS = "sessions"
TEMPLATES = "templates"
TEMPLATE_VERSIONS = "template_versions"
BINDINGS = "bindings"
TABLES = "tables"
TRACKERS = "trackers"
DELIVERIES = "deliveries"
ENDPOINTS = "endpoints"
LOGIN_FAILURES = "login_failures"
WEB_SESSIONS = "web_sessions"
COMMENTS = "comments"
DISPUTES = "disputes"
REVIEWS = "reviews"
REVIEW_SAMPLES = "review_samples"
ROLLUPS = "call_rollups"
ROLLUP_WEEKS = "call_rollups_weekly"
SCORE_VALUES = "score_values"
VOICEPRINTS = "voiceprints"
SEARCH_POSTINGS = "search_postings"
SEARCH_CALLS = "search_calls"
SEARCH_TERMS = "search_terms"
ANALYZER_WORKERS = "analyzer_workers"
ALERT_RULES = "alert_rules"
ALERTS = "alerts"
NOTIFICATIONS = "notifications"
DIGEST_ITEMS = "alert_digest_items"
AUDIO_BUCKET = "audio"
AUDIO_FILES = f"{AUDIO_BUCKET}.files"
AUDIO_CHUNKS = f"{AUDIO_BUCKET}.chunks"

INDEXES: dict[str, list[IndexModel]] = {
    CALLS: [
        # The one place that decides duplicates: a second insert of a call_id fails.
        IndexModel([("call_id", ASCENDING)], unique=True, name="call_id_unique"),
        IndexModel(
            [("outbox_pending", ASCENDING)],
            partialFilterExpression={"outbox_pending": True},
            name="outbox_pending",
        ),
        IndexModel([("status", ASCENDING), ("received_at", DESCENDING)], name="status_received"),
        IndexModel([("received_at", DESCENDING)], name="received_at"),
        # A manager's (or a team's) calls by date.
        IndexModel([("manager_id", ASCENDING), ("received_at", DESCENDING)], name="manager"),
        # The score sorts: one score's calls by date (`services/ingest/backoffice/seek.py`).
        IndexModel([("score.percent", ASCENDING), ("received_at", DESCENDING)], name="score"),
        # Sparse, not partial: SecantusDB does not see that `analysis.state` equal to a
        # value implies it exists, and scanned every call for every job claimed.
        IndexModel(
            [("analysis.state", ASCENDING), ("analysis.lease_until", ASCENDING)],
            sparse=True,
            name="analysis_jobs_sparse",
        ),
        # The calls that said a tracker, by date (the calls filter, the dashboard).
        IndexModel([("trackers_hit", ASCENDING), ("received_at", DESCENDING)], name="trackers"),
        # Calls whose trackers people asked to count again (few: the others lack the field).
        IndexModel([("retag", ASCENDING)], sparse=True, name="retag"),
        # Analysed calls not yet in the search index (few: the others lack the field).
        IndexModel([("search_pending", ASCENDING)], sparse=True, name="search_pending"),
        # The calls waiting for a blind review, by date (few: the others lack the field).
        IndexModel(
            [("blind_review.state", ASCENDING), ("received_at", DESCENDING)],
            sparse=True,
            name="blind_review",
        ),
    ],
    CALL_DETAILS: [IndexModel([("task_id", ASCENDING)], name="task")],
    # A word's lists of calls by day (`shared/search_index.py`); new lemmas by when.
    SEARCH_POSTINGS: [IndexModel([("key", ASCENDING), ("day", ASCENDING)], name="key_day")],
    SEARCH_TERMS: [IndexModel([("at", ASCENDING)], name="at")],
    USERS: [IndexModel([("email", ASCENDING)], unique=True, name="email_unique")],
    BINDINGS: [IndexModel([("template_id", ASCENDING)], name="template")],
    TEMPLATE_VERSIONS: [
        IndexModel([("template_id", ASCENDING), ("version", DESCENDING)], name="template")
    ],
    DELIVERIES: [
        IndexModel([("task_id", ASCENDING), ("status", ASCENDING)], name="task_status"),
        IndexModel([("status", ASCENDING), ("created_at", DESCENDING)], name="status_created"),
        IndexModel([("url", ASCENDING), ("created_at", DESCENDING)], name="endpoint"),
        IndexModel([("manager_id", ASCENDING), ("created_at", DESCENDING)], name="manager"),
    ],
    SESSIONS: [IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expiry")],
    WEB_SESSIONS: [
        IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expiry"),
        IndexModel([("user_id", ASCENDING)], name="user"),
    ],
    LOGIN_FAILURES: [IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expiry")],
    COMMENTS: [IndexModel([("task_id", ASCENDING), ("at", ASCENDING)], name="task")],
    # People's verdicts the trust page counts, by when they were given.
    REVIEWS: [
        IndexModel([("at", DESCENDING)], name="at"),
        IndexModel([("task_id", ASCENDING)], name="task"),
    ],
    DISPUTES: [
        # One open dispute per stage: the key is there while it is open.
        IndexModel([("open_key", ASCENDING)], unique=True, sparse=True, name="open_key"),
        IndexModel([("status", ASCENDING), ("_id", DESCENDING)], name="status"),
        IndexModel([("manager_id", ASCENDING), ("_id", DESCENDING)], name="manager"),
        IndexModel([("task_id", ASCENDING)], name="task"),
    ],
    # The alert log, newest first, of everyone or of a team's managers.
    ALERTS: [
        IndexModel([("at", DESCENDING)], name="at"),
        IndexModel([("manager_id", ASCENDING), ("at", DESCENDING)], name="manager"),
    ],
    # A person's in-app notifications, the unread ones counted in the top bar.
    NOTIFICATIONS: [
        IndexModel([("user_id", ASCENDING), ("read", ASCENDING), ("at", DESCENDING)], name="user")
    ],
    # Alerts waiting for their daily digest (the sent ones lose the field).
    DIGEST_ITEMS: [IndexModel([("due_at", ASCENDING)], sparse=True, name="due")],
    ROLLUPS: [IndexModel([("day", ASCENDING)], name="day")],
    ROLLUP_WEEKS: [IndexModel([("week", ASCENDING)], name="week")],
    # Records of analyzers killed without a clean stop are forgotten after a day.
    ANALYZER_WORKERS: [
        IndexModel([("seen_at", ASCENDING)], expireAfterSeconds=86400, name="forgotten")
    ],
    # The GridFS specification's indexes, with PyMongo's default names so its own
    # GridFS code finds them already there.
    AUDIO_CHUNKS: [IndexModel([("files_id", ASCENDING), ("n", ASCENDING)], unique=True)],
    AUDIO_FILES: [IndexModel([("filename", ASCENDING), ("uploadDate", ASCENDING)])],
}


# Indexes an earlier version made that nothing uses now, dropped at start.
RETIRED_INDEXES: dict[str, list[str]] = {CALLS: ["analysis_jobs"], ROLLUPS: ["day_manager"]}


def connect_mongo(url: str, *, timeout_s: float = 5.0) -> AsyncMongoClient[Document]:
    """Create a client; it connects lazily, so this never blocks."""
    return AsyncMongoClient(
        url,
        tz_aware=True,
        serverSelectionTimeoutMS=int(timeout_s * 1000),
        connectTimeoutMS=int(timeout_s * 1000),
        appname="cifrovoy-rop",
    )


def database(client: AsyncMongoClient[Document]) -> AsyncDatabase[Document]:
    """Return the database named in the connection string."""
    return client.get_default_database()


async def ensure_indexes(db: AsyncDatabase[Document]) -> None:
    """Create every index (idempotent); run by each service at start."""
    for collection, names in RETIRED_INDEXES.items():
        existing = await db[collection].index_information()
        for name in set(names) & set(existing):
            await db[collection].drop_index(name)
    for collection, indexes in INDEXES.items():
        await db[collection].create_indexes(indexes)


async def ping(db: AsyncDatabase[Document]) -> None:
    """Round-trip to the server; raises when it cannot be reached."""
    await db.command("ping")


def all_of(*conditions: Document) -> Document:
    """Conditions that must all hold, as one filter with its fields at the top, in the
    order given: SecantusDB plans no index for a filter under a top-level `$and` (it
    scans the collection), and tries the fields in order, so the most selective indexed
    field goes first. A field two conditions restrict is combined under `$and`."""
    merged: Document = {}
    again: list[Document] = []
    for condition in conditions:
        for field, value in condition.items():
            if field in merged:
                again.append({field: value})
            else:
                merged[field] = value
    if again:
        merged["$and"] = again
    return merged


# SecantusDB matches `$in` against every value for every document the index gives, so a
# long list costs its square: it is asked for in short ones.
IN_CHUNK = 25


async def find_in(
    collection: AsyncCollection[Document],
    field: str,
    values: Sequence[Any],
    *,
    where: Document | None = None,
    projection: Document | None = None,
) -> AsyncIterator[Document]:
    """The documents whose `field` is one of `values` (and that match `where`), asked for
    IN_CHUNK values at a time."""
    for start in range(0, len(values), IN_CHUNK):
        chunk = list(values[start : start + IN_CHUNK])
        async for document in collection.find({field: {"$in": chunk}, **(where or {})}, projection):
            yield document


def calls(db: AsyncDatabase[Document]) -> AsyncCollection[Document]:
    """The tasks collection: one document per accepted call, keyed by task_id."""
    return db[CALLS]
