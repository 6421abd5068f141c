"""Side effects of the notifier: HTTP posts with retries (httpx) and the delivery latch in KV.

URLs are never logged: a Discord webhook URL carries its token, and a callback URL may carry one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import httpx
import msgspec
from relisten_contracts import encode
from relisten_runtime.store import JobStore

from relisten_notifier.domain import DeliveryRecord, DisabledDestination

log = logging.getLogger(__name__)

USER_AGENT = "relisten-notifier/0.1"


MAX_RESPONSE_BYTES = 64 * 1024
"""Of a receiver's answer only this much is read: enough for an error message or Discord's
``retry_after``, and a receiver cannot make the notifier hold a large body in memory."""


@dataclass(frozen=True)
class Answer:
    """One attempt's outcome: the response (``status``, ``headers``, up to :data:`MAX_RESPONSE_BYTES`
    of its ``body``), or ``status`` None and the transport ``error``."""

    status: int | None
    headers: Mapping[str, str]
    body: bytes = b""
    error: str = ""
    invalid_url: bool = False


async def read_capped(response: httpx.Response, limit: int = MAX_RESPONSE_BYTES) -> bytes:
    """At most ``limit`` bytes of a streamed response's body (the rest is not read)."""
    kept = bytearray()
    async for chunk in response.aiter_bytes():
        kept += chunk[: limit - len(kept)]
        if len(kept) >= limit:
            break
    return bytes(kept)


class HttpPoster:
    """POSTs one body to one URL, once. Retrying is the notifier's durable schedule (the event comes
    back from NATS when the next attempt is due), never a wait inside the handler."""

    def __init__(self, timeout_s: float, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.timeout_s = timeout_s
        self._transport = transport

    async def send(self, url: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        # A client per delivery: notifications are rare, and this leaves no pool to close on shutdown.
        try:
            async with (
                httpx.AsyncClient(
                    timeout=httpx.Timeout(self.timeout_s),
                    follow_redirects=False,
                    headers={"user-agent": USER_AGENT},
                    transport=self._transport,
                ) as client,
                client.stream("POST", url, content=body, headers=dict(headers)) as response,
            ):
                data = await read_capped(response)
                return Answer(response.status_code, dict(response.headers), data)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            return Answer(None, {}, error=f"invalid URL ({type(exc).__name__})", invalid_url=True)
        except httpx.TransportError as exc:
            return Answer(None, {}, error=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


class DeliveryLatch:
    """Per (job, event, target) record in the job store's notice records (the ``relisten-notify`` KV
    bucket): a final one means "done, don't send again"; and the destinations disabled for a while."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    async def recorded(self, key: str) -> DeliveryRecord | None:
        """The stored record, or None when nothing was recorded under ``key``."""
        data = await self.store.notice_record(key)
        if data is None:
            return None
        try:
            return msgspec.json.decode(data, type=DeliveryRecord)
        except (msgspec.DecodeError, msgspec.ValidationError):
            # Whatever wrote it, the key exists: treat it as done rather than risk a second notice.
            log.warning("unreadable delivery record under %s; treating it as done", key)
            return DeliveryRecord(outcome="unknown", attempts=0, at=0.0)

    async def record(self, key: str, record: DeliveryRecord) -> None:
        await self.store.put_notice_record(key, encode(record))

    async def disabled(self, key: str) -> DisabledDestination | None:
        data = await self.store.notice_record(key)
        if data is None:
            return None
        try:
            return msgspec.json.decode(data, type=DisabledDestination)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None

    async def disable(self, key: str, record: DisabledDestination) -> None:
        await self.store.put_notice_record(key, encode(record))
