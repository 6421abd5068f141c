"""The start-up retry loop shared by the workers and the ingest API."""

from __future__ import annotations

import asyncio

import pytest
from relisten_runtime.startup import until_nats_answers

URL = "nats://user:hunter2@nats.internal:4222"


async def test_failures_are_retried_and_reported_without_credentials() -> None:
    calls: list[int] = []
    reasons: list[str] = []

    async def attempt() -> str:
        calls.append(len(calls))
        if len(calls) < 3:
            raise ConnectionError(f"cannot reach {URL}")
        return "open"

    got = await until_nats_answers(
        attempt, name="test", nats_url=URL, first_s=0.0, max_s=0.0, on_failure=reasons.append
    )
    assert got == "open"
    assert len(calls) == 3
    assert len(reasons) == 2
    assert all(reason.startswith("ConnectionError: cannot reach ") for reason in reasons)
    assert not any("hunter2" in reason for reason in reasons)


async def test_cancelling_ends_the_loop() -> None:
    async def attempt() -> None:
        raise ConnectionError("no server")

    waiting = asyncio.create_task(
        until_nats_answers(attempt, name="test", nats_url=URL, first_s=60.0, max_s=60.0)
    )
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
