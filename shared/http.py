"""What both of our HTTP clients (the downloader's and the notifier's) read the same way."""

from __future__ import annotations

import math
from email.utils import parsedate_to_datetime

from shared.events import utcnow


def retry_after_s(header: str | None, *, at_most_s: float = math.inf) -> float | None:
    """Seconds a `Retry-After` header asks to wait, in either form RFC 9110 allows (a
    number of seconds or an HTTP date), at most `at_most_s`; None when absent or unreadable."""
    if not header or not header.strip():
        return None
    value = header.strip()
    if value.isdigit():
        return min(float(value), at_most_s)
    try:
        wait_s = (parsedate_to_datetime(value) - utcnow()).total_seconds()
    except (TypeError, ValueError):  # not a date, or one without a zone
        return None
    return min(max(0.0, wait_s), at_most_s)
