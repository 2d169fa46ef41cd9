"""Search over what was said: the calls whose transcripts hold a word or a phrase (Russian
word forms and one-letter ASR slips match, as in script phrases), optionally said by the
manager or the client, within the calls filters and what the viewer may see; each with
the lines that match, as snippets with their time.

The index (`shared/search_index.py`) answers the words: the calls of the period that
said each one, by whom, and whose they are. A phrase is then checked, in order, on those
calls' lemmas; the other filters (funnel, status, score…) on their documents. Snippets
are cut from the transcripts of one page only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pymongo.asynchronous.database import AsyncDatabase
from typing_extensions import TypedDict

from services.ingest.backoffice.accounts import User
from services.ingest.backoffice.calls import ROW_FIELDS, CallRow, row_view
from services.ingest.backoffice.filters import MAX_PER_PAGE, CallFilters, Position
from services.ingest.intake.submission import invalid_fields
from shared import call_details, search_index
from shared.mongo import Document, calls, find_in
from shared.search_index import SPEAKER_BITS, Vocabulary
from shared.words import WORD, lemmas

MAX_WORDS = 8
PER_PAGE = 20
SNIPPETS_PER_CALL = 3
CONTEXT_WORDS = 8  # shown either side of a match
EXPORT_LIMIT = 10_000
EXPORT_BATCH = 100
ATTACHED = frozenset(",.!?;:%)»'")
SPEAKERS = {"any": search_index.BOTH, **SPEAKER_BITS}


class SearchFilters(CallFilters):
    """The calls filters, what to look for, and who must have said it."""

    q: str = Field(
        "",
        max_length=200,
        description=f"A word or a phrase (up to {MAX_WORDS} words, in this order)",
    )
    speaker: Literal["any", "manager", "client"] = "any"
    sort: Literal["new", "old"] = "new"
    per_page: int = Field(PER_PAGE, ge=1, le=MAX_PER_PAGE)  # each call with its snippets

    @field_validator("q")
    @classmethod
    def _few_words(cls, value: str) -> str:
        if len(WORD.findall(value)) > MAX_WORDS:
            raise ValueError(f"не больше {MAX_WORDS} слов")
        return value

    @property
    def words(self) -> tuple[str, ...]:
        """The lemmas looked for, in order."""
        return lemmas(self.q)

    def narrows_calls(self) -> bool:
        """Whether a filter needs the calls' own documents (the index knows the period and
        the manager)."""
        return bool(
            self.stage_id
            or self.deal_stage_id
            or self.status
            or self.client
            or self.roles
            or self.tracker
            or self.score_range()
        )


class Snippet(TypedDict):
    """A line that matches: the words found, with some of the line around them."""

    speaker: str
    start_s: Annotated[float, Field(description="When the words found begin")]
    before: str
    hit: str
    after: str


class SearchRow(CallRow):
    hits: Annotated[int, Field(description="Places in the call where the words were said")]
    snippets: list[Snippet]


class SearchPage(TypedDict):
    items: list[SearchRow]
    total: Annotated[int, Field(description="Calls found, on every page")]
    per_page: int
    next: Annotated[str | None, Field(description="`after` for the next page; null on the last")]


@dataclass(frozen=True)
class Found:
    """A call that matches, in list order."""

    received_ms: int
    task_id: str


@dataclass(frozen=True)
class Matches:
    """The calls that match, in list order, and each word's postings (of those calls
    and maybe others), which say where in each call the words were said."""

    calls: list[Found]
    said: list[dict[str, search_index.Posting]]
    speakers: int

    def starts(self, task_id: str) -> list[int]:
        """Where in the call the words begin, in order."""
        return search_index.phrase_starts([words[task_id] for words in self.said], self.speakers)


async def search(
    db: AsyncDatabase[Document], vocabulary: Vocabulary, viewer: User, filters: SearchFilters
) -> SearchPage:
    """One page of the calls that said it, from where the filters say it starts."""
    matches = await _found(db, viewer, filters, await _alternatives(db, vocabulary, filters))
    found = matches.calls
    start = 0
    if filters.start is not None:
        position = Found(search_index.millis(filters.start.received_at), filters.start.task_id)
        start = next(
            (index for index, call in enumerate(found) if _after(call, position, filters)),
            len(found),
        )
    page = found[start : start + filters.per_page]
    rows = await _rows(db, [call.task_id for call in page], matches)
    has_more = start + filters.per_page < len(found)
    return {
        "items": rows,
        "total": len(found),
        "per_page": filters.per_page,
        "next": _position(page[-1]).encode() if has_more else None,
    }


async def all_results(
    db: AsyncDatabase[Document], vocabulary: Vocabulary, viewer: User, filters: SearchFilters
) -> AsyncIterator[SearchRow]:
    """Every call found (up to EXPORT_LIMIT) in list order, with snippets, for the export;
    a bad query is refused here, before the export starts."""
    matches = await _found(db, viewer, filters, await _alternatives(db, vocabulary, filters))
    found = matches.calls[:EXPORT_LIMIT]

    async def rows() -> AsyncIterator[SearchRow]:
        for start in range(0, len(found), EXPORT_BATCH):
            ids = [call.task_id for call in found[start : start + EXPORT_BATCH]]
            for row in await _rows(db, ids, matches):
                yield row

    return rows()


def _position(call: Found) -> Position:
    return Position(search_index.EPOCH + timedelta(milliseconds=call.received_ms), call.task_id)


def _after(call: Found, position: Found, filters: SearchFilters) -> bool:
    key, edge = (call.received_ms, call.task_id), (position.received_ms, position.task_id)
    return key < edge if filters.newest_first else key > edge


async def _alternatives(
    db: AsyncDatabase[Document], vocabulary: Vocabulary, filters: SearchFilters
) -> list[set[str]]:
    """Each word looked for as the lemmas it may have been heard as."""
    if not filters.words:
        raise invalid_fields([{"field": "q", "message": "введите слово или фразу"}])
    return [await vocabulary.variants(db, word) for word in filters.words]


async def _found(
    db: AsyncDatabase[Document],
    viewer: User,
    filters: SearchFilters,
    alternatives: Sequence[set[str]],
) -> Matches:
    """Every call that matches, in list order."""
    start, end = filters.period()
    first, last = start.astimezone(UTC).date(), (end - timedelta(milliseconds=1)).date()
    low, high = search_index.millis(start), search_index.millis(end)
    speakers = SPEAKERS[filters.speaker]
    said: list[dict[str, search_index.Posting]] = []
    for words in alternatives:
        postings = await search_index.postings(db, words, first, last)
        if said:  # only the calls that said the words before
            postings = {task_id: p for task_id, p in postings.items() if task_id in said[-1]}
        said.append(
            {
                task_id: posting
                for task_id, posting in postings.items()
                if posting.speakers & speakers
                and low <= posting.received_ms < high
                and viewer.sees_manager(posting.manager_id or "")
                and (not filters.manager_id or posting.manager_id == filters.manager_id)
            }
        )
        if not said[-1]:
            return Matches([], said, speakers)
    probe = Matches([], said, speakers)
    candidates = {
        task_id: posting.received_ms
        for task_id, posting in said[-1].items()
        if len(said) == 1 or probe.starts(task_id)
    }
    if filters.narrows_calls():
        candidates = await _narrowed(db, viewer, filters, candidates)
    found = sorted(
        (Found(received_ms, task_id) for task_id, received_ms in candidates.items()),
        key=lambda call: (call.received_ms, call.task_id),
        reverse=filters.newest_first,
    )
    return Matches(found, said, speakers)


async def _narrowed(
    db: AsyncDatabase[Document], viewer: User, filters: SearchFilters, candidates: dict[str, int]
) -> dict[str, int]:
    kept: dict[str, int] = {}
    found = find_in(
        calls(db), "_id", list(candidates), where=filters.query(viewer), projection={"_id": 1}
    )
    async for call in found:
        kept[call["_id"]] = candidates[call["_id"]]
    return kept


async def _rows(
    db: AsyncDatabase[Document], task_ids: Sequence[str], matches: Matches
) -> list[SearchRow]:
    """The calls' rows with their snippets, in the order given."""
    projection = {**ROW_FIELDS, "details_id": 1}
    documents = {
        document["_id"]: document
        async for document in find_in(calls(db), "_id", task_ids, projection=projection)
    }
    details = await call_details.of_many(db, documents.values(), {"transcript": 1})
    rows: list[SearchRow] = []
    for task_id in task_ids:
        document = documents.get(task_id)
        if document is None:
            continue
        transcript = details.get(task_id, {}).get("transcript") or []
        starts = matches.starts(task_id)
        shown = _snippets(transcript, starts[:SNIPPETS_PER_CALL], len(matches.said))
        rows.append({**row_view(document), "hits": len(starts), "snippets": shown})
    return rows


def _snippets(transcript: Sequence[Document], starts: Sequence[int], count: int) -> list[Snippet]:
    """The places of the transcript where `count` words begin at these positions."""
    wanted = {position + offset for position in starts for offset in range(count)}
    at = {
        place.position >> 2: place
        for place in search_index.places(transcript)
        if place.position >> 2 in wanted
    }
    snippets = []
    for position in starts:
        first, last = at.get(position), at.get(position + count - 1)
        if first is None or last is None:
            continue  # the index is of an earlier transcript: the card has the new one
        line = transcript[first.line]
        if words := line.get("words"):
            snippets.append(_snippet(line["speaker"], words, first.word, last.word + 1))
    return snippets


def _snippet(speaker: str, words: Sequence[Sequence[Any]], begin: int, end: int) -> Snippet:
    """Words `begin:end` of a line, with up to CONTEXT_WORDS either side ("…" where cut)."""
    opening = max(0, begin - CONTEXT_WORDS)
    closing = min(len(words), end + CONTEXT_WORDS)
    return {
        "speaker": speaker,
        "start_s": float(words[begin][1]),
        "before": ("… " if opening else "") + _text(words[opening:begin]),
        "hit": _text(words[begin:end]),
        "after": _text(words[end:closing]) + (" …" if closing < len(words) else ""),
    }


def _text(words: Sequence[Sequence[Any]]) -> str:
    """Words as text: the ASR's pieces that start with punctuation ("$500" ",000.") close up."""
    text = ""
    for word in words:
        piece = str(word[0]).strip()
        text += piece if not text or piece[:1] in ATTACHED else f" {piece}"
    return text
