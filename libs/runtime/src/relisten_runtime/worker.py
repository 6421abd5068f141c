"""Durable pull consumers with an explicit acknowledgement policy.

FastStream's default would terminate a message on any exception; here every outcome is decided:

* a payload that does not decode is rejected (terminated): retrying cannot help;
* :class:`PermanentFailure` ends the job: ``job.failed`` is published, then the event is acked;
* any other exception is a passing failure: nack with exponential backoff, and once the delivery
  limit is reached the job is failed visibly instead of being dropped;
* long work sends ``in_progress`` heartbeats so the event is not redelivered mid-run, but only for
  ``RELISTEN_MAX_HANDLING_S`` (plus a share per second of audio): a hung handler fails its job with
  ``handling_timeout`` instead of holding it forever;
* on shutdown (:meth:`Worker.stop`) the worker stops fetching, lets in-flight events finish within
  ``RELISTEN_SHUTDOWN_GRACE_S`` and hands back what is still running with a nak without delay, so a
  restarted replica picks it up at once instead of after an AckWait.

JetStream counts a nak'd event's next delivery like any other (``num_delivered`` goes up), so a
hand-back is recorded in the ``relisten-runtime`` bucket and not counted as a failed attempt; the
consumer allows ``RELISTEN_SHUTDOWN_DELIVERIES`` extra deliveries for them. An event handed back
more often than that reaches the server's limit: the server stops delivering it and the watchdog in
ingest (max-deliveries advisory) fails the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from faststream import AckPolicy, FastStream
from faststream.nats import ConsumerConfig, JStream, NatsBroker, PullSub
from faststream.nats.annotations import NatsMessage
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.errors import KeyNotFoundError
from relisten_contracts import STREAM_NAME, ErrorInfo, Event, JobFailed, JobOptions, decode_event

from relisten_runtime.addresses import scrub_credentials, without_credentials
from relisten_runtime.infra import Infra, attempt_context, open_infra
from relisten_runtime.logs import job_context
from relisten_runtime.settings import CommonSettings

log = logging.getLogger(__name__)

EventHandler = Callable[[Any], Awaitable[None]]

STARTUP_RETRY_FIRST_S = 1.0
STARTUP_RETRY_MAX_S = 30.0

FOREVER = -1
"""``max_deliver`` of a consumer that must never give up (the job view projector)."""


@dataclass(frozen=True)
class ConsumerSpec:
    subject: str
    durable: str
    max_deliver: int
    """Deliveries before the job is failed; :data:`FOREVER` for never."""


class PermanentFailure(Exception):
    """The job cannot succeed (bad audio, a model that cannot load, ...): fail it, don't retry."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class RetryLater(Exception):
    """Not now, on a schedule the handler chooses (the notifier's delivery schedule, a receiver's
    ``Retry-After``): the event is nacked with ``delay_s`` and comes back then. Not a failure: it is
    meant for consumers declared :data:`FOREVER`, whose handler bounds its own attempts."""

    def __init__(self, delay_s: float, reason: str = "") -> None:
        super().__init__(reason or f"retry in {delay_s:.1f} s")
        self.delay_s = max(delay_s, 0.0)
        self.reason = reason


def backoff_delay(delivered: int, first_s: float) -> float:
    return float(min(first_s * 2 ** max(delivered - 1, 0), 60.0))


async def _heartbeat(msg: NatsMessage, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        with contextlib.suppress(Exception):
            await msg.in_progress()


def handling_limit_s(settings: CommonSettings, event: Event) -> float:
    """How long one handler may work on ``event``: a base plus a share per second of the job's audio."""
    duration = float(getattr(event, "duration_s", 0.0) or 0.0)
    return settings.max_handling_s + settings.max_handling_per_audio_s * max(duration, 0.0)


def handed_back_key(durable: str, stream_seq: int) -> str:
    return f"handed-back.{durable}.{stream_seq}"


class Worker:
    """A service's broker, its NATS handles and its subscriptions."""

    def __init__(self, name: str, settings: CommonSettings, *, fails_jobs: bool = True) -> None:
        """``fails_jobs=False`` is for services that act after a job is terminal (the notifier): when they
        give up on an event they log and ack instead of publishing ``job.failed``."""
        self.name = name
        self.fails_jobs = fails_jobs
        self.settings = settings
        # FastStream's own grace is longer than ours: the worker decides when in-flight work is handed
        # back (see stop), FastStream only cancels what is left after that.
        self.broker = NatsBroker(
            settings.nats_url.split(","),
            max_reconnect_attempts=-1,
            graceful_timeout=settings.shutdown_grace_s + 30.0,
        )
        self.app = FastStream(self.broker)
        self._infra: Infra | None = None
        self._on_stop: list[Callable[[], Awaitable[None]]] = []
        self.stream = JStream(STREAM_NAME, declare=False)
        self.consumers: list[ConsumerSpec] = []
        self._in_flight: dict[asyncio.Future[None], tuple[NatsMessage, ConsumerSpec]] = {}
        self._handed_back: set[asyncio.Future[None]] = set()
        self.handed_back_on_stop = 0
        """Events still running at the end of the grace and handed back by :meth:`stop`."""
        self._draining = False
        self._broker_started = False

    @property
    def infra(self) -> Infra:
        if self._infra is None:
            raise RuntimeError("worker not started")
        return self._infra

    def _server_max_deliver(self, spec: ConsumerSpec) -> int:
        if spec.max_deliver == FOREVER:
            return FOREVER
        return spec.max_deliver + self.settings.shutdown_deliveries

    def consume(
        self,
        subject: str,
        durable: str,
        stage: str,
        handler: EventHandler,
        *,
        max_deliver: int | None = None,
    ) -> None:
        """Bind ``handler`` to a durable pull consumer shared by every replica of this service.

        ``max_deliver`` defaults to ``RELISTEN_MAX_DELIVER``; :data:`FOREVER` retries with backoff
        for as long as it takes (for a consumer whose events must all land, like the job view's).
        """
        settings = self.settings
        spec = ConsumerSpec(subject, durable, settings.max_deliver if max_deliver is None else max_deliver)
        self.consumers.append(spec)

        async def on_message(msg: NatsMessage) -> None:
            await self._dispatch(msg, spec, stage, handler)

        on_message.__name__ = f"{durable}_{stage}"
        self.broker.subscriber(
            subject,
            stream=self.stream,
            durable=durable,
            pull_sub=PullSub(batch_size=1, timeout=5.0),
            config=self._consumer_config(spec),
            ack_policy=AckPolicy.MANUAL,
        )(on_message)

    def _consumer_config(self, spec: ConsumerSpec) -> ConsumerConfig:
        return ConsumerConfig(
            ack_wait=self.settings.ack_wait_s,
            max_deliver=self._server_max_deliver(spec),
            max_ack_pending=1000,
        )

    async def _ensure_consumers(self) -> None:
        """Create or update each durable consumer with today's settings (a consumer created by an
        earlier version keeps its old limits otherwise: nats-py's pull_subscribe binds to it as it is)."""
        for spec in self.consumers:
            config = self._consumer_config(spec)
            config.name = spec.durable
            config.durable_name = spec.durable
            config.filter_subject = spec.subject
            config.ack_policy = JsAckPolicy.EXPLICIT
            try:
                await self.infra.js.add_consumer(STREAM_NAME, config)
            except Exception as exc:
                log.warning("could not update consumer %s (keeping its configuration): %r", spec.durable, exc)

    async def _dispatch(
        self, msg: NatsMessage, spec: ConsumerSpec, stage: str, handler: EventHandler
    ) -> None:
        if self._draining:
            # Fetched while shutting down: hand it straight back for another replica or the restart.
            await self._hand_back(msg, spec)
            return
        try:
            event = decode_event(msg.body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.error("rejecting undecodable message on %s: %s", msg.raw_message.subject, exc)
            await msg.reject()
            return
        with job_context(event.job_id), attempt_context(event.attempt):
            await self._handle(msg, event, spec, stage, handler)

    async def _handle(
        self, msg: NatsMessage, event: Event, spec: ConsumerSpec, stage: str, handler: EventHandler
    ) -> None:
        # The handler runs as its own task (inheriting the job's log and run context) so that a
        # shutdown can cancel it alone, leaving this dispatch to end quietly: the event is back in
        # NATS already.
        work: asyncio.Future[None] = asyncio.ensure_future(handler(event))
        self._in_flight[work] = (msg, spec)
        heartbeat = asyncio.create_task(_heartbeat(msg, self.settings.heartbeat_s))
        limit_s = handling_limit_s(self.settings, event)
        try:
            timer = asyncio.timeout(limit_s)
            try:
                async with timer:
                    await work
            except TimeoutError:
                if not timer.expired():
                    raise
                raise PermanentFailure(
                    "handling_timeout",
                    f"{stage} worked on this event for more than {limit_s:.0f} s "
                    "(RELISTEN_MAX_HANDLING_S) and was stopped",
                ) from None
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if work in self._handed_back and not (current is not None and current.cancelling()):
                return
            raise
        except RetryLater as exc:
            log.info("job %s: %s again in %.1f s: %s", event.job_id, stage, exc.delay_s, exc.reason)
            await msg.nack(delay=exc.delay_s)
        except PermanentFailure as exc:
            log.warning("job %s failed in %s: %s", event.job_id, stage, exc.message)
            await self._fail_then_ack(msg, event, stage, ErrorInfo(code=exc.code, message=exc.message))
        except Exception as exc:
            await self._passing_failure(msg, event, spec, stage, exc)
        else:
            await msg.ack()
        finally:
            heartbeat.cancel()
            self._in_flight.pop(work, None)
            self._handed_back.discard(work)
            if not work.done():
                work.cancel()

    async def _passing_failure(
        self, msg: NatsMessage, event: Event, spec: ConsumerSpec, stage: str, exc: Exception
    ) -> None:
        delivered = msg.raw_message.metadata.num_delivered or 1
        attempts = delivered - await self._handed_back_count(msg, spec)
        last = spec.max_deliver != FOREVER and (
            attempts >= spec.max_deliver or delivered >= self._server_max_deliver(spec)
        )
        if last:
            log.exception("job %s: %s gave up after %d attempts", event.job_id, stage, attempts)
            error = ErrorInfo(
                code=f"{stage}_failed",
                message=f"{stage} failed {attempts} times; last error: {type(exc).__name__}: {exc}",
            )
            await self._fail_then_ack(msg, event, stage, error)
            return
        delay = backoff_delay(attempts, self.settings.retry_backoff_s)
        log.warning(
            "job %s: %s failed (attempt %d), retrying in %.1f s: %r",
            event.job_id,
            stage,
            attempts,
            delay,
            exc,
        )
        await msg.nack(delay=delay)

    async def _handed_back_count(self, msg: NatsMessage, spec: ConsumerSpec) -> int:
        """How many of this event's deliveries were handed back on shutdown (not failed attempts)."""
        if (msg.raw_message.metadata.num_delivered or 1) <= 1:
            return 0
        key = handed_back_key(spec.durable, msg.raw_message.metadata.sequence.stream)
        try:
            entry = await self.infra.runtime.get(key)
        except KeyNotFoundError:
            return 0
        except Exception as exc:
            log.warning("cannot read %s, counting every delivery as an attempt: %r", key, exc)
            return 0
        return int(entry.value or b"0")

    async def _hand_back(self, msg: NatsMessage, spec: ConsumerSpec) -> None:
        """Nak without delay (redelivered at once, to another replica or after the restart) and note it,
        so the delivery it uses up is not counted as a failed attempt."""
        try:
            await msg.nack()
        except Exception as exc:
            log.warning(
                "could not hand back %s (redelivered after the AckWait): %r", msg.raw_message.subject, exc
            )
            return
        if self._infra is None:
            return
        key = handed_back_key(spec.durable, msg.raw_message.metadata.sequence.stream)
        try:
            count = await self._handed_back_count(msg, spec)
            await self._infra.runtime.put(key, str(count + 1).encode())
        except Exception as exc:
            log.warning("could not record the hand-back of %s: %r", key, exc)

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

    async def start(self, *, wait_for_nats: bool = True) -> None:
        """Open NATS, declare the consumers and start consuming. ``wait_for_nats=False`` raises when
        NATS cannot answer yet instead of retrying (for a caller with its own retry loop)."""
        self._draining = False
        if wait_for_nats:
            self._infra = await self._open_infra_patiently()
        else:
            self._infra = await open_infra(
                self.settings.nats_url, f"relisten-{self.name}", self.settings.stream_replicas
            )
        await self._ensure_consumers()
        await self.broker.start()
        self._broker_started = True

    async def _open_infra_patiently(self) -> Infra:
        """Open the NATS handles, retrying with backoff while NATS cannot answer yet.

        A JetStream cluster that is electing a leader, or a server restarting, answers its API with
        timeouts for a while; a worker starting then waits for it instead of exiting."""
        delay = STARTUP_RETRY_FIRST_S
        while True:
            try:
                return await open_infra(
                    self.settings.nats_url, f"relisten-{self.name}", self.settings.stream_replicas
                )
            except Exception as exc:
                log.warning(
                    "%s: NATS at %s is not ready (%s); trying again in %.0f s",
                    self.name,
                    without_credentials(self.settings.nats_url),
                    scrub_credentials(f"{type(exc).__name__}: {exc}", self.settings.nats_url),
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, STARTUP_RETRY_MAX_S)

    def on_stop(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run ``callback`` after the broker stops (close HTTP clients, release models)."""
        self._on_stop.append(callback)

    async def stop(self) -> None:
        """Drain: stop fetching, give in-flight events ``RELISTEN_SHUTDOWN_GRACE_S`` to finish, hand
        back the rest (nak, no delay), then close everything."""
        self._draining = True
        stopping = asyncio.create_task(self.broker.stop())
        if self._broker_started and self._in_flight:
            log.info(
                "%s: draining %d in-flight event(s), up to %.0f s",
                self.name,
                len(self._in_flight),
                self.settings.shutdown_grace_s,
            )
        done, _ = await asyncio.wait({stopping}, timeout=self.settings.shutdown_grace_s)
        if not done:
            await self._hand_back_in_flight()
        await stopping
        self._broker_started = False
        for callback in self._on_stop:
            with contextlib.suppress(Exception):
                await callback()
        if self._infra is not None:
            await self._infra.close()
            self._infra = None

    async def _hand_back_in_flight(self) -> None:
        in_flight = list(self._in_flight.items())
        for task, (msg, spec) in in_flight:
            log.warning("%s: handing back %s unfinished at shutdown", self.name, msg.raw_message.subject)
            await self._hand_back(msg, spec)
            self._handed_back.add(task)
            self.handed_back_on_stop += 1
            task.cancel()
        if in_flight:
            # A handler stuck in a thread cannot be interrupted; its event is back in NATS already.
            await asyncio.wait([task for task, _ in in_flight], timeout=5.0)

    async def run_forever(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        await self.start()
        log.info("%s worker consuming from %s", self.name, without_credentials(self.settings.nats_url))
        try:
            await stop.wait()
        finally:
            await self.stop()
