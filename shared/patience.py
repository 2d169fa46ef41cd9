"""Waiting out a dependency that is away (the one backoff loop every service uses), and
waiting for a wake-up."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from shared.logging import get_logger

log = get_logger(__name__)

T = TypeVar("T")

INITIAL_DELAY_S = 0.5
MAX_DELAY_S = 10.0


async def patiently(
    step: Callable[[], Awaitable[T]],
    *,
    errors: tuple[type[BaseException], ...],
    dependency: str,
) -> T:
    """Run `step` until it succeeds, backing off (0.5 s doubling to 10 s) while it fails
    with one of `errors`: a service whose database or broker blinked waits, never exits."""
    delay_s = INITIAL_DELAY_S
    while True:
        try:
            return await step()
        except errors as exc:
            log.warning(f"{dependency}_unavailable", error=repr(exc), retry_in_s=delay_s)
        await asyncio.sleep(delay_s)
        delay_s = min(delay_s * 2, MAX_DELAY_S)


async def woken(event: asyncio.Event, timeout_s: float) -> None:
    """Wait until `event` is set or `timeout_s` passed. Python 3.11's `asyncio.wait_for`
    swallows a cancellation that arrives as the event is set, and a loop waiting so could
    never be stopped; a timeout scope cannot."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await event.wait()
