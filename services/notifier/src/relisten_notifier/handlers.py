"""job.merged / job.failed -> Discord embed and job callback, each at most once per (job, run, event,
target), retried on a durable schedule.

Each delivery of the event makes at most one HTTP attempt per target. A target that failed is recorded
as ``pending`` in the latch (with the time its next attempt is due) and the event is nacked with that
delay, so NATS brings it back then: retries survive restarts and outages of the notifier, and no
handler ever sleeps, so one receiver's 429 or outage never holds up another job's notice. The consumers
are declared FOREVER; the schedule (``RELISTEN_NOTIFY_SCHEDULE``) is what bounds the attempts.

A receiver answering 401, 404 or 410 disables that destination (Discord, or one callback URL) for
``RELISTEN_NOTIFY_DISABLE_S``: a KV entry, an error log line, and a gauge in ingest's ``/metrics``.

Delivery is at least once: the latch is written after the receiver answered, so a crash (or a second
replica handling a duplicate event at the very same moment) in between may notify twice. Callback
receivers can drop that duplicate by its ``webhook-id``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from relisten_contracts import Event, encode
from relisten_runtime.addresses import internal_address_of
from relisten_runtime.steps import NOTHING
from relisten_runtime.store import JobStore, nats_store_of
from relisten_runtime.worker import RetryLater as Redeliver
from relisten_runtime.worker import Worker

from relisten_notifier.adapters import Answer, DeliveryLatch, HttpPoster
from relisten_notifier.domain import (
    Delivered,
    DeliveryRecord,
    Disable,
    DisabledDestination,
    GiveUp,
    Notice,
    RetryLater,
    Target,
    callback_body,
    destination_key,
    discord_execute_url,
    discord_message,
    event_kind,
    judge_scheduled,
    latch_key,
    signing_key,
    webhook_headers,
    webhook_id,
)
from relisten_notifier.settings import NotifierSettings

log = logging.getLogger(__name__)


@dataclass
class NotifyHandler:
    """Announces a finished job to Discord (when configured) and to the job's ``callback_url``: the
    ``notifying`` steps (:data:`relisten_contracts.flow.NOTIFYING_MERGED`, ``NOTIFYING_FAILED``),
    which publish nothing."""

    store: JobStore
    """Where the delivery latches are kept (:class:`~relisten_notifier.adapters.DeliveryLatch`)."""
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
            store=nats_store_of(worker),
            settings=settings,
            discord=HttpPoster(settings.discord_timeout_s),
            callbacks=HttpPoster(settings.callback_timeout_s),
        )

    async def __call__(self, event: Notice) -> Sequence[Event]:
        latch = DeliveryLatch(self.store)
        deliveries: list[Awaitable[float | None]] = []
        secret_url = self.settings.discord_webhook_url
        discord_url = secret_url.get_secret_value() if secret_url is not None else ""
        if discord_url:
            deliveries.append(
                self._deliver(
                    latch, event, "discord", discord_url, lambda: self._send_discord(event, discord_url)
                )
            )
        callback_url = event.options.callback_url
        if callback_url:
            deliveries.append(
                self._deliver(
                    latch, event, "callback", callback_url, lambda: self._send_callback(event, callback_url)
                )
            )
        if not deliveries:
            return NOTHING
        # Both run to the end even if one fails, so one target's latch error doesn't cut the other short.
        results = await asyncio.gather(*deliveries, return_exceptions=True)
        errors = [result for result in results if isinstance(result, BaseException)]
        for extra in errors[1:]:
            log.warning("job %s: another notice failed too: %r", event.job_id, extra)
        if errors:
            raise errors[0]
        waits = [result for result in results if isinstance(result, float)]
        if waits:
            raise Redeliver(min(waits), "a notice is due again")
        return NOTHING

    async def _deliver(
        self,
        latch: DeliveryLatch,
        event: Notice,
        target: Target,
        url: str,
        send: Callable[[], Awaitable[Answer | str]],
    ) -> float | None:
        """One attempt if one is due; None when this target is done with, else seconds until it is due."""
        key = latch_key(event.job_id, event_kind(event), target, event.attempt)
        record = await latch.recorded(key)
        now = self.clock()
        if record is not None and record.final:
            log.info(
                "job %s: %s notice already %s, not sending it again", event.job_id, target, record.outcome
            )
            return None
        if record is not None and record.next_at > now:
            return record.next_at - now
        failures = record.attempts if record is not None else 0
        disabled_key = destination_key(target, url)
        disabled = await latch.disabled(disabled_key)
        if disabled is not None and disabled.until > now:
            log.warning(
                "job %s: the %s destination is disabled (HTTP %d) until %s; notice not sent",
                event.job_id,
                target,
                disabled.status,
                time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(disabled.until)),
            )
            await latch.record(key, _final("gave_up", failures, now, disabled.status, "destination disabled"))
            return None
        answer = await send()
        if isinstance(answer, str):  # refused before sending
            await latch.record(key, _final("gave_up", failures, now, None, answer))
            log.error("job %s: %s notice not sent: %s", event.job_id, target, answer)
            return None
        verdict = (
            GiveUp(answer.error)
            if answer.invalid_url
            else judge_scheduled(
                answer.status,
                answer.headers,
                answer.body,
                failures_before=failures,
                schedule=self.settings.notify_schedule,
                max_retry_after_s=self.settings.notify_max_retry_after_s,
                now=now,
                transport_error=answer.error,
            )
        )
        attempts = failures + 1
        if isinstance(verdict, Delivered):
            log.info(
                "job %s: %s notice delivered (HTTP %s, attempt %d)",
                event.job_id,
                target,
                verdict.status,
                attempts,
            )
            await latch.record(key, _final("delivered", attempts, now, verdict.status, ""))
            return None
        if isinstance(verdict, RetryLater):
            log.warning(
                "job %s: %s attempt %d failed (%s); next in %.0f s",
                event.job_id,
                target,
                attempts,
                verdict.reason,
                verdict.delay_s,
            )
            await latch.record(
                key,
                DeliveryRecord(
                    outcome="pending",
                    attempts=attempts,
                    at=now,
                    status=answer.status,
                    reason=verdict.reason,
                    next_at=now + verdict.delay_s,
                ),
            )
            return verdict.delay_s
        if isinstance(verdict, Disable):
            until = now + self.settings.notify_disable_s
            log.error(
                "job %s: the %s destination answered HTTP %d: disabling it for %.0f s (%s)",
                event.job_id,
                target,
                verdict.status,
                self.settings.notify_disable_s,
                verdict.reason,
            )
            await latch.disable(
                disabled_key,
                DisabledDestination(
                    target=target, status=verdict.status, at=now, until=until, reason=verdict.reason
                ),
            )
            await latch.record(key, _final("gave_up", attempts, now, verdict.status, verdict.reason))
            return None
        log.error(
            "job %s: gave up on the %s notice after %d attempt(s): %s",
            event.job_id,
            target,
            attempts,
            verdict.reason,
        )
        await latch.record(key, _final("gave_up", attempts, now, verdict.status, verdict.reason))
        return None

    async def _send_discord(self, event: Notice, url: str) -> Answer | str:
        message = discord_message(
            event,
            username=self.settings.discord_username,
            public_url=self.settings.public_url,
            now=self.clock(),
        )
        return await self.discord.send(
            discord_execute_url(url), encode(message), {"content-type": "application/json"}
        )

    async def _send_callback(self, event: Notice, url: str) -> Answer | str:
        """The answer, or why the callback was refused without being sent."""
        if self.settings.callback_private_addresses == "deny":
            internal = await internal_address_of(url)
            if internal is not None:
                return (
                    f"callback host resolves to the internal address {internal}, "
                    "refused (RELISTEN_CALLBACK_PRIVATE_ADDRESSES=deny)"
                )
        if self._key is None and not self._warned_unsigned:
            self._warned_unsigned = True
            log.warning("RELISTEN_NOTIFIER_WEBHOOK_SECRET is not set: job callbacks are sent unsigned")
        body = callback_body(event, public_url=self.settings.public_url, now=self.clock())
        # Signed with this attempt's timestamp: a receiver checks it is recent.
        headers = webhook_headers(webhook_id(event), int(self.clock()), body, self._key)
        return await self.callbacks.send(url, body, headers)


def _final(outcome: str, attempts: int, now: float, status: int | None, reason: str) -> DeliveryRecord:
    return DeliveryRecord(outcome=outcome, attempts=attempts, at=now, status=status, reason=reason)
