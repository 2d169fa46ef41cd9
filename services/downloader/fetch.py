"""Fetching a user-supplied link under the URL policy, chunk by chunk, with retries.

Redirects are followed by hand so every hop is checked; names are resolved once,
by the policy's resolver, and the connection goes to the checked address. The
body is streamed to a sink and never held whole in memory.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)
from tenacity.wait import wait_base
from yarl import URL

from shared.errors import PermanentError, RetryableError
from shared.http import retry_after_s
from shared.url_policy import UrlPolicy, UrlRefused, parse_url

CHUNK_BYTES = 256 * 1024
REDIRECTS = frozenset({301, 302, 303, 307, 308})
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class DownloadFailed(PermanentError):
    """The link cannot be fetched, and trying again will not change that."""

    code = "download_failed"
    message = "Файл скачать не может"


class TransientDownloadError(RetryableError):
    """A failure worth another attempt: timeout, connection error, 5xx, 429."""

    code = "download_failed"
    message = "Файл скачать не может"

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class FetchLimits:
    """Size, time and retry bounds of one download."""

    max_bytes: int = 500_000_000
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 30.0
    total_timeout_s: float = 1800.0
    attempts: int = 4
    retry_initial_s: float = 2.0
    retry_max_s: float = 60.0


@dataclass(frozen=True)
class Fetched:
    """What was downloaded."""

    final_url: str
    content_type: str | None
    size_bytes: int
    sha256: str
    attempts: int


class Sink(Protocol):
    """Where the body goes; `reset` starts over before each attempt."""

    async def reset(self) -> None: ...

    async def write(self, chunk: bytes) -> None: ...


def reason(text: str) -> str:
    """The Russian failure message: the spec's prefix and the reason."""
    return f"{DownloadFailed.message}: {text}"


class _WaitRetryAfter(wait_base):
    """Honour the server's Retry-After (bounded); otherwise exponential backoff with jitter."""

    def __init__(self, limits: FetchLimits) -> None:
        self._limits = limits
        self._backoff = wait_exponential_jitter(
            multiplier=limits.retry_initial_s, max=limits.retry_max_s
        )

    def __call__(self, retry_state: object) -> float:
        outcome = getattr(retry_state, "outcome", None)
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, TransientDownloadError) and error.retry_after_s is not None:
            return min(error.retry_after_s, self._limits.retry_max_s)
        return float(self._backoff(retry_state))  # type: ignore[arg-type]


async def fetch(
    session: aiohttp.ClientSession,
    url: str,
    *,
    policy: UrlPolicy,
    limits: FetchLimits,
    sink: Sink,
) -> Fetched:
    """Download `url` into `sink`, retrying transient failures; raises DownloadFailed."""
    attempt = 0
    try:
        async for attempt_state in AsyncRetrying(
            stop=stop_after_attempt(limits.attempts) | stop_after_delay(limits.total_timeout_s),
            wait=_WaitRetryAfter(limits),
            retry=retry_if_exception_type(TransientDownloadError),
            reraise=True,
        ):
            with attempt_state:
                attempt += 1
                await sink.reset()
                return await _fetch_once(session, parse_url(url), policy, limits, sink, attempt)
    except UrlRefused as exc:
        raise DownloadFailed(reason(exc.message)) from exc
    except TransientDownloadError as exc:
        raise DownloadFailed(reason(f"{exc.message} (попыток: {attempt})")) from exc
    raise AssertionError("unreachable: tenacity either returns or re-raises")


async def _fetch_once(
    session: aiohttp.ClientSession,
    url: URL,
    policy: UrlPolicy,
    limits: FetchLimits,
    sink: Sink,
    attempt: int,
) -> Fetched:
    timeout = aiohttp.ClientTimeout(
        total=limits.total_timeout_s,
        sock_connect=limits.connect_timeout_s,
        sock_read=limits.read_timeout_s,
    )
    for _hop in range(policy.max_redirects + 1):
        try:
            policy.check_url(url)
        except UrlRefused as exc:
            raise DownloadFailed(reason(exc.message)) from exc
        try:
            async with session.get(url, allow_redirects=False, timeout=timeout) as response:
                if response.status in REDIRECTS and "Location" in response.headers:
                    url = url.join(parse_url(response.headers["Location"]))
                    continue
                _raise_for_status(response)
                return await _stream(response, url, limits, sink, attempt)
        except UrlRefused as exc:
            raise DownloadFailed(reason(exc.message)) from exc
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise TransientDownloadError(f"истекло время ожидания ({type(exc).__name__})") from exc
        except aiohttp.InvalidURL as exc:  # never better on a retry
            raise DownloadFailed(reason("HTTP-клиент не может открыть эту ссылку")) from exc
        except aiohttp.ClientConnectorError as exc:
            raise TransientDownloadError(f"не удалось подключиться: {exc.os_error}") from exc
        except aiohttp.ClientError as exc:
            raise TransientDownloadError(f"ошибка соединения: {type(exc).__name__}") from exc
    raise DownloadFailed(reason(f"больше {policy.max_redirects} перенаправлений"))


def _raise_for_status(response: aiohttp.ClientResponse) -> None:
    if 200 <= response.status < 300:
        return
    text = f"сервер ответил {response.status}"
    if response.status in RETRY_STATUSES:
        raise TransientDownloadError(
            text,
            retry_after_s=retry_after_s(response.headers.get("Retry-After")),  # bounded by the wait
        )
    raise DownloadFailed(reason(text))


async def _stream(
    response: aiohttp.ClientResponse, url: URL, limits: FetchLimits, sink: Sink, attempt: int
) -> Fetched:
    too_large = reason(f"файл больше {limits.max_bytes} байт")
    if response.content_length is not None and response.content_length > limits.max_bytes:
        raise DownloadFailed(too_large)
    digest = hashlib.sha256()
    size = 0
    async for chunk in response.content.iter_chunked(CHUNK_BYTES):
        size += len(chunk)
        if size > limits.max_bytes:
            raise DownloadFailed(too_large)
        digest.update(chunk)
        await sink.write(chunk)
    return Fetched(
        final_url=str(url),
        content_type=response.headers.get("Content-Type"),
        size_bytes=size,
        sha256=digest.hexdigest(),
        attempts=attempt,
    )
