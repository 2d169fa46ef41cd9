"""`make bench-web`, its search part: 10,000 analysed calls of about five minutes each
over a month (about 700 words a call, a vocabulary of 25,000 words drawn by Zipf's law,
as speech is), indexed through `shared/search_index.py` as the analyzer indexes them;
then the gateway's /search page over the month, one request at a time: a word said in
about one call in eight, a word said in nearly every call, a two-word phrase (about one
call in ten says it) and a phrase of two words nearly every call says (the worst case:
every call is a candidate to check). Median and p95 of the server time, and what indexing
one call costs (what each analysis adds).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pymorphy3

from bench.webapp import TARGET_MEDIAN_MS, Gateway, fresh_gateway, server_times
from devtools.samples import analysed_call, sample_details
from shared import search_index
from shared.mongo import connect_mongo, database, ensure_indexes

CALLS, DAYS, WORDS_PER_CALL, TYPES = 10_000, 30, 700, 25_000
BATCH = CALLS // DAYS  # a day's calls at a time
MANAGERS = 100
INDEX_PROBES = 10
# The most said words first (rank 1 is said most); the words the queries look for at
# ranks that make them as common as the docstring says.
HEAD = [
    "да",
    "я",
    "вы",
    "не",
    "это",
    "мы",
    "что",
    "в",
    "на",
    "и",
    "так",
    "ну",
    "у",
    "нас",
    "вам",
    "по",
    "с",
    "а",
    "как",
    "можно",
    "для",
]
RARE_RANK = 500  # «скидка»: in about one call in eight
PHRASE = ("большая", "скидка")  # said in one call in ten, besides «скидка» alone
PHRASE_SHARE = 0.1
ADJECTIVE_RANK = 40
SYLLABLES = [c + v for c in "бвгдзклмнпрстфхцчшщ" for v in "аеиоуыяю"]


def _forms(word: str) -> list[str]:
    """A few of the word's forms, as people say them."""
    lexeme = pymorphy3.MorphAnalyzer().parse(word)[0].lexeme
    return list(dict.fromkeys(form.word for form in lexeme))[:6] or [word]


def vocabulary(rng: random.Random) -> tuple[list[list[str]], list[float]]:
    """Each rank's forms and the cumulative Zipf weights of the ranks."""
    words: list[list[str]] = [[word] for word in HEAD]
    while len(words) < TYPES:
        made = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))
        words.append([made])
    words[RARE_RANK - 1] = _forms("скидка")
    words[ADJECTIVE_RANK - 1] = _forms("большой")
    weights = list(itertools.accumulate(1 / rank for rank in range(1, TYPES + 1)))
    return words, weights


def transcript(rng: random.Random, words: list[list[str]], weights: list[float]) -> list[Any]:
    """About five minutes of talk: lines of 12 words, the speakers taking turns."""
    said = [
        rng.choice(words[bisect.bisect(weights, rng.random() * weights[-1])])
        for _ in range(WORDS_PER_CALL)
    ]
    if rng.random() < PHRASE_SHARE:
        at = rng.randrange(WORDS_PER_CALL - 1)
        said[at : at + 2] = PHRASE
    lines = []
    for number, start in enumerate(range(0, WORDS_PER_CALL, 12)):
        begin = start * 0.43
        texts = said[start : start + 12]
        timed = [
            [text, round(begin + n * 0.43, 2), round(begin + n * 0.43 + 0.35, 2)]
            for n, text in enumerate(texts)
        ]
        lines.append(
            {
                "speaker": "manager" if number % 2 == 0 else "client",
                "start_s": timed[0][1],
                "end_s": timed[-1][2],
                "text": " ".join(texts),
                "words": timed,
            }
        )
    return lines


def _call(
    index: int, rng: random.Random, words: list[list[str]], weights: list[float]
) -> tuple[dict[str, Any], list[Any]]:
    call = analysed_call(
        index + 1,
        manager_id=f"mgr_{index % MANAGERS}",
        passed=index % 5,
        applicable=4,
        days_ago=(DAYS - 1) * (1 - index / CALLS) + 0.01,
    )
    at = call["received_at"]
    call["received_at"] = at.replace(microsecond=at.microsecond // 1000 * 1000)
    return call, transcript(rng, words, weights)


async def seed(mongo_url: str) -> tuple[float, list[float]]:
    """Store and index the calls (a day's worth at a time, oldest first); the seconds it
    took, and the seconds of indexing each of INDEX_PROBES more calls one by one, as the
    analyzer does."""
    rng = random.Random(16)
    words, weights = vocabulary(rng)
    client = connect_mongo(mongo_url)
    db = database(client)
    await ensure_indexes(db)
    started = time.perf_counter()
    for start in range(0, CALLS, BATCH):
        made = [
            _call(index, rng, words, weights) for index in range(start, min(CALLS, start + BATCH))
        ]
        await db.calls.insert_many([call for call, _ in made])
        await db.call_details.insert_many(
            [sample_details(call, transcript=lines) for call, lines in made]
        )
        await search_index.index_calls(
            db,
            [
                search_index.Indexed(call["_id"], call["received_at"], call["manager_id"], lines)
                for call, lines in made
            ],
        )
        if start // BATCH % 5 == 4:
            print(
                f"  {start + BATCH:,} calls indexed, {time.perf_counter() - started:.0f} s",
                flush=True,
            )
    seeded_s = time.perf_counter() - started
    probes = []
    for index in range(CALLS, CALLS + INDEX_PROBES):
        call, lines = _call(index, rng, words, weights)
        call["received_at"] = datetime.now(UTC) - timedelta(hours=1)
        started = time.perf_counter()
        await search_index.index_calls(
            db, [search_index.Indexed(call["_id"], call["received_at"], call["manager_id"], lines)]
        )
        probes.append(time.perf_counter() - started)
    await client.close()
    return seeded_s, probes


def _p95(values: list[float]) -> float:
    return sorted(values)[max(0, round(len(values) * 0.95) - 1)]


async def measure(rounds: int) -> None:
    async with fresh_gateway() as gateway:
        seeded_s, probes = await seed(gateway.mongo_url)
        print(
            f"search: {CALLS:,} calls of ~5 minutes stored and indexed in {seeded_s:.0f} s",
            flush=True,
        )
        gateway.start()
        await report(gateway, rounds, probes)


async def report(gateway: Gateway, rounds: int, probes: list[float]) -> None:
    today = datetime.now(UTC).date()
    # The month up to today in the gateway's zone, as the search form sends it.
    month = {"date_from": (today - timedelta(days=DAYS)).isoformat()}
    queries = {
        "one word (1 call in 8)": "скидку",
        "one word (every call)": "вы",
        "two-word phrase (1 in 10)": " ".join(PHRASE),
        "two common words": "да я",
    }
    pages = {name: "/search?" + urlencode({"q": q, **month}) for name, q in queries.items()}
    times = await server_times(gateway.base, pages, rounds)
    print(
        f"search over a month of {CALLS:,} calls, /search page, {rounds} requests: median / p95 ms"
    )
    for name, values in times.items():
        print(f"  {name:28}{statistics.median(values):7.0f} /{_p95(values):6.0f}")
    worst = max(statistics.median(times[name]) for name in list(times)[:3])
    print(
        f"  slowest median of the word and the phrase: {worst:.0f} ms (target ≤ {TARGET_MEDIAN_MS})"
    )
    print(
        "indexing one 5-minute call (what an analysis adds): "
        f"median {statistics.median(probes):.2f} s, max {max(probes):.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    asyncio.run(measure(parser.parse_args().rounds))


if __name__ == "__main__":
    main()
