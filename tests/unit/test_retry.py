"""The notifier's retry decision, without a network or a broker."""

from __future__ import annotations

import pytest

from services.notifier.retry import Decision, decide

SCHEDULE = (5.0, 300.0, 1800.0)


def no_jitter(low: float, high: float) -> float:
    return 0.0


@pytest.mark.parametrize(
    ("status_code", "refused", "round_attempts", "expected"),
    [
        (200, False, 0, Decision("succeeded")),
        (204, False, 3, Decision("succeeded")),  # a late success is a success
        (410, False, 0, Decision("stopped")),
        (None, True, 0, Decision("dead")),  # the URL policy refused it: no retry helps
        (500, False, 3, Decision("dead")),  # the schedule is over
        (500, False, 0, Decision("retrying", delay_s=5.0)),
        (None, False, 2, Decision("retrying", delay_s=1800.0)),  # a timeout
        (301, False, 1, Decision("retrying", delay_s=300.0)),  # redirects are not followed
    ],
)
def test_what_an_attempt_means(
    status_code: int | None, refused: bool, round_attempts: int, expected: Decision
) -> None:
    decision = decide(
        status_code,
        refused=refused,
        round_attempts=round_attempts,
        schedule_s=SCHEDULE,
        uniform=no_jitter,
    )
    assert decision == expected


def test_retry_after_lengthens_the_wait_never_shortens_it() -> None:
    asked = decide(429, refused=False, round_attempts=0, schedule_s=SCHEDULE, retry_after_s=60)
    assert asked == Decision("retrying", delay_s=60.0)
    shorter = decide(503, refused=False, round_attempts=1, schedule_s=SCHEDULE, retry_after_s=1)
    assert shorter.delay_s == pytest.approx(300.0)


def test_jitter_stays_within_its_share() -> None:
    delays = {
        decide(
            500,
            refused=False,
            round_attempts=1,
            schedule_s=SCHEDULE,
            jitter=0.1,
            uniform=lambda low, high, share=share: share,
        ).delay_s
        for share in (-0.1, 0.0, 0.1)
    }
    assert delays == {270.0, 300.0, 330.0}
