"""Search over transcripts through the admin API and the web app: Russian word forms and a
one-letter ASR slip match, a phrase is its words in order, the speaker and the calls
filters narrow it, a manager finds only their own calls, pages and snippet times hold;
the index follows a call analysed again and catches up on calls it missed."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from openpyxl import load_workbook
from pymongo import AsyncMongoClient

from devtools.samples import analysed_call, sample_details
from shared import search_index
from shared.mongo import SEARCH_POSTINGS
from shared.settings import Settings
from tests.api_client import admin, user
from tests.transcripts import stored_line as line

Client = TestClient[Any, Any]


CALLS = {
    # index: (manager, days ago, transcript)
    1: (
        "mgr_1",
        0.1,
        [
            line("manager", 3.0, "Добрый день, компания Ромашка"),
            line("client", 12.0, "Для нас это дорого, нужна скидка"),
        ],
    ),
    2: ("mgr_1", 0.2, [line("manager", 5.0, "Могу предложить скидку на первый месяц")]),
    3: (
        "mgr_2",
        0.3,
        [
            line("client", 7.0, "Мы уже работаем с кампанией Лютик"),
            line("manager", 20.0, "Дорого не будет, обещаю"),
        ],
    ),
    4: ("mgr_1", 10.0, [line("client", 2.0, "Скидки нам ещё интересны")]),
    # As the ASR splits words: "$500" and ",000." are two.
    5: ("mgr_2", 0.4, [line("client", 1.0, "Our budget is $500 ,000. a month")]),
}


@pytest.fixture
async def db(settings: Settings, ingest_client: Client) -> AsyncIterator[Any]:
    """Four analysed calls, indexed as the analyzer indexes them."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo_url, tz_aware=True)
    database = client.get_default_database()
    batch = []
    for index, (manager_id, days_ago, transcript) in CALLS.items():
        call = analysed_call(index, manager_id=manager_id, days_ago=days_ago)
        await database.calls.insert_one(call)
        await database.call_details.insert_one(sample_details(call, transcript=transcript))
        batch.append(search_index.Indexed(call["_id"], call["received_at"], manager_id, transcript))
    await search_index.index_calls(database, batch)
    yield database
    await client.close()


async def found(client: Client, headers: dict[str, str], **query: Any) -> dict[str, Any]:
    response = await client.get("/api/v1/admin/search", params=query, headers=headers)
    body: dict[str, Any] = await response.json()
    assert response.status == 200, body
    return body


def tasks(page: dict[str, Any]) -> list[str]:
    return [item["task_id"] for item in page["items"]]


async def test_word_forms_and_a_one_letter_slip_are_found(ingest_client: Client, db: Any) -> None:
    headers = await admin(ingest_client)
    # «скидка» is said as «скидка», «скидку», and (10 days ago, outside the default week) «скидки».
    page = await found(ingest_client, headers, q="Скидка")
    assert tasks(page) == ["task_000000000001", "task_000000000002"]
    assert page["total"] == 2
    first = page["items"][0]
    assert first["hits"] == 1
    assert first["snippets"] == [
        {
            "speaker": "client",
            "start_s": 14.5,
            "before": "Для нас это дорого, нужна",
            "hit": "скидка",
            "after": "",
        }
    ]
    assert page["items"][1]["snippets"][0]["hit"] == "скидку"
    wider = await found(ingest_client, headers, q="скидки", date_from="2020-01-01")
    assert tasks(wider) == ["task_000000000001", "task_000000000002", "task_000000000004"]
    # «кампанией» is an ASR slip of «компанией»: one letter in a long word.
    slip = await found(ingest_client, headers, q="компания")
    assert tasks(slip) == ["task_000000000001", "task_000000000003"]
    assert slip["items"][1]["snippets"][0]["hit"] == "кампанией"
    # Pronouns too: «нас», «мы», «нам» are forms of one word.
    assert tasks(await found(ingest_client, headers, q="мы", date_from="2020-01-01")) == [
        "task_000000000001",
        "task_000000000003",
        "task_000000000004",
    ]
    # A short word must be the word: «лень» is not «день».
    assert tasks(await found(ingest_client, headers, q="лень")) == []
    budget = await found(ingest_client, headers, q="budget")
    assert budget["items"][0]["snippets"][0]["after"] == "is $500,000. a month"
    # ё and е are one letter.
    assert tasks(await found(ingest_client, headers, q="еще", date_from="2020-01-01")) == [
        "task_000000000004"
    ]


async def test_a_phrase_is_its_words_in_order(ingest_client: Client, db: Any) -> None:
    headers = await admin(ingest_client)
    page = await found(ingest_client, headers, q="компании Ромашка")
    assert tasks(page) == ["task_000000000001"]
    assert page["items"][0]["snippets"][0]["hit"] == "компания Ромашка"
    assert page["items"][0]["snippets"][0]["start_s"] == 4.0
    assert tasks(await found(ingest_client, headers, q="ромашка компания")) == []
    assert tasks(await found(ingest_client, headers, q="компании Ромашка", speaker="client")) == []
    # The manager's line ends with «Ромашка», the client's begins with «Для»: no phrase.
    assert tasks(await found(ingest_client, headers, q="ромашка для")) == []
    assert tasks(await found(ingest_client, headers, q="дорого скидка")) == []


async def test_the_speaker_and_the_calls_filters_narrow_it(ingest_client: Client, db: Any) -> None:
    headers = await admin(ingest_client)
    assert tasks(await found(ingest_client, headers, q="дорого")) == [
        "task_000000000001",
        "task_000000000003",
    ]
    assert tasks(await found(ingest_client, headers, q="дорого", speaker="client")) == [
        "task_000000000001"
    ]
    assert tasks(await found(ingest_client, headers, q="дорого", speaker="manager")) == [
        "task_000000000003"
    ]
    assert tasks(await found(ingest_client, headers, q="дорого", manager_id="mgr_2")) == [
        "task_000000000003"
    ]
    assert tasks(await found(ingest_client, headers, q="дорого", sort="old")) == [
        "task_000000000003",
        "task_000000000001",
    ]
    await db.calls.update_one({"_id": "task_000000000003"}, {"$set": {"stage_id": "funnel_2"}})
    assert tasks(await found(ingest_client, headers, q="дорого", stage_id="funnel_2")) == [
        "task_000000000003"
    ]
    assert tasks(await found(ingest_client, headers, q="дорого", score_min=80)) == []
    bad = await ingest_client.get("/api/v1/admin/search", params={"q": "…"}, headers=headers)
    body = await bad.json()
    assert bad.status == 400
    assert body["code"] == "invalid_request"
    assert body["details"] == [{"field": "q", "message": "введите слово или фразу"}]


async def test_a_manager_finds_only_own_calls_and_a_lead_the_team_s(
    ingest_client: Client, db: Any
) -> None:
    headers = await admin(ingest_client)
    anna = await user(
        ingest_client, headers, email="anna@example.ru", role="manager", manager_id="mgr_2"
    )
    lead = await user(
        ingest_client,
        headers,
        email="lead@example.ru",
        role="supervisor",
        team_manager_ids=["mgr_1"],
    )
    assert tasks(await found(ingest_client, anna, q="дорого")) == ["task_000000000003"]
    assert tasks(await found(ingest_client, anna, q="дорого", manager_id="mgr_1")) == []
    assert tasks(await found(ingest_client, lead, q="дорого")) == ["task_000000000001"]


async def test_pages_follow_one_another(ingest_client: Client, db: Any) -> None:
    headers = await admin(ingest_client)
    first = await found(ingest_client, headers, q="скидка", date_from="2020-01-01", per_page=2)
    assert tasks(first) == ["task_000000000001", "task_000000000002"]
    assert first["total"] == 3
    second = await found(
        ingest_client, headers, q="скидка", date_from="2020-01-01", per_page=2, after=first["next"]
    )
    assert tasks(second) == ["task_000000000004"]
    assert second["next"] is None


async def test_the_index_follows_a_call_analysed_again(ingest_client: Client, db: Any) -> None:
    headers = await admin(ingest_client)
    call = await db.calls.find_one({"_id": "task_000000000002"})
    again = [line("client", 1.0, "Перезвоните мне завтра")]
    await search_index.index_calls(
        db, [search_index.Indexed(call["_id"], call["received_at"], "mgr_1", again)]
    )
    assert tasks(await found(ingest_client, headers, q="скидка")) == ["task_000000000001"]
    assert tasks(await found(ingest_client, headers, q="завтра")) == ["task_000000000002"]
    # Nothing of the call's earlier words is left in the postings.
    assert await db[SEARCH_POSTINGS].count_documents({"calls.t": call["_id"], "key": "скидка"}) == 0


async def test_calls_the_index_missed_are_indexed_from_their_transcripts(
    ingest_client: Client, db: Any
) -> None:
    call = analysed_call(6, manager_id="mgr_1")
    transcript = [line("client", 2.0, "Конкуренты предлагают дешевле")]
    await db.calls.insert_one({**call, "search_pending": True})
    await db.call_details.insert_one(sample_details(call, transcript=transcript))
    assert await search_index.index_pending(db) == 1
    assert await search_index.index_pending(db) == 0
    headers = await admin(ingest_client)
    assert tasks(await found(ingest_client, headers, q="конкурент")) == ["task_000000000006"]


async def test_the_results_export_to_excel_and_show_on_the_search_page(
    ingest_client: Client, db: Any
) -> None:
    headers = await admin(ingest_client)
    response = await ingest_client.get(
        "/api/v1/admin/search", params={"q": "скидка", "format": "xlsx"}, headers=headers
    )
    assert response.status == 200
    sheet = load_workbook(io.BytesIO(await response.read())).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:6] == ("Дата", "ID звонка", "Сделка", "Менеджер", "ID менеджера", "Упоминаний")
    assert [row[1] for row in rows[1:]] == ["call_1", "call_2"]
    assert rows[1][6] == "[0:14] Клиент: Для нас это дорого, нужна СКИДКА"
    page = await ingest_client.get("/search", params={"q": "скидка"}, headers=headers)
    html = await page.text()
    assert page.status == 200
    assert 'href="/calls/task_000000000001?t=14.5#player"' in html
    assert "<mark>скидка</mark>" in html
