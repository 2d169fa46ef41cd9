"""Retry-After, read the same way by the downloader and the notifier."""

from __future__ import annotations

from datetime import timedelta
from email.utils import format_datetime

import pytest

from shared.events import utcnow
from shared.http import retry_after_s


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, None), ("", None), ("  ", None), ("120", 120.0), (" 7 ", 7.0), ("soon", None),
     ("-5", None), ("1.5", None), ("Wed, 21 Oct 2015 07:28:00", None)],
)  # fmt: skip
def test_seconds_and_what_is_not_a_wait(header: str | None, expected: float | None) -> None:
    assert retry_after_s(header) == expected


def test_an_http_date_is_the_time_until_it() -> None:
    in_a_minute = format_datetime(utcnow() + timedelta(seconds=60), usegmt=True)
    assert 55 <= (retry_after_s(in_a_minute) or 0) <= 60
    past = format_datetime(utcnow() - timedelta(hours=1), usegmt=True)
    assert retry_after_s(past) == 0.0


def test_a_wait_is_bounded() -> None:
    assert retry_after_s("999999", at_most_s=3600) == 3600
    far = format_datetime(utcnow() + timedelta(days=30), usegmt=True)
    assert retry_after_s(far, at_most_s=3600) == 3600
