"""Durable pull consumers with an explicit acknowledgement policy.

FastStream's default would terminate a message on any exception; here every outcome is decided:

* a payload that does not decode is rejected (terminated): retrying cannot help;
* :class:`PermanentFailure` ends the job: ``job.failed`` is published, then the event is acked;
* any other exception is a passing failure: nack with exponential backoff, and once the delivery
  limit is reached the job is failed visibly instead of being dropped;
* long work sends ``in_progress`` heartbeats so the event is not redelivered mid-run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from faststream import AckPolicy, FastStream
from faststream.nats import ConsumerConfig, JStream, NatsBroker, PullSub
from faststream.nats.annotations import NatsMessage
from relisten_contracts import STREAM_NAME, ErrorInfo, Event, JobFailed, JobOptions, decode_event

from relisten_runtime.addresses import without_credentials
from relisten_runtime.infra import Infra, open_infra
from relisten_runtime.logs import job_context
from relisten_runtime.settings import CommonSettings

log = logging.getLogger(__name__)

EventHandler = Callable[[Any], Awaitable[None]]


class PermanentFailure(Exception):
    """The job cannot succeed (bad audio, a model that cannot load, ...): fail it, don't retry."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def backoff_delay(delivered: int, first_s: float) -> float:
    return float(min(first_s * 2 ** max(delivered - 1, 0), 60.0))


async def _heartbeat(msg: NatsMessage, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        with contextlib.suppress(Exception):
            await msg.in_progress()


class Worker:
    """A service's broker, its NATS handles and its subscriptions."""

    def __init__(self, name: str, settings: CommonSettings, *, fails_jobs: bool = True) -> None:
        """``fails_jobs=False`` is for services that act after a job is terminal (the notifier): when they
        give up on an event they log and ack instead of publishing ``job.failed``."""
        self.name = name
        self.fails_jobs = fails_jobs
        self.settings = settings
        self.broker = NatsBroker(settings.nats_url.split(","), max_reconnect_attempts=-1)
        self.app = FastStream(self.broker)
        self._infra: Infra | None = None
        self._on_stop: list[Callable[[], Awaitable[None]]] = []
        self.stream = JStream(STREAM_NAME, declare=False)

    @property
    def infra(self) -> Infra:
        if self._infra is None:
            raise RuntimeError("worker not started")
        return self._infra

    def consume(self, subject: str, durable: str, stage: str, handler: EventHandler) -> None:
        """Bind ``handler`` to a durable pull consumer shared by every replica of this service."""
        settings = self.settings

        async def on_message(msg: NatsMessage) -> None:
            await self._dispatch(msg, stage, handler)

        on_message.__name__ = f"{durable}_{stage}"
        self.broker.subscriber(
            subject,
            stream=self.stream,
            durable=durable,
            pull_sub=PullSub(batch_size=1, timeout=5.0),
            config=ConsumerConfig(
                ack_wait=settings.ack_wait_s,
                max_deliver=settings.max_deliver,
                max_ack_pending=1000,
            ),
            ack_policy=AckPolicy.MANUAL,
        )(on_message)

    async def _dispatch(self, msg: NatsMessage, stage: str, handler: EventHandler) -> None:
        try:
            event = decode_event(msg.body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.error("rejecting undecodable message on %s: %s", msg.raw_message.subject, exc)
            await msg.reject()
            return
        with job_context(event.job_id):
            await self._handle(msg, event, stage, handler)

    async def _handle(self, msg: NatsMessage, event: Event, stage: str, handler: EventHandler) -> None:
        heartbeat = asyncio.create_task(_heartbeat(msg, self.settings.heartbeat_s))
        try:
            await handler(event)
        except PermanentFailure as exc:
            log.warning("job %s failed in %s: %s", event.job_id, stage, exc.message)
            await self._fail_then_ack(msg, event, stage, ErrorInfo(code=exc.code, message=exc.message))
        except Exception as exc:
            delivered = msg.raw_message.metadata.num_delivered or 1
            if delivered >= self.settings.max_deliver:
                log.exception("job %s: %s gave up after %d deliveries", event.job_id, stage, delivered)
                error = ErrorInfo(
                    code=f"{stage}_failed",
                    message=f"{stage} failed {delivered} times; last error: {type(exc).__name__}: {exc}",
                )
                await self._fail_then_ack(msg, event, stage, error)
            else:
                delay = backoff_delay(delivered, self.settings.retry_backoff_s)
                log.warning(
                    "job %s: %s failed (delivery %d), retrying in %.1f s: %r",
                    event.job_id,
                    stage,
                    delivered,
                    delay,
                    exc,
                )
                await msg.nack(delay=delay)
        else:
            await msg.ack()
        finally:
            heartbeat.cancel()

    async def _fail_then_ack(self, msg: NatsMessage, event: Event, stage: str, error: ErrorInfo) -> None:
        if not self.fails_jobs:
            log.error("job %s: %s gave up: %s: %s", event.job_id, stage, error.code, error.message)
            await msg.ack()
            return
        options = getattr(event, "options", JobOptions())
        try:
            await self.infra.publish(
                JobFailed(job_id=event.job_id, stage=stage, error=error, options=options)
            )
        except Exception:
            log.exception(
                "could not publish job.failed for %s; leaving the event for redelivery",
                event.job_id,
            )
            await msg.nack(delay=self.settings.retry_backoff_s)
            return
        await msg.ack()

    async def start(self) -> None:
        self._infra = await open_infra(
            self.settings.nats_url, f"relisten-{self.name}", self.settings.stream_replicas
        )
        await self.broker.start()

    def on_stop(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run ``callback`` after the broker stops (close HTTP clients, release models)."""
        self._on_stop.append(callback)

    async def stop(self) -> None:
        await self.broker.stop()
        for callback in self._on_stop:
            with contextlib.suppress(Exception):
                await callback()
        if self._infra is not None:
            await self._infra.close()
            self._infra = None

    async def run_forever(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        await self.start()
        log.info("%s worker consuming from %s", self.name, without_credentials(self.settings.nats_url))
        try:
            await stop.wait()
        finally:
            await self.stop()
