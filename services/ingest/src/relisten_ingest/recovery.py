"""Every job ends: the watchdog that fails stuck jobs, and the re-drive of a failed job
(``POST /v1/jobs/{id}/retry``).

The workers fail a job themselves when a handler gives up (see ``relisten_runtime.worker``). What they
cannot see is the job whose event the server stopped delivering (a crash, an OOM kill or a shutdown
on the last delivery; a ``job.failed`` publish that failed on the last delivery), or a job whose
event was terminated by hand. The watchdog covers both, from two sides:

* JetStream's advisories ``$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>`` and
  ``$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.<stream>.<consumer>`` (core NATS messages with the
  ``stream_seq`` of the event): the event is read back from the stream and its job failed with
  ``deliveries_exhausted`` or ``terminated``. Advisories are not stored: one sent while no ingest
  was connected is lost, which is why there is also
* a periodic sweep of the job views: a job still running past its deadline (a base plus a share per
  second of audio, counted from the start of its current run) is failed with ``stuck``.

Several ingest replicas may run the watchdog: the advisories are taken in a queue group (one replica
each), and every ``job.failed`` carries the deterministic message id of its job and run, so two
replicas failing the same job publish it once. A job is only failed while its view is not terminal and
still on the run the evidence is about; the notifier then announces it like any other failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any, Final

import msgspec
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.errors import NotFoundError
from relisten_contracts import (
    STREAM_NAME,
    ErrorInfo,
    Event,
    JobCreated,
    JobFailed,
    JobRetried,
    JobView,
    decode_event,
    first_pass_object,
    plan_object,
    words_scored,
)
from relisten_runtime.infra import Infra
from relisten_runtime.logs import job_context
from relisten_runtime.store import NatsJobStore, StaleRevision

from relisten_ingest.adapters import JobViews, audio_name, original_name
from relisten_ingest.domain import TERMINAL, stuck_views

log = logging.getLogger(__name__)

MAX_DELIVERIES_ADVISORY: Final = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"
TERMINATED_ADVISORY: Final = "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED"
WATCHDOG_QUEUE: Final = "relisten-watchdog"
WATCHDOG_STAGE: Final = "watchdog"


class Watchdog:
    """Fails the jobs nothing else will end. :meth:`start` subscribes and starts the sweep."""

    def __init__(
        self,
        infra: Infra,
        *,
        deadline_base_s: float,
        deadline_per_audio_s: float,
        sweep_interval_s: float,
        clock: Callable[[], float] = time.time,
        on_failed: Callable[[str], None] | None = None,
    ) -> None:
        self.infra = infra
        self.on_failed = on_failed
        self.deadline_base_s = deadline_base_s
        self.deadline_per_audio_s = deadline_per_audio_s
        self.sweep_interval_s = sweep_interval_s
        self.clock = clock
        self.failed: list[tuple[str, str]] = []
        """(job id, code) of every job this watchdog failed, for tests and the log."""
        self._subscriptions: list[Subscription] = []
        self._sweeping: asyncio.Task[None] | None = None

    async def start(self) -> None:
        for prefix in (MAX_DELIVERIES_ADVISORY, TERMINATED_ADVISORY):
            self._subscriptions.append(
                await self.infra.nc.subscribe(
                    f"{prefix}.{STREAM_NAME}.>", queue=WATCHDOG_QUEUE, cb=self._on_advisory
                )
            )
        self._sweeping = asyncio.create_task(self._sweep_forever(), name="watchdog-sweep")

    async def stop(self) -> None:
        if self._sweeping is not None:
            self._sweeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeping
            self._sweeping = None
        for subscription in self._subscriptions:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        self._subscriptions.clear()

    async def _on_advisory(self, msg: Msg) -> None:
        try:
            advisory: dict[str, Any] = json.loads(msg.data)
            stream_seq = int(advisory["stream_seq"])
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring an unreadable advisory on %s: %r", msg.subject, exc)
            return
        terminated = msg.subject.startswith(TERMINATED_ADVISORY)
        consumer = str(advisory.get("consumer", "?"))
        deliveries = advisory.get("deliveries", "?")
        try:
            await self.on_lost_event(
                stream_seq,
                code="terminated" if terminated else "deliveries_exhausted",
                message=(
                    f"the {consumer} consumer's event was terminated after {deliveries} deliveries"
                    if terminated
                    else f"the {consumer} consumer gave up on the job's event after {deliveries} "
                    "deliveries without an answer (a crash, a kill or a shutdown on the last one)"
                ),
            )
        except Exception:
            # The sweep will still find the job past its deadline.
            log.exception(
                "watchdog: could not act on the %s advisory for stream seq %d", consumer, stream_seq
            )

    async def on_lost_event(self, stream_seq: int, *, code: str, message: str) -> bool:
        """The stream's event ``stream_seq`` will not be handled again: fail its job if still running."""
        try:
            raw = await self.infra.js.get_msg(STREAM_NAME, seq=stream_seq)
        except NotFoundError:
            log.warning("watchdog: event %d is no longer in the stream", stream_seq)
            return False
        try:
            event = decode_event(raw.data or b"")
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.info("watchdog: event %d is not a pipeline event (nothing to fail)", stream_seq)
            return False
        return await self.fail(event.job_id, event.attempt, code=code, message=message)

    async def fail(self, job_id: str, attempt: int, *, code: str, message: str) -> bool:
        """Publish ``job.failed`` for ``job_id`` if its view is still running run ``attempt``."""
        with job_context(job_id):
            found = await JobViews.of(self.infra).get(job_id)
            if found is None:
                return False
            view = found[0]
            if view.status in TERMINAL or view.attempt != attempt:
                return False
            log.warning("watchdog: failing job %s (%s, was %s): %s", job_id, code, view.status, message)
            await self.infra.publish(
                JobFailed(
                    job_id=job_id,
                    stage=WATCHDOG_STAGE,
                    error=ErrorInfo(code=code, message=message),
                    options=view.options,
                    attempt=view.attempt,
                )
            )
            self.failed.append((job_id, code))
            if self.on_failed is not None:
                self.on_failed(code)
            return True

    async def sweep(self) -> list[str]:
        """Fail every running job past its deadline; the ids of those failed."""
        views = await JobViews.of(self.infra).recent(limit=1_000_000)
        now = self.clock()
        failed: list[str] = []
        for view, deadline in stuck_views(views, now, self.deadline_base_s, self.deadline_per_audio_s):
            message = (
                f"still {view.status} {now - _run_start(view):.0f} s after it started, past its "
                f"deadline of {deadline:.0f} s (RELISTEN_INGEST_JOB_DEADLINE_BASE_S + "
                f"RELISTEN_INGEST_JOB_DEADLINE_PER_AUDIO_S x {view.duration_s:.0f} s of audio)"
            )
            if await self.fail(view.id, view.attempt, code="stuck", message=message):
                failed.append(view.id)
        return failed

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval_s)
            try:
                await self.sweep()
            except Exception:
                log.exception("watchdog: the sweep failed; trying again in %.0f s", self.sweep_interval_s)


def _run_start(view: JobView) -> float:
    return view.attempt_started_at or view.created_at


# ---------------------------------------------------------------------------------------------
# Re-driving a failed job
# ---------------------------------------------------------------------------------------------


class RetryRefused(Exception):
    """The job cannot be retried now (``code``: ``job_not_failed``, ``audio_missing``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


async def resume_event(infra: Infra, view: JobView, attempt: int) -> Event:
    """The event that re-drives ``view``'s job from its last stored artefact, as run ``attempt``:
    the stored plan -> ``clips.ready``; the stored first pass -> ``words.scored``; else the stored
    audio -> ``job.created``."""
    store = NatsJobStore(lambda: infra)
    with contextlib.suppress(msgspec.DecodeError):  # unreadable: resume from the step before
        ready = await store.plan(plan_object(view.id))
        if ready is not None:
            return msgspec.structs.replace(ready, attempt=attempt, occurred_at=0.0)
    with contextlib.suppress(msgspec.DecodeError):
        first_pass = await store.first_pass(first_pass_object(view.id))
        if first_pass is not None:
            return words_scored(
                view.id,
                first_pass,
                audio_ref=audio_name(view.id),
                words_ref=first_pass_object(view.id),
                options=view.options,
                attempt=attempt,
            )
    try:
        await infra.audio.get_info(audio_name(view.id))
    except NotFoundError:
        raise RetryRefused("audio_missing", f"the audio of job {view.id} is no longer stored") from None
    return JobCreated(
        job_id=view.id,
        filename=view.filename,
        original_ref=original_name(view.id),
        audio_ref=audio_name(view.id),
        duration_s=view.duration_s,
        options=view.options,
        created_at=view.created_at,
        attempt=attempt,
    )


async def redrive(infra: Infra, view: JobView, *, clock: Callable[[], float] = time.time) -> JobView:
    """Run the failed job ``view`` again from its last stored artefact; the reopened view.

    The view is reopened first, by compare-and-set: of two concurrent retries one wins and the other
    is refused (``job_not_failed``). Then ``job.retried`` and the resuming event are published with
    the new run's message ids. If publishing fails, the failed view is put back.
    """
    if view.status != "failed":
        raise RetryRefused(
            "job_not_failed", f"job {view.id} is {view.status}; only a failed job can be retried"
        )
    attempt = view.attempt + 1
    resume = await resume_event(infra, view, attempt)
    retried = JobRetried(
        job_id=view.id,
        attempt=attempt,
        resume_from=str(type(resume).__struct_config__.tag).rsplit(".v", 1)[0],
        previous_error=view.error,
        occurred_at=clock(),
    )
    jobs = JobViews.of(infra)
    before, after = await jobs.apply_change(retried)
    if before is None or after is None or before.status != "failed" or after.attempt != attempt:
        status = after.status if after is not None else "gone"
        raise RetryRefused("job_not_failed", f"job {view.id} is {status}; only a failed job can be retried")
    try:
        await infra.publish(retried)
        await infra.publish(resume)
    except Exception:
        log.exception("job %s: could not publish the retry; putting the failed view back", view.id)
        found = await jobs.get(view.id)
        if found is not None and found[0].attempt == attempt:
            with contextlib.suppress(StaleRevision):
                await jobs.store.put_view(before, found[1])
        raise
    log.info("job %s: retried as run %d from %s", view.id, attempt, retried.resume_from)
    return after
