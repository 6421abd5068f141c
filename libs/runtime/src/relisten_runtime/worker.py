"""Durable pull consumers with an explicit acknowledgement policy, one per declared step.

A service binds a typed handler to each of its steps (:mod:`relisten_contracts.flow`,
:mod:`relisten_runtime.steps`); the worker pulls each step's events from its durable consumer (nats.py,
one event at a time per pull loop, over the one NATS connection of :class:`Infra`; a step runs one loop
per replica unless bound with a higher ``concurrency``), decodes them
into the step's declared type, publishes what the handler returns (deterministic message ids,
:meth:`Infra.publish`) and decides every outcome:

* a payload that does not decode, or is not the step's event type, is rejected (terminated): retrying
  cannot help;
* :class:`PermanentFailure` ends the job: ``job.failed`` is published, then the event is acked;
* any other exception is a passing failure: nack with exponential backoff, and once the delivery
  limit is reached the job is failed visibly instead of being dropped;
* :class:`RetryLater` nacks with the handler's own delay (the notifier's delivery schedule);
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

import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import KeyNotFoundError, NotFoundError
from relisten_contracts import STREAM_NAME, ErrorInfo, Event, JobFailed, JobOptions, decode_event
from relisten_contracts.flow import FOREVER, StepSpec

from relisten_runtime.addresses import without_credentials
from relisten_runtime.infra import Infra, attempt_context, open_infra
from relisten_runtime.logs import job_context
from relisten_runtime.settings import CommonSettings
from relisten_runtime.startup import until_nats_answers
from relisten_runtime.steps import E, Handler, Step, check_declared

log = logging.getLogger(__name__)

__all__ = [
    "FOREVER",
    "ConsumerSpec",
    "PermanentFailure",
    "RetryLater",
    "Worker",
    "backoff_delay",
    "handed_back_key",
    "handling_limit_s",
]

STARTUP_RETRY_FIRST_S = 1.0
STARTUP_RETRY_MAX_S = 30.0

FETCH_WAIT_S = 5.0
"""How long one pull request waits for an event; an idle step asks again after that."""
FETCH_ERROR_PAUSE_S = 1.0
"""Pause after a pull that failed (NATS reconnecting) before asking again."""


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


async def _heartbeat(msg: Msg, every_s: float) -> None:
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


def _delivered(msg: Msg) -> int:
    return msg.metadata.num_delivered or 1


def _stream_seq(msg: Msg) -> int:
    return msg.metadata.sequence.stream


@dataclass
class _Bound:
    """A step with its consumer's limits, as the worker runs it."""

    step: Step
    consumer: ConsumerSpec
    concurrency: int = 1
    """Pull loops of this step in this replica, so that many events are in hand at once."""

    @property
    def spec(self) -> StepSpec[Event]:
        return self.step.spec


class Worker:
    """A service's steps, its NATS handles (one connection) and the pull loops that run the steps."""

    def __init__(self, name: str, settings: CommonSettings) -> None:
        self.name = name
        self.settings = settings
        self._infra: Infra | None = None
        self._on_start: list[Callable[[], Awaitable[None]]] = []
        self._on_stop: list[Callable[[], Awaitable[None]]] = []
        self._bound: list[_Bound] = []
        self._loops: list[asyncio.Task[None]] = []
        self._idle: set[asyncio.Task[None]] = set()
        """Loops waiting in a pull request (nothing in hand): stopping cancels them at once."""
        self._in_flight: dict[asyncio.Future[None], tuple[Msg, ConsumerSpec]] = {}
        self._handed_back: set[asyncio.Future[None]] = set()
        self.handed_back_on_stop = 0
        """Events still running at the end of the grace and handed back by :meth:`stop`."""
        self._draining = False

    @property
    def infra(self) -> Infra:
        if self._infra is None:
            raise RuntimeError("worker not started")
        return self._infra

    @property
    def steps(self) -> list[Step]:
        return [bound.step for bound in self._bound]

    @property
    def consumers(self) -> list[ConsumerSpec]:
        return [bound.consumer for bound in self._bound]

    def _server_max_deliver(self, spec: ConsumerSpec) -> int:
        if spec.max_deliver == FOREVER:
            return FOREVER
        return spec.max_deliver + self.settings.shutdown_deliveries

    def step(self, spec: StepSpec[E], handler: Handler[E], *, concurrency: int = 1) -> None:
        """Bind ``handler`` to the step ``spec``: a durable pull consumer shared by every replica of
        this service. Call before :meth:`start`.

        ``concurrency`` pull loops run the step in this replica, each one event at a time, as that
        many replicas would (each event keeps its own heartbeat, handling limit, acknowledgement and
        hand-back): the handler must be safe to run on several events at once."""
        if any(bound.spec.durable == spec.durable for bound in self._bound):
            raise ValueError(f"{self.name}: durable {spec.durable!r} is bound twice")
        if concurrency < 1:
            raise ValueError(f"{self.name}: step {spec.durable!r} needs a concurrency of at least 1")
        max_deliver = self.settings.max_deliver if spec.max_deliver is None else spec.max_deliver
        consumer = ConsumerSpec(spec.subject, spec.durable, max_deliver)
        self._bound.append(_Bound(Step(spec, handler), consumer, concurrency))

    async def publish(self, event: Event) -> None:
        """The :class:`~relisten_runtime.steps.Publisher` port of this worker's handlers: publish now,
        with the event's deterministic message id. Only event types its steps declare."""
        allowed = tuple(kind for bound in self._bound for kind in bound.spec.publishes)
        check_declared(allowed, event, self.name)
        await self.infra.publish(event)

    def _consumer_config(self, spec: ConsumerSpec) -> ConsumerConfig:
        return ConsumerConfig(
            name=spec.durable,
            durable_name=spec.durable,
            filter_subject=spec.subject,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.settings.ack_wait_s,
            max_deliver=self._server_max_deliver(spec),
            max_ack_pending=1000,
        )

    async def _ensure_consumer(self, js: JetStreamContext, spec: ConsumerSpec) -> None:
        """Create or update the durable consumer with today's settings (one created by an earlier
        version would keep its old limits otherwise)."""
        try:
            await js.add_consumer(STREAM_NAME, self._consumer_config(spec))
        except Exception as exc:
            try:
                await js.consumer_info(STREAM_NAME, spec.durable)
            except NotFoundError:
                raise exc from None
            log.warning("could not update consumer %s (keeping its configuration): %r", spec.durable, exc)

    async def _pull(self, bound: _Bound) -> None:
        """One of a step's loops: pull one event, handle it to the end, pull the next. Each loop has its
        own pull subscription, like a replica of its own."""
        infra = self.infra
        consumer = bound.consumer
        subscription = await infra.js.pull_subscribe_bind(durable=consumer.durable, stream=STREAM_NAME)
        task = asyncio.current_task()
        assert task is not None
        try:
            while not self._draining:
                self._idle.add(task)
                try:
                    messages = await subscription.fetch(1, timeout=FETCH_WAIT_S)
                except TimeoutError:
                    continue
                except Exception as exc:
                    if self._draining:
                        break
                    log.warning("%s: pulling from %s failed: %r", self.name, consumer.durable, exc)
                    await asyncio.sleep(FETCH_ERROR_PAUSE_S)
                    continue
                finally:
                    self._idle.discard(task)
                for msg in messages:
                    try:
                        await self._dispatch(msg, bound)
                    except Exception:
                        # NATS went away while acknowledging: the event comes back after its AckWait.
                        log.exception("%s: %s could not settle an event", self.name, consumer.durable)
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def _dispatch(self, msg: Msg, bound: _Bound) -> None:
        if self._draining:
            # Fetched while shutting down: hand it straight back for another replica or the restart.
            await self._hand_back(msg, bound.consumer)
            return
        try:
            event = decode_event(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.error("rejecting undecodable message on %s: %s", msg.subject, exc)
            await msg.term()
            return
        if not isinstance(event, bound.spec.consumes):
            log.error(
                "rejecting %s on %s: step %s takes %s",
                type(event).__name__,
                msg.subject,
                bound.spec.durable,
                bound.spec.consumes.__name__,
            )
            await msg.term()
            return
        with job_context(event.job_id), attempt_context(event.attempt):
            await self._handle(msg, event, bound)

    async def _run(self, bound: _Bound, event: Event) -> None:
        """The handler, then what it returned, published in order."""
        published = await bound.step.handler(event)
        for out in published:
            check_declared(bound.spec.publishes, out, f"step {bound.spec.durable}")
            await self.infra.publish(out)

    async def _handle(self, msg: Msg, event: Event, bound: _Bound) -> None:
        # The handler runs as its own task (inheriting the job's log and run context) so that a
        # shutdown can cancel it alone, leaving this dispatch to end quietly: the event is back in
        # NATS already.
        stage = bound.spec.stage
        work: asyncio.Future[None] = asyncio.ensure_future(self._run(bound, event))
        self._in_flight[work] = (msg, bound.consumer)
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
            await msg.nak(delay=exc.delay_s)
        except PermanentFailure as exc:
            log.warning("job %s failed in %s: %s", event.job_id, stage, exc.message)
            await self._fail_then_ack(msg, event, bound, ErrorInfo(code=exc.code, message=exc.message))
        except Exception as exc:
            await self._passing_failure(msg, event, bound, exc)
        else:
            await msg.ack()
        finally:
            heartbeat.cancel()
            self._in_flight.pop(work, None)
            self._handed_back.discard(work)
            if not work.done():
                work.cancel()

    async def _passing_failure(self, msg: Msg, event: Event, bound: _Bound, exc: Exception) -> None:
        spec, stage = bound.consumer, bound.spec.stage
        delivered = _delivered(msg)
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
            await self._fail_then_ack(msg, event, bound, error)
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
        await msg.nak(delay=delay)

    async def _handed_back_count(self, msg: Msg, spec: ConsumerSpec) -> int:
        """How many of this event's deliveries were handed back on shutdown (not failed attempts)."""
        if _delivered(msg) <= 1:
            return 0
        key = handed_back_key(spec.durable, _stream_seq(msg))
        try:
            entry = await self.infra.runtime.get(key)
        except KeyNotFoundError:
            return 0
        except Exception as exc:
            log.warning("cannot read %s, counting every delivery as an attempt: %r", key, exc)
            return 0
        return int(entry.value or b"0")

    async def _hand_back(self, msg: Msg, spec: ConsumerSpec) -> None:
        """Nak without delay (redelivered at once, to another replica or after the restart) and note it,
        so the delivery it uses up is not counted as a failed attempt."""
        try:
            await msg.nak()
        except Exception as exc:
            log.warning("could not hand back %s (redelivered after the AckWait): %r", msg.subject, exc)
            return
        if self._infra is None:
            return
        key = handed_back_key(spec.durable, _stream_seq(msg))
        try:
            count = await self._handed_back_count(msg, spec)
            await self._infra.runtime.put(key, str(count + 1).encode())
        except Exception as exc:
            log.warning("could not record the hand-back of %s: %r", key, exc)

    async def _fail_then_ack(self, msg: Msg, event: Event, bound: _Bound, error: ErrorInfo) -> None:
        stage = bound.spec.stage
        if not bound.spec.fails_jobs:
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
            await msg.nak(delay=self.settings.retry_backoff_s)
            return
        await msg.ack()

    async def start(self, *, wait_for_nats: bool = True) -> None:
        """Open NATS, declare the consumers and start pulling. ``wait_for_nats=False`` raises when
        NATS cannot answer yet instead of retrying (for a caller with its own retry loop)."""
        self._draining = False
        if wait_for_nats:
            self._infra = await self._open_infra_patiently()
        else:
            self._infra = await open_infra(
                self.settings.nats_url, f"relisten-{self.name}", self.settings.stream_replicas
            )
        for bound in self._bound:
            await self._ensure_consumer(self._infra.js, bound.consumer)
        self._loops = [
            asyncio.create_task(self._pull(bound), name=f"{self.name}-{bound.consumer.durable}-{loop}")
            for bound in self._bound
            for loop in range(bound.concurrency)
        ]
        for callback in self._on_start:
            await callback()

    async def _open_infra_patiently(self) -> Infra:
        """Open the NATS handles, retrying with backoff while NATS cannot answer yet
        (:func:`~relisten_runtime.startup.until_nats_answers`)."""
        url = self.settings.nats_url
        return await until_nats_answers(
            lambda: open_infra(url, f"relisten-{self.name}", self.settings.stream_replicas),
            name=self.name,
            nats_url=url,
            first_s=STARTUP_RETRY_FIRST_S,
            max_s=STARTUP_RETRY_MAX_S,
        )

    def on_start(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run ``callback`` once NATS is open and the steps are pulling: what a service serves beside
        its steps (a core NATS request/reply subscription on ``worker.infra.nc``, a record of its
        capabilities). An exception fails :meth:`start`."""
        self._on_start.append(callback)

    def on_stop(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run ``callback`` after the consumers stop (close HTTP clients, release models)."""
        self._on_stop.append(callback)

    async def stop(self) -> None:
        """Drain: stop pulling, give in-flight events ``RELISTEN_SHUTDOWN_GRACE_S`` to finish, hand
        back the rest (nak, no delay), then close everything."""
        self._draining = True
        loops, self._loops = self._loops, []
        for loop in list(self._idle):
            loop.cancel()  # waiting in a pull with nothing in hand
        if self._in_flight:
            log.info(
                "%s: draining %d in-flight event(s), up to %.0f s",
                self.name,
                len(self._in_flight),
                self.settings.shutdown_grace_s,
            )
        if loops:
            _, pending = await asyncio.wait(loops, timeout=self.settings.shutdown_grace_s)
            if pending:
                await self._hand_back_in_flight()
                _, stuck = await asyncio.wait(pending, timeout=5.0)
                for loop in stuck:
                    loop.cancel()
        for callback in self._on_stop:
            with contextlib.suppress(Exception):
                await callback()
        if self._infra is not None:
            await self._infra.close()
            self._infra = None

    async def _hand_back_in_flight(self) -> None:
        in_flight = list(self._in_flight.items())
        for task, (msg, spec) in in_flight:
            log.warning("%s: handing back %s unfinished at shutdown", self.name, msg.subject)
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
