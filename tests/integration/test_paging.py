"""Keyset paging of the calls list: following `next` gives every call the filters select
exactly once, in the list's order, while new calls arrive; the total stays the filters'."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pymongo import AsyncMongoClient

from devtools.samples import analysed_call
from services.ingest.backoffice import calls
from shared import rollups
from shared.settings import Settings
from tests.api_client import admin, user

Client = TestClient[Any, Any]
NOW = datetime.now(UTC).replace(microsecond=0)


def _call(index: int, received_at: datetime) -> dict[str, Any]:
    call = analysed_call(index, manager_id=f"mgr_{index % 3}", passed=index % 4, applicable=3)
    call["received_at"] = received_at
    if index % 8 == 0:  # not analysed: no score
        call.update(score=None, results=None, status="failed")
    return call


def _seeded() -> list[dict[str, Any]]:
    """47 calls over six days, five of them received in the same millisecond."""
    calls = [_call(index, NOW - timedelta(hours=3 * index, minutes=index)) for index in range(42)]
    calls += [_call(index, NOW - timedelta(days=2)) for index in range(42, 47)]
    return calls


@pytest.fixture
async def db(settings: Settings, ingest_client: Client) -> AsyncIterator[Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo_url, tz_aware=True)
    database = client.get_default_database()
    await database.calls.insert_many(_seeded())
    await rollups.rebuild(database, settings.timezone)  # stored here, not through events
    yield database
    await client.close()


def _order(sort: str, calls: list[dict[str, Any]]) -> list[str]:
    """The task ids in the list's order, as MongoDB sorts them (no score below any)."""

    def score(call: dict[str, Any]) -> float:
        return -1 if call["score"] is None else call["score"]["percent"]

    ordered = sorted(calls, key=lambda c: (c["received_at"], c["_id"]), reverse=sort != "old")
    if sort.startswith("score"):  # a stable sort: newest first within a score
        ordered.sort(key=score, reverse=sort == "score_desc")
    return [call["_id"] for call in ordered]


async def _walk(
    client: Client, headers: dict[str, str], params: dict[str, str], arriving: Any = None
) -> tuple[list[str], set[int]]:
    """Every page from the first by `next`; the task ids in order, and the totals seen."""
    seen: list[str] = []
    totals: set[int] = set()
    after = ""
    for number in range(100):
        page_params = {**params, "per_page": "4", **({"after": after} if after else {})}
        answer = await client.get("/api/v1/admin/calls", params=page_params, headers=headers)
        assert answer.status == 200, await answer.text()
        page = await answer.json()
        seen += [item["task_id"] for item in page["items"]]
        totals.add(page["total"])
        if page["next"] is None:
            return seen, totals
        assert len(page["items"]) == 4
        if arriving is not None:
            await arriving(number)
        after = page["next"]
    raise AssertionError("the pages did not end")


@pytest.mark.parametrize("sort", ["new", "old", "score_asc", "score_desc"])
async def test_following_next_gives_every_call_once_in_order(
    ingest_client: Client, db: Any, sort: str
) -> None:
    headers = await admin(ingest_client)
    stored = await db.calls.find({}).to_list()
    seen, totals = await _walk(ingest_client, headers, {"sort": sort})
    assert seen == _order(sort, stored)
    assert totals == {len(stored)}


async def test_calls_arriving_between_pages_do_not_shift_them(
    ingest_client: Client, db: Any
) -> None:
    headers = await admin(ingest_client)
    stored = await db.calls.find({}).to_list()
    newer: list[dict[str, Any]] = []

    async def arriving(_page: int) -> None:
        call = _call(1000 + len(newer), datetime.now(UTC))
        newer.append(call)
        await db.calls.insert_one(call)

    seen, _ = await _walk(ingest_client, headers, {"sort": "new"}, arriving)
    assert seen == _order("new", stored)  # the new calls are above the first page
    oldest_first, _ = await _walk(ingest_client, headers, {"sort": "old"}, arriving)
    # Oldest first, the calls that arrived meanwhile come at the end, each once.
    assert oldest_first[: len(stored)] == _order("old", stored)
    assert set(oldest_first[len(stored) :]) <= {call["_id"] for call in newer}
    assert len(set(oldest_first)) == len(oldest_first)


async def test_filters_keep_their_meaning_across_pages(ingest_client: Client, db: Any) -> None:
    headers = await admin(ingest_client)
    supervisor = await user(
        ingest_client, headers, email="head@example.ru", role="supervisor",
        team_manager_ids=["mgr_1", "mgr_2"],
    )  # fmt: skip
    stored = await db.calls.find({}).to_list()
    team = [call for call in stored if call["manager_id"] in ("mgr_1", "mgr_2")]
    seen, totals = await _walk(ingest_client, supervisor, {"sort": "score_asc"})
    assert seen == _order("score_asc", team)
    assert totals == {len(team)}
    scored = [call for call in stored if call["score"] and call["score"]["percent"] >= 50]
    seen, totals = await _walk(ingest_client, headers, {"sort": "score_desc", "score_min": "50"})
    assert seen == _order("score_desc", scored)
    assert totals == {len(scored)}
    own = [call for call in team if call["manager_id"] == "mgr_2"]
    seen, _ = await _walk(ingest_client, supervisor, {"manager_id": "mgr_2", "sort": "old"})
    assert seen == _order("old", own)
    outside, totals = await _walk(ingest_client, supervisor, {"manager_id": "mgr_0"})
    assert (outside, totals) == ([], {0})


async def test_a_made_up_start_is_a_400_naming_it(ingest_client: Client, db: Any) -> None:
    headers = await admin(ingest_client)
    for after in ("nonsense", "WzEsMiwzXQ"):  # not base64 JSON; [1,2,3]
        answer = await ingest_client.get(
            "/api/v1/admin/calls", params={"after": after}, headers=headers
        )
        assert answer.status == 400
        assert [d["field"] for d in (await answer.json())["details"]] == ["after"]


async def test_the_calls_page_links_to_the_next_and_back_to_the_first(
    ingest_client: Client, db: Any
) -> None:
    headers = await admin(ingest_client)
    stored = await db.calls.find({}).to_list()
    seen: list[str] = []
    path = "/calls?per_page=20&sort=old"
    while True:
        html = await (await ingest_client.get(path, headers=headers)).text()
        seen += re.findall(r'<a href="/calls/(task_\d+)"', html)
        if path != "/calls?per_page=20&sort=old":
            assert re.search(r'rel="first" href="/calls\?per_page=20&amp;sort=old"', html)
        following = re.search(r'rel="next" href="([^"]+)"', html)
        if following is None:
            break
        path = following.group(1).replace("&amp;", "&")
    assert seen == _order("old", stored)


async def test_a_count_the_rollups_cannot_give_stops_past_its_cap(
    ingest_client: Client, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(calls, "COUNT_CAP", 10)
    headers = await admin(ingest_client)
    stored = await db.calls.find({}).to_list()
    failed = [call for call in stored if call["status"] == "failed"]
    assert 0 < len(failed) <= 10 < len(stored) - len(failed)

    async def listed(**params: str) -> dict[str, Any]:
        answer = await ingest_client.get("/api/v1/admin/calls", params=params, headers=headers)
        assert answer.status == 200
        page: dict[str, Any] = await answer.json()
        return page

    done = await listed(status="done")
    assert (done["total"], done["total_capped"]) == (10, True)
    assert len(done["items"]) == len(stored) - len(failed)  # the page holds every one
    few = await listed(status="failed")
    assert (few["total"], few["total_capped"]) == (len(failed), False)
    every = await listed()  # the period alone: the rollups count it exactly
    assert (every["total"], every["total_capped"]) == (len(stored), False)
    html = await (await ingest_client.get("/calls?status=done", headers=headers)).text()
    assert '<strong id="total">более 10</strong>' in html
