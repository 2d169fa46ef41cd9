"""The transcript search index: which calls said a word, by day, portable to MongoDB and
SecantusDB alike (no `$text`).

An analysed call's words are kept as their lemmas (`shared/words.py`):

- **postings**, one list per lemma and UTC day of the calls received then that said it
  (`search_postings`, id `lemma|YYYY-MM-DD`), each with who said it (bits: 1 the
  manager, 2 the client), where in the call (positions, so a phrase is its words one
  after another), when the call was received and whose it is — an entry is the call's
  id `t` and the rest as compact JSON text `x`, `[received_ms, manager_id, speakers,
  positions]`: two values for the database to handle instead of dozens, parsed a list
  at a time by the reader, so a word every call says costs little to read — a query reads one
  document per word and day and filters the period, the speaker, the viewer's
  visibility and a phrase without touching the calls; adding a call writes each of its
  words' lists by id and reads nothing (a common word's list of a day of a big team's
  calls is a few hundred KiB, far below a document's limit);
- **the record of a call** (`search_calls`): which lists hold it.

Indexing is idempotent and safe to interrupt: the record names every list the call may
be in before any is written, and a call is taken out of those first. The analyzer
marks a call `search_pending` in the same write as its results and clears it once
indexed, so a crash in between is indexed again (`index_pending`); calls analysed before
the index existed are marked once (`mark_unindexed`). Words that start a list are also
written to `search_terms`, the vocabulary a query's words are matched against with ASR
slips forgiven (`Vocabulary`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError
from rapidfuzz import fuzz, process

from shared import call_details
from shared.events import utcnow
from shared.mongo import (
    SEARCH_CALLS,
    SEARCH_POSTINGS,
    SEARCH_TERMS,
    SETTINGS,
    Document,
    calls,
    find_in,
)
from shared.words import FUZZY_MIN_SCORE, WORD, aspect_partners, lemma, slip_tolerant

SPEAKER_BITS = {"manager": 1, "client": 2}
BOTH = 3
# The settings document saying the calls analysed before this index format were marked
# (the format before it, entries of separate fields, is dropped then).
MARKED_ID = "search_index_2"
PENDING_BATCH = 100
WRITE_BATCH = 1000
DUPLICATE_KEY = 11000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def millis(moment: datetime) -> int:
    return round((moment - EPOCH) / timedelta(milliseconds=1))


@dataclass(frozen=True)
class Place:
    """Where a word of a transcript is: its position (as postings keep it, speaker bits
    included), its line and the index of the ASR's word it is part of ("кто-то," is one
    word, two parts)."""

    position: int
    line: int
    word: int
    part: str


def places(transcript: Sequence[Document]) -> Iterator[Place]:
    """Every word of a transcript, numbered: a position's two low bits say who said it
    (`SPEAKER_BITS`); a line's first word is two positions after the last of the line
    before, so a phrase never runs across lines."""
    position = 0
    for number, line in enumerate(transcript):
        bits = SPEAKER_BITS.get(line["speaker"], BOTH)
        for index, text in enumerate(_words(line)):
            for part in WORD.findall(text):
                yield Place(position << 2 | bits, number, index, part)
                position += 1
        position += 1


def said_words(transcript: Sequence[Document]) -> dict[str, list[int]]:
    """Each lemma of a transcript with its positions."""
    said: dict[str, list[int]] = {}
    for place in places(transcript):
        said.setdefault(lemma(place.part), []).append(place.position)
    return said


def _words(line: Document) -> list[str]:
    return [word[0] for word in line.get("words") or []] or [line.get("text") or ""]


def _speakers(positions: Iterable[int]) -> int:
    bits = 0
    for position in positions:
        bits |= position & BOTH
    return bits


@dataclass(frozen=True)
class Indexed:
    """A call as the index knows it."""

    task_id: str
    received_at: datetime
    manager_id: str | None
    transcript: Sequence[Document]


async def index_calls(db: AsyncDatabase[Document], batch: Sequence[Indexed]) -> None:
    """Put these calls in the index in place of what it held of them, then clear their
    `search_pending` mark."""
    if not batch:
        return
    ids = [call.task_id for call in batch]
    keys = {call.task_id: said_words(call.transcript) for call in batch}
    before = {
        record["_id"]: record
        async for record in find_in(db[SEARCH_CALLS], "_id", ids, projection={"lists": 1})
    }
    # First name every list that may hold a call, so an interrupted try is undone.
    await db[SEARCH_CALLS].bulk_write(
        [
            UpdateOne(
                {"_id": call.task_id},
                {
                    "$set": {
                        "lists": sorted(
                            {*_lists(call, keys), *before.get(call.task_id, {}).get("lists", [])}
                        )
                    }
                },
                upsert=True,
            )
            for call in batch
        ]
    )
    await _take_out(db, list(before.values()))
    await _add_postings(db, batch, keys)
    await db[SEARCH_CALLS].bulk_write(
        [
            UpdateOne(
                {"_id": call.task_id},
                {
                    "$set": {
                        "lists": _lists(call, keys),
                        "received_ms": millis(call.received_at),
                    }
                },
            )
            for call in batch
        ]
    )
    await calls(db).bulk_write(
        [
            UpdateOne({"_id": task_id, "search_pending": True}, {"$unset": {"search_pending": ""}})
            for task_id in ids
        ]
    )


def _list_id(key: str, received_at: datetime) -> str:
    """A word's list of the calls received on one UTC day."""
    return f"{key}|{received_at.astimezone(UTC):%Y-%m-%d}"


def _lists(call: Indexed, keys: dict[str, dict[str, list[int]]]) -> list[str]:
    return [_list_id(key, call.received_at) for key in keys[call.task_id]]


async def _take_out(db: AsyncDatabase[Document], records: Sequence[Document]) -> None:
    """Remove these calls from the lists their records name."""
    pulls: dict[str, list[str]] = {}
    for record in records:
        for list_id in record.get("lists") or []:
            pulls.setdefault(list_id, []).append(record["_id"])
    updates = [
        UpdateOne({"_id": list_id}, {"$pull": {"calls": {"t": {"$in": task_ids}}}})
        for list_id, task_ids in pulls.items()
    ]
    for start in range(0, len(updates), WRITE_BATCH):
        await db[SEARCH_POSTINGS].bulk_write(updates[start : start + WRITE_BATCH], ordered=False)


async def _add_postings(
    db: AsyncDatabase[Document], batch: Sequence[Indexed], keys: dict[str, dict[str, list[int]]]
) -> None:
    entries: dict[str, list[Document]] = {}
    for call in batch:
        received_ms = millis(call.received_at)
        for key, positions in keys[call.task_id].items():
            said = [received_ms, call.manager_id, _speakers(positions), positions]
            entry = {"t": call.task_id, "x": json.dumps(said, separators=(",", ":"))}
            entries.setdefault(_list_id(key, call.received_at), []).append(entry)
    pushes = list(entries.items())
    started: set[str] = set()  # words that began a list: perhaps new to the vocabulary
    for start in range(0, len(pushes), WRITE_BATCH):
        chunk = pushes[start : start + WRITE_BATCH]
        result = await db[SEARCH_POSTINGS].bulk_write(
            [
                UpdateOne(
                    {"_id": list_id},
                    {
                        "$push": {"calls": {"$each": listed}},
                        "$setOnInsert": {
                            "key": list_id.rpartition("|")[0],
                            "day": list_id.rpartition("|")[2],
                        },
                    },
                    upsert=True,
                )
                for list_id, listed in chunk
            ],
            ordered=False,
        )
        started.update(chunk[index][0].rpartition("|")[0] for index in result.upserted_ids or {})
    await _learn_terms(db, started)


async def _learn_terms(db: AsyncDatabase[Document], terms: set[str]) -> None:
    """Add the words the vocabulary lacks (those it has are refused as duplicates)."""
    if not terms:
        return
    now = utcnow()
    try:
        await db[SEARCH_TERMS].insert_many(
            [{"_id": term, "at": now} for term in sorted(terms)], ordered=False
        )
    except BulkWriteError as exc:
        if any(error["code"] != DUPLICATE_KEY for error in exc.details["writeErrors"]):
            raise


async def index_pending(db: AsyncDatabase[Document], limit: int = PENDING_BATCH) -> int:
    """Index calls marked `search_pending` (from their stored transcripts); how many."""
    pending = await (
        calls(db)
        .find(
            {"search_pending": True},
            {"received_at": 1, "manager_id": 1, "details_id": 1},
        )
        .limit(limit)
        .to_list()
    )
    batch = [
        Indexed(
            task_id=call["_id"],
            received_at=call["received_at"],
            manager_id=call.get("manager_id"),
            transcript=(await call_details.of(db, call, {"transcript": 1})).get("transcript") or [],
        )
        for call in pending
    ]
    await index_calls(db, batch)
    return len(batch)


async def mark_unindexed(db: AsyncDatabase[Document]) -> None:
    """Mark, once, the calls analysed before the index (in this format) existed, for
    `index_pending`; what an earlier format wrote goes."""
    if await db[SETTINGS].find_one({"_id": MARKED_ID}) is not None:
        return
    await db[SEARCH_POSTINGS].delete_many({})
    await db[SEARCH_CALLS].delete_many({})
    await calls(db).update_many(
        {"details_id": {"$exists": True}}, {"$set": {"search_pending": True}}
    )
    await db[SETTINGS].replace_one({"_id": MARKED_ID}, {"_id": MARKED_ID}, upsert=True)


@dataclass(frozen=True)
class Posting:
    """A call that said a word: when it was received, whose it is, who said the word and
    where (positions as `said_words` gives them)."""

    received_ms: int
    manager_id: str | None
    speakers: int
    positions: tuple[int, ...]


async def postings(
    db: AsyncDatabase[Document], keys: Iterable[str], first: date, last: date
) -> dict[str, Posting]:
    """The calls of these UTC days that said any of these lemmas, by task id."""
    found: dict[str, Posting] = {}
    cursor = find_in(
        db[SEARCH_POSTINGS],
        "key",
        sorted(set(keys)),
        where={"day": {"$gte": first.isoformat(), "$lte": last.isoformat()}},
        projection={"calls": 1, "_id": 0},
    )
    async for bucket in cursor:
        entries = bucket["calls"]
        # One parse of the whole list: the rest of each entry is JSON text.
        rest = json.loads("[" + ",".join(entry["x"] for entry in entries) + "]")
        for entry, (received_ms, manager_id, speakers, positions) in zip(
            entries, rest, strict=True
        ):
            seen = found.get(entry["t"])
            if seen is not None:  # said as another of the lemmas too
                speakers, positions = speakers | seen.speakers, [*seen.positions, *positions]
            found[entry["t"]] = Posting(received_ms, manager_id, speakers, tuple(positions))
    return found


def phrase_starts(words: Sequence[Posting], speakers: int) -> list[int]:
    """Where one call's postings of a phrase's words (in order) have them one after
    another, said by one of these speakers: the positions of its first words (without
    the speaker bits), in order."""
    first, *rest = words
    later = [{position >> 2 for position in posting.positions} for posting in rest]
    return sorted(
        start >> 2
        for start in first.positions
        if start & speakers
        and all((start >> 2) + offset in positions for offset, positions in enumerate(later, 1))
    )


@dataclass
class Vocabulary:
    """The lemmas the index holds, kept in memory and refreshed now and then, to find the
    ones a query's word may have been heard as (a one-letter ASR slip)."""

    refresh_s: float = 30.0
    _terms: set[str] = field(default_factory=set)
    _long: list[str] = field(default_factory=list)
    _since: datetime | None = None
    _checked: float = float("-inf")

    async def variants(self, db: AsyncDatabase[Document], word: str) -> set[str]:
        """The word, the other verbs of its aspect pair, and the indexed lemmas similar to it."""
        await self._refresh(db)
        forms = {word, *aspect_partners(word)}
        if not slip_tolerant(word):
            return forms
        close = process.extract(
            word, self._long, scorer=fuzz.ratio, score_cutoff=FUZZY_MIN_SCORE, limit=None
        )
        return forms | {term for term, _, _ in close}

    async def _refresh(self, db: AsyncDatabase[Document]) -> None:
        if time.monotonic() - self._checked < self.refresh_s:
            return
        self._checked = time.monotonic()
        # Terms written meanwhile by analyzers whose clocks run a little behind are read too.
        query = {} if self._since is None else {"at": {"$gte": self._since - timedelta(minutes=5)}}
        started = utcnow()
        added = [term["_id"] async for term in db[SEARCH_TERMS].find(query, {"_id": 1})]
        fresh = [term for term in added if term not in self._terms]
        self._terms.update(fresh)
        self._long.extend(term for term in fresh if slip_tolerant(term))
        self._since = started
