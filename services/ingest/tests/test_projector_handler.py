"""The viewing step (the job view projector) against the in-memory job store (no NATS): events make
and move the view, a duplicate or late event changes nothing and is not counted twice, a deleted job's
replayed job.created makes no view, and lost compare-and-set races are retried."""

from __future__ import annotations

from relisten_contracts import ErrorInfo, JobCreated, JobFailed, JobProgress, JobView
from relisten_ingest.handlers import JobViewProjector
from relisten_ingest.metrics import IngestMetrics
from relisten_runtime.store import MemoryJobStore, StaleRevision

JOB = "job-view"


def created(job_id: str = JOB) -> JobCreated:
    return JobCreated(
        job_id=job_id,
        filename="talk.wav",
        original_ref=f"{job_id}/original",
        audio_ref=f"{job_id}/audio.wav",
        duration_s=12.0,
        occurred_at=100.0,
    )


def progress(value: float, at: float) -> JobProgress:
    return JobProgress(job_id=JOB, stage="transcribing", progress=value, occurred_at=at)


async def view(store: MemoryJobStore, job_id: str = JOB) -> JobView | None:
    found = await store.view(job_id)
    return None if found is None else found[0]


def transitions(metrics: IngestMetrics, status: str) -> float:
    return metrics.registry.get_sample_value("relisten_job_transitions_total", {"status": status}) or 0.0


async def test_events_make_and_move_the_view_once() -> None:
    store = MemoryJobStore()
    metrics = IngestMetrics()
    project = JobViewProjector(store, metrics)
    assert await project(created()) == ()
    queued = await view(store)
    assert queued is not None and queued.status == "queued" and queued.filename == "talk.wav"

    await project(progress(0.5, 101.0))
    moving = await view(store)
    assert moving is not None and moving.status == "transcribing" and moving.progress > 0
    assert transitions(metrics, "transcribing") == 1

    revision = (await store.view(JOB) or (None, 0))[1]
    await project(progress(0.5, 101.0))  # a redelivery
    await project(progress(0.2, 102.0))  # late: progress never drops
    assert (await store.view(JOB) or (None, 0))[1] == revision  # nothing written
    assert transitions(metrics, "transcribing") == 1

    failed = JobFailed(
        job_id=JOB, stage="transcribing", error=ErrorInfo(code="x", message="y"), occurred_at=103.0
    )
    await project(failed)
    await project(progress(0.9, 104.0))  # failed is final
    final = await view(store)
    assert final is not None and final.status == "failed" and final.error == ErrorInfo(code="x", message="y")


async def test_a_deleted_job_s_replayed_creation_makes_no_view() -> None:
    store = MemoryJobStore()
    project = JobViewProjector(store)
    await project(created())
    await store.remove_job(JOB, clip_count=0)
    assert await view(store) is None
    await project(created())
    assert await view(store) is None
    await project(created("never-deleted"))
    assert await view(store, "never-deleted") is not None


async def test_an_event_of_a_job_without_a_view_is_dropped() -> None:
    store = MemoryJobStore()
    assert await JobViewProjector(store)(progress(0.5, 101.0)) == ()
    assert store.views == {}


class Contended(MemoryJobStore):
    """Another replica writes first, twice: the projector's compare-and-set must re-read and retry."""

    def __init__(self) -> None:
        super().__init__()
        self.losses = 2

    async def put_view(self, view: JobView, revision: int) -> int:
        if self.losses and revision:
            self.losses -= 1
            raise StaleRevision("another writer came first")
        return await super().put_view(view, revision)


async def test_lost_races_are_retried() -> None:
    store = Contended()
    project = JobViewProjector(store)
    await project(created())
    await project(progress(0.3, 101.0))
    moved = await view(store)
    assert store.losses == 0
    assert moved is not None and moved.status == "transcribing" and moved.progress > 0
