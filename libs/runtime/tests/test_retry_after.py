"""Retry-After in seconds: delta-seconds, HTTP dates (zoned or "-0000"), nothing else."""

from __future__ import annotations

import email.utils

from relisten_runtime.retry_after import retry_after_seconds

NOW = 1_750_000_000.0


def test_delta_seconds_and_http_dates() -> None:
    assert retry_after_seconds("3", NOW) == 3.0
    assert retry_after_seconds(" 0.5 ", NOW) == 0.5
    assert retry_after_seconds("-4", NOW) == 0.0
    assert retry_after_seconds(email.utils.formatdate(NOW + 30, usegmt=True), NOW) == 30.0
    assert retry_after_seconds(email.utils.formatdate(NOW + 30), NOW) == 30.0  # "-0000": naive, GMT
    assert retry_after_seconds(email.utils.formatdate(NOW - 30, usegmt=True), NOW) == 0.0


def test_absent_or_unreadable_is_none() -> None:
    for value in (None, "", "  ", "soon", "Mon, 99 Foo 2024"):
        assert retry_after_seconds(value, NOW) is None
