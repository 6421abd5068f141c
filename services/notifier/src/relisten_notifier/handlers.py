"""job.merged / job.failed -> Discord embed and job callback, each at most once per (job, event, target).

Notifications are best effort: the job is already terminal, so a delivery that finally fails is logged,
recorded as given up and the event acked. Only a failure talking to NATS (the latch) propagates, and the
worker retries the event then.

Delivery is at least once: the latch is written after the receiver answered, so a crash (or a second
replica handling a duplicate event at the very same moment) in between may notify twice. Callback
receivers can drop that duplicate by its ``webhook-id``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from relisten_contracts import JobFailed, JobMerged, encode
from relisten_runtime.addresses import internal_address_of
from relisten_runtime.worker import Worker

from relisten_notifier.adapters import DeliveryLatch, DeliveryResult, HttpPoster
from relisten_notifier.domain import (
    DeliveryRecord,
    Notice,
    RetryPolicy,
    Target,
    callback_body,
    discord_execute_url,
    discord_message,
    event_kind,
    latch_key,
    signing_key,
    webhook_headers,
    webhook_id,
)
from relisten_notifier.settings import NotifierSettings

log = logging.getLogger(__name__)


def _policy(settings: NotifierSettings, attempts: int) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=attempts,
        backoff_s=settings.notify_backoff_s,
        backoff_max_s=settings.notify_backoff_max_s,
        jitter=settings.notify_jitter,
        max_retry_after_s=settings.notify_max_retry_after_s,
    )


@dataclass
class NotifyHandler:
    """Announces a finished job to Discord (when configured) and to the job's ``callback_url``."""

    worker: Worker
    settings: NotifierSettings
    discord: HttpPoster
    callbacks: HttpPoster
    clock: Callable[[], float] = time.time
    _key: bytes | None = field(init=False, default=None)
    _warned_unsigned: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        secret = self.settings.webhook_secret
        self._key = signing_key(secret.get_secret_value()) if secret is not None else None

    @classmethod
    def from_settings(cls, worker: Worker, settings: NotifierSettings) -> NotifyHandler:
        return cls(
            worker=worker,
            settings=settings,
            discord=HttpPoster(_policy(settings, settings.discord_max_attempts), settings.discord_timeout_s),
            callbacks=HttpPoster(
                _policy(settings, settings.callback_max_attempts), settings.callback_timeout_s
            ),
        )

    async def __call__(self, event: Notice) -> None:
        if not isinstance(event, JobMerged | JobFailed):
            log.warning("job %s: ignoring unexpected %s", event.job_id, type(event).__name__)
            return
        latch = DeliveryLatch(self.worker.infra.notify)
        deliveries: list[Awaitable[None]] = []
        secret_url = self.settings.discord_webhook_url
        discord_url = secret_url.get_secret_value() if secret_url is not None else ""
        if discord_url:
            deliveries.append(
                self._once(latch, event, "discord", lambda: self._send_discord(event, discord_url))
            )
        callback_url = event.options.callback_url
        if callback_url:
            deliveries.append(
                self._once(latch, event, "callback", lambda: self._send_callback(event, callback_url))
            )
        if not deliveries:
            return
        # Both run to the end even if one fails, so one target's latch error doesn't cut the other short.
        results = await asyncio.gather(*deliveries, return_exceptions=True)
        errors = [result for result in results if isinstance(result, BaseException)]
        for extra in errors[1:]:
            log.warning("job %s: another notice failed too: %r", event.job_id, extra)
        if errors:
            raise errors[0]

    async def _once(
        self,
        latch: DeliveryLatch,
        event: Notice,
        target: Target,
        send: Callable[[], Awaitable[DeliveryResult]],
    ) -> None:
        key = latch_key(event.job_id, event_kind(event), target)
        done = await latch.recorded(key)
        if done is not None:
            log.info("job %s: %s notice already %s, not sending it again", event.job_id, target, done.outcome)
            return
        result = await send()
        if result.delivered:
            log.info(
                "job %s: %s notice delivered (HTTP %s, attempt %d)",
                event.job_id,
                target,
                result.status,
                result.attempts,
            )
        else:
            log.error(
                "job %s: gave up on the %s notice after %d attempt(s): %s",
                event.job_id,
                target,
                result.attempts,
                result.reason,
            )
        await latch.record(
            key,
            DeliveryRecord(
                outcome="delivered" if result.delivered else "gave_up",
                attempts=result.attempts,
                at=self.clock(),
                status=result.status,
                reason=result.reason,
            ),
        )

    async def _send_discord(self, event: Notice, url: str) -> DeliveryResult:
        message = discord_message(
            event,
            username=self.settings.discord_username,
            public_url=self.settings.public_url,
            now=self.clock(),
        )
        return await self.discord.post(
            discord_execute_url(url),
            encode(message),
            lambda: {"content-type": "application/json"},
            target="discord",
            job_id=event.job_id,
        )

    async def _send_callback(self, event: Notice, url: str) -> DeliveryResult:
        if self.settings.callback_private_addresses == "deny":
            internal = await internal_address_of(url)
            if internal is not None:
                return DeliveryResult(
                    False,
                    0,
                    reason=f"callback host resolves to the internal address {internal}, "
                    "refused (RELISTEN_CALLBACK_PRIVATE_ADDRESSES=deny)",
                )
        if self._key is None and not self._warned_unsigned:
            self._warned_unsigned = True
            log.warning("RELISTEN_WEBHOOK_SECRET is not set: job callbacks are sent unsigned")
        body = callback_body(event, public_url=self.settings.public_url, now=self.clock())
        msg_id = webhook_id(event)

        def headers() -> dict[str, str]:
            return webhook_headers(msg_id, int(self.clock()), body, self._key)

        return await self.callbacks.post(url, body, headers, target="callback", job_id=event.job_id)
