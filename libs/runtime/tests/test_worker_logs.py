"""A worker handles each event inside its job's log context, on a real nats-server."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from relisten_contracts import Event, JobProgress, Subject
from relisten_contracts.flow import StepSpec
from relisten_runtime.infra import open_infra
from relisten_runtime.logs import current_job
from relisten_runtime.settings import CommonSettings
from relisten_runtime.worker import Worker

pytestmark = pytest.mark.nats


async def test_handlers_run_in_their_jobs_log_context(nats_url: str) -> None:
    seen: list[str | None] = []
    done = asyncio.Event()

    async def handle(event: JobProgress) -> Sequence[Event]:
        seen.append(current_job())
        if len(seen) == 2:
            done.set()
        return ()

    worker = Worker("logtest", CommonSettings(nats_url=nats_url))
    spec = StepSpec(
        service="logtest",
        stage="logtest",
        subject=Subject.JOB_PROGRESS,
        durable="logtest-progress",
        consumes=JobProgress,
        publishes=(),
        summary="a test step",
    )
    worker.step(spec, handle)
    await worker.start()
    infra = await open_infra(nats_url, "logtest-publisher", 1)
    try:
        await infra.publish(JobProgress(job_id="job-one", stage="transcribing", progress=0.5))
        await infra.publish(JobProgress(job_id="job-two", stage="transcribing", progress=0.5))
        await asyncio.wait_for(done.wait(), 20)
    finally:
        await infra.close()
        await worker.stop()
    assert seen == ["job-one", "job-two"]
    assert current_job() is None
