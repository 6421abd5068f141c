"""Waiting for NATS at start-up: the one retry loop of every process that opens it.

A JetStream cluster that is electing a leader, or a server restarting, answers its API with timeouts
for a while; a worker (or the ingest API, whose HTTP server is up already) starting then waits for it
with a growing pause instead of exiting.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from relisten_runtime.addresses import scrub_credentials, without_credentials

log = logging.getLogger(__name__)

T = TypeVar("T")


async def until_nats_answers(
    attempt: Callable[[], Awaitable[T]],
    *,
    name: str,
    nats_url: str,
    first_s: float,
    max_s: float,
    on_failure: Callable[[str], None] | None = None,
) -> T:
    """What ``attempt`` returns once it succeeds; after each failure, wait (``first_s``, doubled each
    time up to ``max_s``) and try again. ``on_failure`` is told why, with no credentials in it.

    Cancellation is not a failure: it ends the loop (``attempt`` closes what it opened itself)."""
    delay = first_s
    while True:
        try:
            return await attempt()
        except Exception as exc:
            reason = scrub_credentials(f"{type(exc).__name__}: {exc}", nats_url)
            if on_failure is not None:
                on_failure(reason)
            log.warning(
                "%s: NATS at %s is not ready (%s); trying again in %.1f s",
                name,
                without_credentials(nats_url),
                reason,
                delay,
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_s)
