"""The worker's acknowledgement policy, against a real nats-server (one per test, so that no consumer
sees another test's events):

* an undecodable payload is terminated (JetStream announces it with a terminated advisory);
* a passing failure is nacked with backoff and redelivered;
* a permanent failure publishes ``job.failed`` and acks;
* the last delivery of a passing failure publishes ``job.failed``;
* heartbeats keep a long handler's event from being redelivered;
* a handler that runs past its limit fails the job (``handling_timeout``);
* shutdown hands in-flight events back at once, and that delivery is not counted as an attempt;
* a consumer declared ``FOREVER`` never gives up;
* a retried job's run number travels into everything its handlers publish;
* an event that is not the step's declared type is terminated, never handed to the handler;
* an event the step does not declare is never published (the handler's attempt fails instead);
* a step bound with a concurrency holds that many events at once, each settled and handed back on
  its own; without, one at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from nats.js.errors import NotFoundError
from relisten_contracts import (
    STREAM_NAME,
    Event,
    JobCreated,
    JobFailed,
    JobProgress,
    Subject,
    decode_event,
    encode,
)
from relisten_contracts.flow import StepSpec
from relisten_runtime.embedded import EmbeddedNats, free_port
from relisten_runtime.infra import Infra, open_infra
from relisten_runtime.settings import CommonSettings
from relisten_runtime.worker import FOREVER, PermanentFailure, Worker, backoff_delay, handling_limit_s

pytestmark = pytest.mark.nats

WAIT_S = 30.0
"""Upper bound for anything these tests wait for (a bound against hanging, not a speed assertion)."""


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[str]:
    nats = EmbeddedNats(tmp_path / "store", port=free_port())
    nats.start(log_file=tmp_path / "nats.log")
    try:
        yield nats.url
    finally:
        nats.stop()


@pytest.fixture
async def infra(server: str) -> AsyncIterator[Infra]:
    handles = await open_infra(server, "ack-policy-test", 1)
    try:
        yield handles
    finally:
        await handles.close()


def settings(url: str, **changes: Any) -> CommonSettings:
    values: dict[str, Any] = {"nats_url": url, "retry_backoff_s": 0.05, "shutdown_grace_s": 5.0}
    values.update(changes)
    return CommonSettings(**values)


def step(max_deliver: int | None = None, publishes: tuple[type[Event], ...] = ()) -> StepSpec[JobProgress]:
    return StepSpec(
        service="acktest",
        stage="testing",
        subject=Subject.JOB_PROGRESS,
        durable="acktest",
        consumes=JobProgress,
        publishes=publishes,
        summary="a test step",
        max_deliver=max_deliver,
    )


async def started(
    url: str,
    handler: Callable[[JobProgress], Awaitable[Sequence[Event]]],
    *,
    max_deliver: int | None = None,
    publishes: tuple[type[Event], ...] = (),
    **changes: Any,
) -> Worker:
    worker = Worker("acktest", settings(url, **changes))
    worker.step(step(max_deliver, publishes), handler)
    await worker.start()
    return worker


def progress(job_id: str, attempt: int = 0) -> JobProgress:
    return JobProgress(job_id=job_id, stage="transcribing", progress=0.5, attempt=attempt)


async def job_failed(infra: Infra) -> JobFailed:
    """The job.failed event in the stream, once there is one."""
    async with asyncio.timeout(WAIT_S):
        while True:
            try:
                raw = await infra.js.get_last_msg(STREAM_NAME, Subject.JOB_FAILED)
            except NotFoundError:
                await asyncio.sleep(0.05)
                continue
            event = decode_event(raw.data or b"")
            assert isinstance(event, JobFailed)
            return event


async def no_job_failed(infra: Infra) -> bool:
    try:
        await infra.js.get_last_msg(STREAM_NAME, Subject.JOB_FAILED)
    except NotFoundError:
        return True
    return False


async def settled(infra: Infra, durable: str = "acktest") -> Any:
    """Consumer info once nothing is pending or unacknowledged."""
    async with asyncio.timeout(WAIT_S):
        while True:
            info = await infra.js.consumer_info(STREAM_NAME, durable)
            if info.num_pending == 0 and info.num_ack_pending == 0 and info.delivered.stream_seq > 0:
                return info
            await asyncio.sleep(0.05)


def test_backoff_doubles_from_the_first_delay_and_is_capped() -> None:
    assert [backoff_delay(n, 2.0) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]
    assert backoff_delay(20, 2.0) == 60.0


def test_handling_limit_grows_with_the_audio() -> None:
    limits = CommonSettings(max_handling_s=100.0, max_handling_per_audio_s=2.0)
    assert handling_limit_s(limits, progress("a")) == 100.0  # an event without audio: the base
    created = JobCreated(job_id="a", filename="a.wav", original_ref="o", audio_ref="w", duration_s=60.0)
    assert handling_limit_s(limits, created) == 220.0


async def test_undecodable_payload_is_terminated(server: str, infra: Infra) -> None:
    calls: list[object] = []

    async def handler(event: JobProgress) -> Sequence[Event]:
        calls.append(event)
        return ()

    advisories = asyncio.Queue[dict[str, Any]]()

    async def on_advisory(msg: Any) -> None:
        await advisories.put(json.loads(msg.data))

    sub = await infra.nc.subscribe(
        f"$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.{STREAM_NAME}.acktest", cb=on_advisory
    )
    worker = await started(server, handler)
    try:
        ack = await infra.js.publish(Subject.JOB_PROGRESS, b"this is not an event", stream=STREAM_NAME)
        advisory = await asyncio.wait_for(advisories.get(), WAIT_S)
        info = await settled(infra)
    finally:
        await worker.stop()
        await sub.unsubscribe()
    assert advisory["stream_seq"] == ack.seq
    assert advisory["deliveries"] == 1
    assert calls == []
    assert info.num_redelivered == 0
    assert await no_job_failed(infra)


async def test_passing_failure_is_nacked_and_redelivered(server: str, infra: Infra) -> None:
    calls: list[str] = []
    done = asyncio.Event()

    async def handler(event: JobProgress) -> Sequence[Event]:
        calls.append(event.job_id)
        if len(calls) < 3:
            raise ConnectionError("the backend is away")
        done.set()
        return ()

    worker = await started(server, handler, max_deliver=5)
    try:
        await infra.publish(progress("job-passing"))
        await asyncio.wait_for(done.wait(), WAIT_S)
        info = await settled(infra)
    finally:
        await worker.stop()
    assert calls == ["job-passing"] * 3
    assert info.num_redelivered == 0  # everything acked in the end
    assert await no_job_failed(infra)


async def test_permanent_failure_publishes_job_failed_and_acks(server: str, infra: Infra) -> None:
    calls: list[str] = []

    async def handler(event: JobProgress) -> Sequence[Event]:
        calls.append(event.job_id)
        raise PermanentFailure("bad_audio", "the audio cannot be decoded")

    worker = await started(server, handler)
    try:
        await infra.publish(progress("job-permanent"))
        failed = await job_failed(infra)
        await settled(infra)
    finally:
        await worker.stop()
    assert calls == ["job-permanent"]  # not retried
    assert failed.job_id == "job-permanent"
    assert failed.stage == "testing"
    assert (failed.error.code, failed.error.message) == ("bad_audio", "the audio cannot be decoded")


async def test_last_delivery_of_a_passing_failure_publishes_job_failed(server: str, infra: Infra) -> None:
    calls: list[str] = []

    async def handler(event: JobProgress) -> Sequence[Event]:
        calls.append(event.job_id)
        raise RuntimeError("still broken")

    worker = await started(server, handler, max_deliver=3)
    try:
        await infra.publish(progress("job-exhausted"))
        failed = await job_failed(infra)
        await settled(infra)
    finally:
        await worker.stop()
    assert calls == ["job-exhausted"] * 3
    assert failed.error.code == "testing_failed"
    assert "failed 3 times" in failed.error.message
    assert "RuntimeError: still broken" in failed.error.message


@pytest.mark.parametrize(("heartbeat_s", "redelivered"), [(0.2, False), (10.0, True)])
async def test_heartbeats_keep_a_long_handler_from_being_redelivered(
    server: str, infra: Infra, heartbeat_s: float, redelivered: bool
) -> None:
    """Two replicas share the consumer; the handler works for three AckWaits. With heartbeats more
    often than the AckWait the other replica never gets the event; with slower ones (the control)
    NATS redelivers it to the idle replica while the first is still working."""
    calls: list[str] = []
    second = asyncio.Event()

    async def handler(event: JobProgress) -> Sequence[Event]:
        calls.append(event.job_id)
        if len(calls) >= 2:
            second.set()
        await asyncio.sleep(3.0)
        return ()

    replicas = [await started(server, handler, ack_wait_s=1.0, heartbeat_s=heartbeat_s) for _ in range(2)]
    try:
        await infra.publish(progress("job-long"))
        if redelivered:
            await asyncio.wait_for(second.wait(), WAIT_S)
        else:
            info = await settled(infra)
            assert info.num_redelivered == 0
    finally:
        for worker in replicas:
            await worker.stop()
    assert (len(calls) >= 2) == redelivered


async def test_a_hung_handler_is_stopped_and_its_job_failed(server: str, infra: Infra) -> None:
    async def handler(event: JobProgress) -> Sequence[Event]:
        await asyncio.sleep(3600)
        return ()

    worker = await started(server, handler, max_handling_s=0.5, max_handling_per_audio_s=0.0, heartbeat_s=0.1)
    try:
        await infra.publish(progress("job-hung"))
        failed = await job_failed(infra)
        await settled(infra)
    finally:
        await worker.stop()
    assert failed.job_id == "job-hung"
    assert failed.error.code == "handling_timeout"


async def test_shutdown_hands_in_flight_work_back_without_using_an_attempt(server: str, infra: Infra) -> None:
    """Worker A is stopped mid-event: the event goes back at once (B gets it long before the 60 s
    AckWait), and B's first failure is B's first attempt, not the last of two."""
    entered = asyncio.Event()

    async def stuck(event: JobProgress) -> Sequence[Event]:
        entered.set()
        await asyncio.sleep(3600)
        return ()

    first = await started(server, stuck, max_deliver=2, ack_wait_s=60.0, shutdown_grace_s=0.2)
    await infra.publish(progress("job-drained"))
    await asyncio.wait_for(entered.wait(), WAIT_S)
    await first.stop()

    calls: list[str] = []
    done = asyncio.Event()

    async def flaky(event: JobProgress) -> Sequence[Event]:
        calls.append(event.job_id)
        if len(calls) == 1:
            raise ConnectionError("one passing failure")
        done.set()
        return ()

    second = await started(server, flaky, max_deliver=2, ack_wait_s=60.0)
    try:
        # Bounded well under the AckWait: without the hand-back nothing would arrive for 60 s.
        await asyncio.wait_for(done.wait(), 20.0)
        info = await settled(infra)
    finally:
        await second.stop()
    assert calls == ["job-drained", "job-drained"]
    assert info.delivered.consumer_seq >= 3  # stuck, handed back; failed once; succeeded
    assert await no_job_failed(infra)
    entry = await infra.runtime.get(f"handed-back.acktest.{info.ack_floor.stream_seq}")
    assert entry.value == b"1"


async def test_a_consumer_declared_forever_never_gives_up(server: str, infra: Infra) -> None:
    calls: list[str] = []
    done = asyncio.Event()

    async def handler(event: JobProgress) -> Sequence[Event]:
        calls.append(event.job_id)
        if len(calls) < 5:
            raise ConnectionError("not yet")
        done.set()
        return ()

    worker = await started(server, handler, max_deliver=FOREVER)
    assert worker.settings.max_deliver == 5
    worker.settings.max_deliver = 2  # the setting other consumers would give up at
    try:
        await infra.publish(progress("job-forever"))
        await asyncio.wait_for(done.wait(), WAIT_S)
        info = await settled(infra)
    finally:
        await worker.stop()
    assert len(calls) == 5
    assert info.config.max_deliver == -1
    assert await no_job_failed(infra)


async def test_a_retried_runs_number_travels_into_what_its_handlers_publish(
    server: str, infra: Infra
) -> None:
    async def handler(event: JobProgress) -> Sequence[Event]:
        if event.stage == "transcribing":
            # The handler knows nothing about attempts; the worker stamps the run on what it publishes.
            return [JobProgress(job_id=event.job_id, stage="merging", progress=0.1)]
        return ()

    worker = await started(server, handler, publishes=(JobProgress,))
    try:
        await infra.publish(progress("job-rerun", attempt=2))
        async with asyncio.timeout(WAIT_S):
            while True:
                try:
                    raw = await infra.js.get_msg(STREAM_NAME, seq=2)
                    break
                except NotFoundError:
                    await asyncio.sleep(0.05)
    finally:
        await worker.stop()
    published = decode_event(raw.data or b"")
    assert isinstance(published, JobProgress)
    assert (published.stage, published.attempt) == ("merging", 2)
    assert raw.headers is not None
    assert raw.headers["Nats-Msg-Id"].endswith(":a2")


async def test_an_event_of_another_type_is_rejected(server: str, infra: Infra) -> None:
    calls: list[object] = []

    async def handler(event: JobProgress) -> Sequence[Event]:
        calls.append(event)
        return ()

    worker = await started(server, handler)
    try:
        # A job.created on the step's subject (a producer's bug): not the JobProgress the step takes.
        created = JobCreated(
            job_id="job-odd", filename="a.wav", original_ref="o", audio_ref="w", duration_s=1.0
        )
        await infra.js.publish(Subject.JOB_PROGRESS, encode(created), stream=STREAM_NAME)
        info = await settled(infra)
    finally:
        await worker.stop()
    assert calls == []
    assert info.num_redelivered == 0
    assert await no_job_failed(infra)


async def test_an_undeclared_event_is_not_published(server: str, infra: Infra) -> None:
    async def handler(event: JobProgress) -> Sequence[Event]:
        return [
            JobCreated(job_id=event.job_id, filename="a.wav", original_ref="o", audio_ref="w", duration_s=1.0)
        ]

    worker = await started(server, handler, max_deliver=2, publishes=(JobProgress,))
    try:
        await infra.publish(progress("job-undeclared"))
        failed = await job_failed(infra)
        await settled(infra)
        with pytest.raises(NotFoundError):
            await infra.js.get_last_msg(STREAM_NAME, Subject.JOB_CREATED)
    finally:
        await worker.stop()
    assert failed.error.code == "testing_failed"
    assert "publishes JobCreated" in failed.error.message or "published JobCreated" in failed.error.message


class Overlap:
    """A handler that notes how many events it holds at once; each waits (boundedly) for a second
    one to arrive, so that a worker able to hold two shows it."""

    def __init__(self, wait_for_company_s: float) -> None:
        self.wait_for_company_s = wait_for_company_s
        self.holding = 0
        self.peak = 0
        self.handled: list[str] = []
        self.company = asyncio.Event()
        self.all_done = asyncio.Event()
        self.expected = 2

    async def __call__(self, event: JobProgress) -> Sequence[Event]:
        self.holding += 1
        self.peak = max(self.peak, self.holding)
        if self.holding >= 2:
            self.company.set()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.company.wait(), self.wait_for_company_s)
            if event.job_id.endswith("fails"):
                raise PermanentFailure("broken", "this one cannot succeed")
            return ()
        finally:
            self.holding -= 1
            self.handled.append(event.job_id)
            if len(self.handled) >= self.expected:
                self.all_done.set()


async def test_a_step_bound_with_concurrency_holds_several_events_at_once(server: str, infra: Infra) -> None:
    handler = Overlap(wait_for_company_s=WAIT_S)
    worker = Worker("acktest", settings(server))
    worker.step(step(), handler, concurrency=2)
    await worker.start()
    try:
        await infra.publish(progress("job-one"))
        await infra.publish(progress("job-two-fails"))
        await asyncio.wait_for(handler.all_done.wait(), WAIT_S)
        info = await settled(infra)
    finally:
        await worker.stop()
    assert handler.peak == 2
    assert sorted(handler.handled) == ["job-one", "job-two-fails"]
    # Each event settled on its own: one acked, the other failed its job (then acked), none left over.
    assert info.num_redelivered == 0
    assert (await job_failed(infra)).job_id == "job-two-fails"


async def test_a_step_bound_without_concurrency_holds_one_event_at_a_time(server: str, infra: Infra) -> None:
    # Each event waits a little for company that cannot come: the second is fetched only after.
    handler = Overlap(wait_for_company_s=0.5)
    worker = await started(server, handler)
    try:
        await infra.publish(progress("job-one"))
        await infra.publish(progress("job-two"))
        await asyncio.wait_for(handler.all_done.wait(), WAIT_S)
        await settled(infra)
    finally:
        await worker.stop()
    assert handler.peak == 1
    assert handler.handled == ["job-one", "job-two"]


async def test_shutdown_hands_back_every_event_a_concurrent_step_holds(server: str, infra: Infra) -> None:
    holding = 0
    both = asyncio.Event()

    async def stuck(event: JobProgress) -> Sequence[Event]:
        nonlocal holding
        holding += 1
        if holding == 2:
            both.set()
        await asyncio.sleep(3600)
        return ()

    worker = Worker("acktest", settings(server, ack_wait_s=60.0, shutdown_grace_s=0.2))
    worker.step(step(max_deliver=2), stuck, concurrency=3)
    await worker.start()
    await infra.publish(progress("job-a"))
    await infra.publish(progress("job-b"))
    await asyncio.wait_for(both.wait(), WAIT_S)
    await worker.stop()
    assert worker.handed_back_on_stop == 2
    keys = await infra.runtime.keys()
    assert sorted(k.rsplit(".", 1)[0] for k in keys) == ["handed-back.acktest"] * 2


def test_a_concurrency_below_one_is_refused() -> None:
    worker = Worker("acktest", CommonSettings())
    with pytest.raises(ValueError, match="concurrency"):
        worker.step(step(), Overlap(0.0), concurrency=0)
