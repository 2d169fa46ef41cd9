"""Waiting out a dependency that is away: the one backoff loop every service uses."""

from __future__ import annotations

import asyncio
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
