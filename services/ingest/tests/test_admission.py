"""Admission control: past ``max_backlog_audio_s`` of unfinished audio an upload gets 503
``backlog_full`` with ``Retry-After`` and stores nothing; once the backlog drains, uploads are admitted
again. ``/metrics`` shows the backlog. No worker runs here, so admitted jobs stay queued."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from relisten_contracts import STREAM_NAME, ErrorInfo, JobFailed
from relisten_ingest.adapters import JobViews
from relisten_ingest.app import create_app
from relisten_ingest.backlog import backlog_audio_s
from relisten_ingest.domain import apply_event
from relisten_ingest.settings import IngestSettings
from relisten_runtime.infra import Infra

from .conftest import SPEECH_WAV

pytestmark = pytest.mark.nats


@asynccontextmanager
async def ingest(settings: IngestSettings) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        runtime = app.state.ingest
        await runtime.wait_ready(30)
        # Read the views on every upload: the test must not depend on the cache's age.
        runtime.backlog.refresh_s = 0.0
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            yield client, runtime


async def upload(client: httpx.AsyncClient) -> httpx.Response:
    return await client.post(
        "/v1/jobs", files={"file": ("speech.wav", SPEECH_WAV.read_bytes(), "audio/wav")}, timeout=60
    )


async def backlog_metric(client: httpx.AsyncClient) -> float:
    text = (await client.get("/metrics")).text
    for family in text_string_to_metric_families(text):
        if family.name == "relisten_backlog_audio_seconds":
            return float(family.samples[0].value)
    raise AssertionError("no relisten_backlog_audio_seconds in /metrics")


def test_only_unfinished_jobs_count() -> None:
    created = apply_event(None, _created("a", 10.0))
    assert created is not None
    failed = apply_event(created, JobFailed(job_id="a", stage="asr", error=ErrorInfo(code="x", message="y")))
    assert failed is not None and failed.status == "failed"
    assert backlog_audio_s([created]) == 10.0
    assert backlog_audio_s([failed]) == 0.0


def _created(job_id: str, duration_s: float) -> Any:
    from relisten_contracts import JobCreated

    return JobCreated(
        job_id=job_id,
        filename="f.wav",
        original_ref=f"{job_id}/original",
        audio_ref=f"{job_id}/audio",
        duration_s=duration_s,
        sample_rate=16000,
        created_at=1.0,
    )


async def test_a_full_backlog_refuses_uploads_until_it_drains(make_settings: Any, infra: Infra) -> None:
    async with ingest(make_settings(max_backlog_audio_s=3.0)) as (client, _):
        first = await upload(client)
        assert first.status_code == 202, first.text  # 0 s waiting: under the limit
        job_id = first.json()["id"]
        events_before = (await infra.js.stream_info(STREAM_NAME)).state.messages
        jobs_before = await JobViews.of(infra).ids()

        refused = await upload(client)
        assert refused.status_code == 503, refused.text
        assert refused.headers["Retry-After"].isdigit()
        error = refused.json()["error"]
        assert error["code"] == "backlog_full"
        assert (
            "5 s of audio are waiting" in error["message"] or "6 s of audio are waiting" in error["message"]
        )
        assert (await infra.js.stream_info(STREAM_NAME)).state.messages == events_before, "nothing published"
        assert await JobViews.of(infra).ids() == jobs_before, "no job view written"
        assert await backlog_metric(client) == pytest.approx(5.855, abs=0.01)

        # The job ends (here: a stage gives up); the projector marks it failed and the backlog drains.
        await infra.publish(
            JobFailed(job_id=job_id, stage="transcribing", error=ErrorInfo(code="gone", message="test"))
        )
        for _ in range(100):
            found = await JobViews.of(infra).get(job_id)
            if found and found[0].status == "failed":
                break
            await asyncio.sleep(0.1)
        again = await upload(client)
        assert again.status_code == 202, again.text
        assert await backlog_metric(client) == pytest.approx(5.855, abs=0.01)


async def test_no_limit_by_default(make_settings: Any) -> None:
    async with ingest(make_settings()) as (client, _):
        for _ in range(2):
            assert (await upload(client)).status_code == 202
        assert await backlog_metric(client) > 0
