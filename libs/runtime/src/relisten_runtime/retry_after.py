"""An HTTP ``Retry-After`` value in seconds, read one way for every service that calls out: the speech
clients (asr, corrector) and the notifier's deliveries.

Pure: no I/O, the current time is given.
"""

from __future__ import annotations

from datetime import UTC
from email.utils import parsedate_to_datetime


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delta-seconds, fractional ones accepted, or an
    HTTP date; never negative), None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    try:
        return max(float(value.strip()), 0.0)
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        # An HTTP date is GMT; a "-0000" zone parses as naive.
        moment = moment.replace(tzinfo=UTC)
    return max(moment.timestamp() - now, 0.0)
