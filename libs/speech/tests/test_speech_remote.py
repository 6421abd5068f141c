"""Retry timing of the remote speech clients, and the server root."""

from __future__ import annotations

import email.utils
import random
import time

import httpx
from relisten_speech.remote import RetryPolicy, api_root, retry_after_s


def test_retry_after_reads_seconds_and_http_dates() -> None:
    def with_header(value: str) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": value})

    assert retry_after_s(with_header("3")) == 3.0
    assert retry_after_s(with_header("0.5")) == 0.5
    assert retry_after_s(with_header("soon")) is None
    assert retry_after_s(httpx.Response(429)) is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= (retry_after_s(with_header(later)) or 0) <= 31


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    policy = RetryPolicy(max_attempts=10, backoff_s=1.0, max_backoff_s=5.0)
    rng = random.Random(0)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (9, 5.0)]:
        delays = [policy.delay(attempt, rng) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1


def test_api_root_accepts_a_trailing_v1() -> None:
    assert api_root("http://gpu:8000/v1/") == "http://gpu:8000"
    assert api_root("http://gpu:8000") == "http://gpu:8000"
