"""A worker that starts before NATS can answer waits for it instead of exiting (a cluster electing a
leader, or a server restarting, answers its API with timeouts for a while)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from relisten_contracts import Event, JobProgress, Subject
from relisten_contracts.flow import StepSpec
from relisten_runtime.embedded import EmbeddedNats, free_port
from relisten_runtime.settings import CommonSettings
from relisten_runtime.worker import Worker

pytestmark = pytest.mark.nats


async def test_a_worker_started_before_nats_waits_for_it(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr("relisten_runtime.worker.STARTUP_RETRY_FIRST_S", 0.2)
    port = free_port()
    nats = EmbeddedNats(tmp_path / "store", port=port)
    worker = Worker("startup", CommonSettings(nats_url=nats.url))
    seen: list[Any] = []

    async def handler(event: JobProgress) -> Sequence[Event]:
        seen.append(event)
        return ()

    worker.step(
        StepSpec(
            service="startup",
            stage="testing",
            subject=Subject.JOB_PROGRESS,
            durable="startup",
            consumes=JobProgress,
            publishes=(),
            summary="a test step",
        ),
        handler,
    )
    starting = asyncio.create_task(worker.start())
    await asyncio.sleep(1.0)
    assert not starting.done(), "with no server to answer, the worker keeps trying"
    nats.start(log_file=tmp_path / "nats.log")
    try:
        await asyncio.wait_for(starting, timeout=60)
        assert worker.infra.nc.is_connected
    finally:
        if not starting.done():
            starting.cancel()
        await worker.stop()
        nats.stop()


async def test_on_start_runs_once_nats_is_open(tmp_path: Path) -> None:
    nats = EmbeddedNats(tmp_path / "store", port=free_port())
    nats.start(log_file=tmp_path / "nats.log")
    worker = Worker("startup", CommonSettings(nats_url=nats.url))
    replies: list[bytes] = []

    async def serve_requests() -> None:
        async def answer(msg: Any) -> None:
            await msg.respond(b"pong " + msg.data)

        await worker.infra.nc.subscribe("relisten-test.ping", cb=answer)

    worker.on_start(serve_requests)
    try:
        await worker.start()
        reply = await worker.infra.nc.request("relisten-test.ping", b"1", timeout=10)
        replies.append(reply.data)
    finally:
        await worker.stop()
        nats.stop()
    assert replies == [b"pong 1"]
