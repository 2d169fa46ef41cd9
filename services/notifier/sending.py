"""One attempt of a webhook delivery: signed, to the URL the policy allows, its answer
recorded for the delivery log."""

from __future__ import annotations

import time
from datetime import datetime

import aiohttp

from shared.events import utcnow
from shared.http import retry_after_s
from shared.mongo import Document
from shared.url_policy import UrlPolicy, UrlRefused, parse_url
from shared.webhooks import signed_headers

SNIPPET_BYTES = 2048
MAX_RETRY_AFTER_S = 24 * 3600.0


def attempt_record(at: datetime, *, error: str | None = None) -> Document:
    """An attempt as the delivery log keeps it; `send` fills in what the endpoint said."""
    return {
        "at": at,
        "status_code": None,
        "latency_ms": None,
        "response": None,
        "error": error,
        "refused": False,
    }


async def send(
    session: aiohttp.ClientSession, policy: UrlPolicy, delivery: Document, *, timeout_s: float
) -> tuple[Document, float | None]:
    """One attempt: the record of it and any Retry-After the endpoint asked for."""
    at = utcnow()
    started = time.perf_counter()
    record = attempt_record(at)
    retry_after = None
    try:
        url = parse_url(delivery["url"])  # what is checked is what is sent to
        policy.check_url(url)
        headers = signed_headers(
            delivery["secret"], webhook_id=delivery["_id"], body=delivery["body"], at=at
        )
        async with session.post(
            url,
            data=delivery["body"].encode(),
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as response:
            snippet = await response.content.read(SNIPPET_BYTES)
            record["status_code"] = response.status
            record["response"] = snippet.decode(errors="replace")
            retry_after = retry_after_s(
                response.headers.get("Retry-After"), at_most_s=MAX_RETRY_AFTER_S
            )
    except UrlRefused as exc:
        record["error"], record["refused"] = exc.message, True
    except (TimeoutError, aiohttp.ClientError) as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"[:500]
    record["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return record, retry_after
