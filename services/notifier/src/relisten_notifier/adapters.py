"""Side effects of the notifier: HTTP posts with retries (httpx) and the delivery latch in KV.

URLs are never logged: a Discord webhook URL carries its token, and a callback URL may carry one.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import httpx
import msgspec
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from relisten_contracts import encode

from relisten_notifier.domain import (
    Delivered,
    DeliveryRecord,
    GiveUp,
    RetryPolicy,
    Verdict,
    judge_response,
    judge_transport_error,
)

log = logging.getLogger(__name__)

USER_AGENT = "relisten-notifier/0.1"

HeadersFactory = Callable[[], Mapping[str, str]]
"""Builds the headers of each attempt (callbacks are signed again with the attempt's timestamp)."""


@dataclass(frozen=True)
class DeliveryResult:
    delivered: bool
    attempts: int
    status: int | None = None
    reason: str = ""


class HttpPoster:
    """POSTs one body to one URL until it is delivered or the :class:`RetryPolicy` says give up.

    ``sleep``, ``clock`` and ``rand`` are injectable so that tests can watch the waits.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        timeout_s: float,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.policy = policy
        self.timeout_s = timeout_s
        self._sleep = sleep
        self._clock = clock
        self._rand = rand
        self._transport = transport

    async def post(
        self, url: str, body: bytes, headers: HeadersFactory, *, target: str, job_id: str
    ) -> DeliveryResult:
        # A client per delivery: notifications are rare, and this leaves no pool to close on shutdown.
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout_s),
            follow_redirects=False,
            headers={"user-agent": USER_AGENT},
            transport=self._transport,
        ) as client:
            attempt = 0
            while True:
                attempt += 1
                verdict = await self._attempt(client, url, body, headers, attempt)
                if isinstance(verdict, Delivered):
                    return DeliveryResult(True, attempt, verdict.status)
                if isinstance(verdict, GiveUp):
                    return DeliveryResult(False, attempt, verdict.status, verdict.reason)
                log.warning(
                    "job %s: %s attempt %d failed (%s), retrying in %.2f s",
                    job_id,
                    target,
                    attempt,
                    verdict.reason,
                    verdict.delay_s,
                )
                await self._sleep(verdict.delay_s)

    async def _attempt(
        self, client: httpx.AsyncClient, url: str, body: bytes, headers: HeadersFactory, attempt: int
    ) -> Verdict:
        try:
            response = await client.post(url, content=body, headers=dict(headers()))
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            return GiveUp(f"invalid URL ({type(exc).__name__})")
        except httpx.TransportError as exc:
            return judge_transport_error(
                f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
                attempt=attempt,
                policy=self.policy,
                random_fraction=self._rand(),
            )
        return judge_response(
            response.status_code,
            response.headers,
            response.content,
            attempt=attempt,
            policy=self.policy,
            now=self._clock(),
            random_fraction=self._rand(),
        )


class DeliveryLatch:
    """Per (job, event, target) record in the notify KV bucket: present means "done, don't send again"."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    async def recorded(self, key: str) -> DeliveryRecord | None:
        """The stored record, or None when nothing was recorded under ``key``."""
        try:
            entry = await self.kv.get(key)
        except KeyNotFoundError:
            return None
        try:
            return msgspec.json.decode(entry.value or b"", type=DeliveryRecord)
        except (msgspec.DecodeError, msgspec.ValidationError):
            # Whatever wrote it, the key exists: treat it as done rather than risk a second notice.
            log.warning("unreadable delivery record under %s; treating it as done", key)
            return DeliveryRecord(outcome="unknown", attempts=0, at=0.0)

    async def record(self, key: str, record: DeliveryRecord) -> None:
        await self.kv.put(key, encode(record))
