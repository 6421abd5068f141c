"""Binding steps to a worker (no NATS): the publisher port refuses what no step declares, a durable is
bound once, and a step's delivery limit comes from the settings unless it declares its own."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from relisten_contracts import Event, JobCreated, JobFailed, JobProgress, Subject
from relisten_contracts.flow import FOREVER, StepSpec
from relisten_runtime.settings import CommonSettings
from relisten_runtime.steps import UndeclaredEvent
from relisten_runtime.worker import Worker


def spec(durable: str, max_deliver: int | None = None, fails_jobs: bool = True) -> StepSpec[JobProgress]:
    return StepSpec(
        service="steptest",
        stage="testing",
        subject=Subject.JOB_PROGRESS,
        durable=durable,
        consumes=JobProgress,
        publishes=(JobProgress,),
        summary="a test step",
        max_deliver=max_deliver,
        fails_jobs=fails_jobs,
    )


async def handler(event: JobProgress) -> Sequence[Event]:
    return ()


async def test_the_publisher_port_refuses_what_no_step_declares() -> None:
    worker = Worker("steptest", CommonSettings(nats_url="nats://127.0.0.1:9"))
    worker.step(spec("one"), handler)
    created = JobCreated(job_id="j", filename="a.wav", original_ref="o", audio_ref="w", duration_s=1.0)
    with pytest.raises(UndeclaredEvent, match="JobCreated"):
        await worker.publish(created)
    with pytest.raises(RuntimeError, match="not started"):  # declared: it gets as far as NATS
        await worker.publish(JobProgress(job_id="j", stage="transcribing", progress=0.1))


def test_a_durable_is_bound_once_and_limits_come_from_the_declaration_or_the_settings() -> None:
    worker = Worker("steptest", CommonSettings(nats_url="nats://127.0.0.1:9", max_deliver=4))
    worker.step(spec("one"), handler)
    worker.step(spec("two", max_deliver=FOREVER, fails_jobs=False), handler)
    with pytest.raises(ValueError, match="bound twice"):
        worker.step(spec("one"), handler)
    assert [(c.durable, c.max_deliver) for c in worker.consumers] == [("one", 4), ("two", FOREVER)]
    assert spec("one").publishes_failure == (JobFailed,)
    assert spec("two", fails_jobs=False).publishes_failure == ()
