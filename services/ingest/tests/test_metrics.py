"""Prometheus metrics: recorded once per change of a job view, timed from the events, and scraped
(queue depth, jobs by status) from a real nats-server."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import httpx
import pytest
from nats.js.api import ConsumerConfig, ConsumerInfo
from prometheus_client.parser import text_string_to_metric_families
from relisten_contracts import JobView
from relisten_ingest.adapters import JobViews
from relisten_ingest.domain import apply_event
from relisten_ingest.metrics import IngestMetrics
from relisten_ingest.settings import IngestSettings
from relisten_runtime.infra import Infra

from .conftest import ServeApp
from .test_projector import Events, redeliver


def sample(metrics: IngestMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def project(metrics: IngestMetrics, view: JobView | None, *events: object) -> JobView | None:
    """Apply events the way the projector does: observe only when the view changed."""
    for event in events:
        after = apply_event(view, event)  # type: ignore[arg-type]
        if after is not None and after != view:
            metrics.observe(view, after, event)  # type: ignore[arg-type]
        view = after
    return view


def test_a_job_through_every_stage_is_timed_once() -> None:
    metrics = IngestMetrics()
    job = Events()
    created = job.created()
    view = apply_event(None, created)
    assert view is not None
    metrics.admitted(view)
    transcribing = job.progress("transcribing", 0.0)
    scored = job.scored()
    ready = job.ready(2)
    clips = [job.corrected(0, 2), job.corrected(1, 2)]
    merged = job.merged()
    project(
        metrics, view, transcribing, transcribing, scored, ready, clips[0], clips[0], clips[1], merged, merged
    )

    for status in ("queued", "transcribing", "correcting", "merging", "completed"):
        assert sample(metrics, "relisten_job_transitions_total", status=status) == 1.0, status
    queued = transcribing.occurred_at - created.created_at
    assert sample(metrics, "relisten_stage_duration_seconds_sum", stage="queued") == pytest.approx(queued)
    assert sample(metrics, "relisten_stage_duration_seconds_count", stage="transcribing") == 1
    correcting = clips[1].occurred_at - scored.occurred_at
    assert sample(metrics, "relisten_stage_duration_seconds_sum", stage="correcting") == pytest.approx(
        correcting
    )
    merging = merged.occurred_at - clips[1].occurred_at
    assert sample(metrics, "relisten_stage_duration_seconds_sum", stage="merging") == pytest.approx(merging)
    assert sample(metrics, "relisten_audio_processed_seconds_total") == 30.0
    assert sample(metrics, "relisten_redecoded_fraction_sum") == pytest.approx(4.0 / 30.0)
    assert sample(metrics, "relisten_second_pass_seconds_sum") == 3.0
    assert sample(metrics, "relisten_second_pass_clip_seconds_count") == 2


def test_a_failed_job_and_a_stage_entered_elsewhere() -> None:
    metrics = IngestMetrics()
    job = Events()
    view = apply_event(None, job.created())
    # Entered "transcribing" on another replica: this process cannot time that stage.
    view = apply_event(view, job.progress("transcribing", 0.5))
    project(metrics, view, job.failed())
    assert sample(metrics, "relisten_job_transitions_total", status="failed") == 1
    assert sample(metrics, "relisten_stage_duration_seconds_count", stage="transcribing") == 0
    assert sample(metrics, "relisten_audio_processed_seconds_total") == 0


def test_queue_depth_and_jobs_by_status() -> None:
    metrics = IngestMetrics()

    def consumer(name: str | None, pending: int, unacked: int) -> ConsumerInfo:
        return ConsumerInfo(
            name=name or "ephemeral",
            stream_name="RELISTEN",
            config=ConsumerConfig(durable_name=name),
            created=datetime.now(tz=UTC),
            num_pending=pending,
            num_ack_pending=unacked,
        )

    metrics.set_queue_depth([consumer("asr", 3, 1), consumer("corrector", 0, 2), consumer(None, 50, 0)])
    assert sample(metrics, "relisten_queue_depth", consumer="asr") == 4
    assert sample(metrics, "relisten_queue_depth", consumer="corrector") == 2
    assert metrics.registry.get_sample_value("relisten_queue_depth", {"consumer": "ephemeral"}) is None
    job = Events()
    queued = apply_event(None, job.created())
    assert queued is not None
    metrics.set_jobs([queued, queued])
    assert sample(metrics, "relisten_jobs", status="queued") == 2
    assert sample(metrics, "relisten_jobs", status="completed") == 0


@pytest.fixture
async def server(serve_app: ServeApp, make_settings: Callable[..., IngestSettings]) -> AsyncIterator[str]:
    async with serve_app(make_settings()) as base:
        yield base


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.mark.nats
async def test_metrics_endpoint_counts_redelivered_events_once(server: str, infra: Infra) -> None:
    job = Events()
    job.job_id = uuid.uuid4().hex
    created = job.created()
    clip = job.corrected(0, 1)
    merged = job.merged()
    for event in (created, job.scored(), job.ready(1), clip):
        await infra.publish(event)
    await redeliver(infra, clip)
    await infra.publish(merged)
    await redeliver(infra, merged)
    views = JobViews.of(infra)
    deadline = time.monotonic() + 10
    while (found := await views.get(job.job_id)) is None or found[0].status != "completed":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)  # let the redelivered copies through the projector too

    async with httpx.AsyncClient(base_url=server) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    values = scrape(response.text)
    assert values[("relisten_job_transitions_total", (("status", "completed"),))] == 1
    assert values[("relisten_second_pass_clip_seconds_count", ())] == 1
    assert values[("relisten_audio_processed_seconds_total", ())] == 30.0
    assert values[("relisten_jobs", (("status", "completed"),))] >= 1
    assert ("relisten_queue_depth", (("consumer", "ingest-view"),)) in values
