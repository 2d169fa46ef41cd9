"""What an attempt's outcome means for its delivery: succeeded, stopped (410 Gone), dead
(refused by the URL policy, or the schedule is over), or retried after the schedule's
next delay (with jitter, or longer when the endpoint asked with `Retry-After`)."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Decision:
    status: Literal["succeeded", "stopped", "dead", "retrying"]
    delay_s: float = 0.0  # retrying: how long until it


def decide(
    status_code: int | None,
    *,
    refused: bool,
    round_attempts: int,
    schedule_s: Sequence[float],
    retry_after_s: float | None = None,
    jitter: float = 0.0,
    uniform: Callable[[float, float], float] = random.uniform,
) -> Decision:
    """The next step after an attempt; `round_attempts` counts the attempts made before it
    in this round (a replay starts a new round)."""
    if status_code is not None and 200 <= status_code < 300:
        return Decision("succeeded")
    if status_code == 410:
        return Decision("stopped")
    if refused or round_attempts >= len(schedule_s):
        return Decision("dead")
    base = schedule_s[round_attempts]
    delay = max(retry_after_s or 0.0, base * (1 + uniform(-jitter, jitter)))
    return Decision("retrying", delay_s=delay)
