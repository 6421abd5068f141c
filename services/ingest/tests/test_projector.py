"""The job view projector on a real nats-server: events in the stream, views in KV.

Events are published the way the other services publish them (``Infra.publish``), plus raw
re-publications without a message id to force duplicate deliveries past JetStream's de-duplication.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable

import msgspec
import pytest
from relisten_contracts import (
    STREAM_NAME,
    ClipCorrected,
    ClipSpec,
    ClipsReady,
    ErrorInfo,
    Event,
    JobCreated,
    JobFailed,
    JobMerged,
    JobOptions,
    JobProgress,
    JobView,
    WordsScored,
    encode,
    subject_for,
)
from relisten_ingest.adapters import JobViews
from relisten_ingest.settings import IngestSettings
from relisten_runtime.infra import Infra

from relisten.testing import job_merged

from .conftest import StartClient

pytestmark = pytest.mark.nats


@pytest.fixture
async def projector(
    start_client: StartClient, make_settings: Callable[..., IngestSettings]
) -> AsyncIterator[None]:
    async with start_client(make_settings()):
        yield


class Events:
    """Builders of one job's events, each stamped a little later than the one before."""

    def __init__(self) -> None:
        self.job_id = uuid.uuid4().hex
        self.clock = time.time()

    def now(self) -> float:
        self.clock += 1.0
        return self.clock

    def created(self) -> JobCreated:
        at = self.now()
        return JobCreated(
            job_id=self.job_id,
            occurred_at=at,
            filename="talk.wav",
            original_ref=f"{self.job_id}/original",
            audio_ref=f"{self.job_id}/audio.wav",
            duration_s=30.0,
            options=JobOptions(language="en"),
            created_at=at,
        )

    def progress(self, stage: str, fraction: float) -> JobProgress:
        return JobProgress(job_id=self.job_id, occurred_at=self.now(), stage=stage, progress=fraction)  # type: ignore[arg-type]

    def scored(self) -> WordsScored:
        return WordsScored(
            job_id=self.job_id,
            occurred_at=self.now(),
            audio_ref="a",
            words_ref="w",
            language="en",
            duration_s=30.0,
            word_count=80,
            first_pass_seconds=2.0,
            engine="tiny.en",
        )

    def ready(self, count: int) -> ClipsReady:
        clips = [
            ClipSpec(
                index=i,
                start_s=float(i),
                end_s=i + 1.0,
                start_sample=i * 16000,
                end_sample=(i + 1) * 16000,
                audio_ref="c",
                flagged_word_indices=[i],
                trigger_confidence=0.2,
            )
            for i in range(count)
        ]
        return ClipsReady(
            job_id=self.job_id,
            occurred_at=self.now(),
            audio_ref="a",
            words_ref="w",
            plan_ref="p",
            language="en",
            duration_s=30.0,
            first_pass_seconds=2.0,
            words_flagged=count,
            clips=clips,
        )

    def corrected(self, index: int, count: int) -> ClipCorrected:
        return ClipCorrected(
            job_id=self.job_id,
            occurred_at=self.now(),
            clip_index=index,
            clip_count=count,
            plan_ref="p",
            ok=True,
            backend="base",
            result_key=f"{self.job_id}.{index}",
        )

    def merged(self) -> JobMerged:
        return job_merged(
            self.job_id,
            occurred_at=self.now(),
            duration_s=30.0,
            corrections_accepted=1,
            corrections_rejected=1,
            words_flagged=3,
            first_pass_seconds=2.0,
            second_pass_seconds=3.0,
            audio_redecoded_seconds=4.0,
        )

    def failed(self) -> JobFailed:
        return JobFailed(
            job_id=self.job_id,
            occurred_at=self.now(),
            stage="correcting",
            error=ErrorInfo(code="correcting_failed", message="backend down"),
        )


async def redeliver(infra: Infra, event: Event) -> None:
    """Publish without a message id, as a redelivery would hand the same event over again."""
    subject = subject_for(type(event).__struct_config__.tag)  # type: ignore[arg-type]
    await infra.js.publish(subject, encode(event), stream=STREAM_NAME)


async def view_of(infra: Infra, job_id: str) -> JobView | None:
    found = await JobViews.of(infra).get(job_id)
    return found[0] if found else None


async def wait_for(
    infra: Infra, job_id: str, check: Callable[[JobView], bool], timeout_s: float = 15.0
) -> JobView:
    deadline = time.monotonic() + timeout_s
    last: JobView | None = None
    while time.monotonic() < deadline:
        last = await view_of(infra, job_id)
        if last is not None and check(last):
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"view of {job_id} never matched; last seen: {last}")


async def barrier(infra: Infra) -> None:
    """Wait until everything published so far was projected: the consumer is ordered, so once an
    event published now is visible, every event published before it has been handled."""
    marker = Events()
    await infra.publish(marker.created())
    await wait_for(infra, marker.job_id, lambda v: v.status == "queued")


async def test_a_job_through_every_stage(projector: None, infra: Infra) -> None:
    job = Events()
    await infra.publish(job.created())
    view = await wait_for(infra, job.job_id, lambda v: v.status == "queued")
    assert (view.filename, view.duration_s, view.progress) == ("talk.wav", 30.0, 0.0)

    await infra.publish(job.progress("transcribing", 0.5))
    view = await wait_for(infra, job.job_id, lambda v: v.status == "transcribing")
    assert view.progress == pytest.approx(0.325)

    await infra.publish(job.scored())
    await wait_for(infra, job.job_id, lambda v: v.status == "correcting" and v.progress == pytest.approx(0.6))

    await infra.publish(job.ready(2))
    await wait_for(infra, job.job_id, lambda v: v.clip_count == 2)

    await infra.publish(job.corrected(0, 2))
    view = await wait_for(infra, job.job_id, lambda v: v.clips_done == [0])
    assert view.status == "correcting" and view.progress == pytest.approx(0.75)

    await infra.publish(job.corrected(1, 2))
    view = await wait_for(infra, job.job_id, lambda v: v.status == "merging")
    assert view.progress == pytest.approx(0.9) and view.clips_done == [0, 1]

    await infra.publish(job.merged())
    view = await wait_for(infra, job.job_id, lambda v: v.status == "completed")
    assert view.progress == 1.0
    assert view.transcript_ref == f"{job.job_id}/transcript.json"


async def test_out_of_order_and_duplicate_deliveries(projector: None, infra: Infra) -> None:
    job = Events()
    created = job.created()
    progress = job.progress("transcribing", 0.9)
    scored = job.scored()
    first_clip = job.corrected(1, 3)
    ready = job.ready(3)
    await infra.publish(created)
    await redeliver(infra, created)
    await infra.publish(scored)
    await infra.publish(progress)  # late: transcribing after the words were scored
    await infra.publish(first_clip)  # before clips.ready
    await redeliver(infra, first_clip)
    await infra.publish(ready)
    await redeliver(infra, scored)
    await barrier(infra)

    view = await view_of(infra, job.job_id)
    assert view is not None
    assert view.status == "correcting"
    assert view.clip_count == 3 and view.clips_done == [1]
    assert view.progress == pytest.approx(0.7)

    before = await infra.jobs.get(job.job_id)
    await redeliver(infra, ready)
    await redeliver(infra, first_clip)
    await barrier(infra)
    after = await infra.jobs.get(job.job_id)
    assert after.revision == before.revision, "a duplicate event rewrote the view"

    failed = job.failed()
    await infra.publish(failed)
    await wait_for(infra, job.job_id, lambda v: v.status == "failed")
    await infra.publish(job.corrected(0, 3))
    await infra.publish(job.corrected(2, 3))
    await infra.publish(job.merged())
    await barrier(infra)
    view = await view_of(infra, job.job_id)
    assert view is not None
    assert view.status == "failed"
    assert view.error == ErrorInfo(code="correcting_failed", message="backend down")
    assert view.transcript_ref is None


async def test_events_of_unknown_jobs_make_no_view(projector: None, infra: Infra) -> None:
    stray = Events()
    await infra.publish(stray.progress("transcribing", 0.1))
    await infra.publish(stray.failed())
    await barrier(infra)
    assert await view_of(infra, stray.job_id) is None


async def test_compare_and_set_keeps_concurrent_updates(infra: Infra) -> None:
    """Replicas projecting different events of one job at once: every clip is counted."""
    job = Events()
    views = JobViews.of(infra)
    await views.apply(job.created())
    count = 12
    await views.apply(job.ready(count))
    await asyncio.gather(*(views.apply(job.corrected(i, count)) for i in range(count)))
    view = await view_of(infra, job.job_id)
    assert view is not None
    assert view.clips_done == list(range(count))
    assert view.status == "merging"


async def test_stored_view_is_plain_json(infra: Infra) -> None:
    job = Events()
    await JobViews.of(infra).apply(job.created())
    entry = await infra.jobs.get(job.job_id)
    raw = msgspec.json.decode(entry.value or b"")
    assert raw["id"] == job.job_id and raw["status"] == "queued"
