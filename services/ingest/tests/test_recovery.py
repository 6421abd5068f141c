"""Every job ends: the watchdog (JetStream's max-deliveries advisory, the deadline sweep) and
``POST /v1/jobs/{id}/retry``, against a real nats-server; plus the pure rules they rest on."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import msgspec
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from relisten_contracts import (
    STREAM_NAME,
    ClipsReady,
    ErrorInfo,
    FirstPass,
    JobCreated,
    JobFailed,
    JobProgress,
    JobRetried,
    JobView,
    Subject,
    WordsScored,
    decode_event,
    encode,
    first_pass_object,
    plan_object,
)
from relisten_ingest.adapters import JobViews
from relisten_ingest.domain import apply_event, job_deadline_s, stuck_views
from relisten_ingest.recovery import Watchdog
from relisten_ingest.settings import IngestSettings
from relisten_runtime.infra import Infra

from .conftest import SPEECH_WAV, StartClient

WAIT_S = 30.0

# ---------------------------------------------------------------------------------------------
# Pure rules
# ---------------------------------------------------------------------------------------------


def view(status: str = "transcribing", **changes: Any) -> JobView:
    values: dict[str, Any] = {
        "id": "j1",
        "status": status,
        "progress": 0.3,
        "error": None,
        "created_at": 1000.0,
        "updated_at": 1000.0,
        "duration_s": 100.0,
    }
    values.update(changes)
    return JobView(**values)


def test_the_deadline_grows_with_the_audio() -> None:
    assert job_deadline_s(0.0, 600.0, 3.0) == 600.0
    assert job_deadline_s(100.0, 600.0, 3.0) == 900.0


def test_only_running_jobs_past_their_deadline_are_stuck() -> None:
    views = [
        view("transcribing", id="late"),
        view("merging", id="on-time", created_at=1500.0),
        view("failed", id="over", error=ErrorInfo(code="x", message="y")),
        view("completed", id="done"),
        view("queued", id="retried", attempt=1, attempt_started_at=1500.0),
    ]
    # deadline 600 + 3 x 100 = 900 s; now = 2001: created at 1000 is 1001 s old, at 1500 only 501 s.
    stuck = stuck_views(views, 2001.0, 600.0, 3.0)
    assert [(v.id, deadline) for v, deadline in stuck] == [("late", 900.0)]


def test_a_retry_reopens_a_failed_view_and_older_runs_are_ignored_afterwards() -> None:
    failed = view(
        "failed", error=ErrorInfo(code="corrector_failed", message="boom"), clip_count=3, clips_done=[0]
    )
    retried = JobRetried(job_id="j1", attempt=1, resume_from="clips.ready", occurred_at=2000.0)
    reopened = apply_event(failed, retried)
    assert reopened is not None
    assert (reopened.status, reopened.error, reopened.attempt) == ("correcting", None, 1)
    assert (reopened.clip_count, reopened.clips_done, reopened.attempt_started_at) == (3, [], 2000.0)
    # A late event of run 0 changes nothing; the same event of run 1 moves the job on.
    late = JobFailed(
        job_id="j1", stage="corrector", error=ErrorInfo(code="x", message="y"), occurred_at=2001.0
    )
    assert apply_event(reopened, late) == reopened
    again = apply_event(reopened, msgspec.structs.replace(late, attempt=1))
    assert again is not None and again.status == "failed"
    # Applying the retry twice, or to a job that is not failed, changes nothing.
    assert apply_event(reopened, retried) == reopened
    assert apply_event(view("merging"), retried) == view("merging")


def test_a_retry_from_the_audio_starts_over() -> None:
    failed = view("failed", error=ErrorInfo(code="x", message="y"), clip_count=2, clips_done=[0, 1])
    reopened = apply_event(
        failed, JobRetried(job_id="j1", attempt=1, resume_from="job.created", occurred_at=5.0)
    )
    assert reopened is not None
    assert (reopened.status, reopened.clip_count, reopened.clips_done) == ("queued", None, [])


# ---------------------------------------------------------------------------------------------
# Against a real nats-server
# ---------------------------------------------------------------------------------------------

pytestmark_nats = pytest.mark.nats


@pytest.fixture
async def client(
    make_settings: Callable[..., IngestSettings], start_client: StartClient
) -> AsyncIterator[httpx.AsyncClient]:
    # The app's own watchdog sweeps rarely; the tests drive the sweep themselves.
    settings = make_settings(job_sweep_interval_s=3600.0)
    async with start_client(settings) as started:
        yield started


async def submit(client: httpx.AsyncClient) -> str:
    response = await client.post(
        "/v1/jobs", files={"file": ("speech.wav", SPEECH_WAV.read_bytes(), "audio/wav")}
    )
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


async def wait_status(client: httpx.AsyncClient, job_id: str, status: str) -> dict[str, Any]:
    async with asyncio.timeout(WAIT_S):
        while True:
            body: dict[str, Any] = (await client.get(f"/v1/jobs/{job_id}")).json()
            if body["status"] == status:
                return body
            await asyncio.sleep(0.05)


async def job_events(infra: Infra, job_id: str) -> list[tuple[Any, str]]:
    """Every event of ``job_id`` in the stream, with its message id."""
    info = await infra.js.stream_info(STREAM_NAME)
    found = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            raw = await infra.js.get_msg(STREAM_NAME, seq=seq)
        except NotFoundError:
            continue
        event = decode_event(raw.data or b"")
        if event.job_id == job_id:
            found.append((event, (raw.headers or {}).get("Nats-Msg-Id", "")))
    return found


async def fail(infra: Infra, job_id: str, attempt: int = 0) -> None:
    await infra.publish(
        JobFailed(
            job_id=job_id, stage="asr", error=ErrorInfo(code="asr_failed", message="boom"), attempt=attempt
        )
    )


@pytestmark_nats
async def test_a_job_whose_event_exhausts_its_deliveries_is_failed_by_the_watchdog(
    client: httpx.AsyncClient, infra: Infra
) -> None:
    """A consumer that takes the job's event and never answers (a worker killed on its last delivery):
    the server gives up, announces it, and the watchdog fails the job."""
    job_id = await submit(client)
    created = await infra.js.get_last_msg(STREAM_NAME, Subject.JOB_CREATED)
    assert decode_event(created.data or b"").job_id == job_id
    durable = "lost-worker"
    await infra.js.add_consumer(
        STREAM_NAME,
        ConsumerConfig(
            name=durable,
            durable_name=durable,
            filter_subject=Subject.JOB_CREATED,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=1.0,
            max_deliver=1,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=created.seq,
        ),
    )
    subscription = await infra.js.pull_subscribe_bind(durable, stream=STREAM_NAME)
    try:
        taken = await subscription.fetch(1, timeout=WAIT_S)
        assert decode_event(taken[0].data).job_id == job_id  # taken, never acknowledged
        body = await wait_status(client, job_id, "failed")
    finally:
        await subscription.unsubscribe()
        await infra.js.delete_consumer(STREAM_NAME, durable)
    assert body["error"]["code"] == "deliveries_exhausted"
    assert "lost-worker" in body["error"]["message"]
    failures = [e for e, _ in await job_events(infra, job_id) if isinstance(e, JobFailed)]
    assert [f.stage for f in failures] == ["watchdog"]
    metrics = (await client.get("/metrics")).text
    assert 'relisten_watchdog_failed_jobs_total{code="deliveries_exhausted"} 1.0' in metrics


@pytestmark_nats
async def test_disabled_notification_destinations_are_a_metric(
    client: httpx.AsyncClient, infra: Infra
) -> None:
    now = time.time()
    await infra.notify.put(
        "disabled.discord",
        json.dumps({"target": "discord", "status": 404, "at": now, "until": now + 60}).encode(),
    )
    await infra.notify.put(
        "disabled.callback.expired",
        json.dumps({"target": "callback", "status": 410, "at": 0, "until": 1}).encode(),
    )
    metrics = (await client.get("/metrics")).text
    assert 'relisten_notify_disabled_destinations{target="discord"} 1.0' in metrics
    assert 'relisten_notify_disabled_destinations{target="callback"} 0.0' in metrics


@pytestmark_nats
async def test_the_projector_has_no_delivery_limit(client: httpx.AsyncClient, infra: Infra) -> None:
    info = await infra.js.consumer_info(STREAM_NAME, "ingest-view")
    assert info.config.max_deliver == -1


@pytestmark_nats
async def test_the_sweep_fails_a_job_past_its_deadline_once(client: httpx.AsyncClient, infra: Infra) -> None:
    job_id = await submit(client)
    found = await JobViews.of(infra).get(job_id)
    assert found is not None
    created_at = found[0].created_at
    now = [created_at + 10.0]
    watchdog = Watchdog(
        infra, deadline_base_s=5.0, deadline_per_audio_s=1.0, sweep_interval_s=3600.0, clock=lambda: now[0]
    )
    # 5 + 1 x 5.855 s of audio = 10.855 s: not yet.
    assert job_id not in await watchdog.sweep()
    now[0] = created_at + 11.0
    assert job_id in await watchdog.sweep()
    body = await wait_status(client, job_id, "failed")
    assert body["error"]["code"] == "stuck"
    # A second replica sweeping the same job publishes nothing more.
    second = Watchdog(
        infra, deadline_base_s=5.0, deadline_per_audio_s=1.0, sweep_interval_s=3600.0, clock=lambda: now[0]
    )
    assert job_id not in await second.sweep()
    failures = [msg_id for e, msg_id in await job_events(infra, job_id) if isinstance(e, JobFailed)]
    assert failures == [f"job.failed.v1:{job_id}"]


@pytestmark_nats
async def test_retry_redrives_a_failed_job_from_its_last_stored_artefact(
    client: httpx.AsyncClient, infra: Infra
) -> None:
    job_id = await submit(client)
    refused = await client.post(f"/v1/jobs/{job_id}/retry")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "job_not_failed"
    assert (await client.post("/v1/jobs/no-such-job/retry")).status_code == 404

    # Run 0 fails before any artefact: run 1 starts again from the audio.
    await fail(infra, job_id)
    await wait_status(client, job_id, "failed")
    answer = await client.post(f"/v1/jobs/{job_id}/retry")
    assert answer.status_code == 202, answer.text
    assert (answer.json()["status"], answer.json()["attempt"], answer.json()["error"]) == ("queued", 1, None)

    # Run 1 stored a first pass, then failed: run 2 resumes from words.scored.
    first_pass = FirstPass(language="en", duration_s=5.855, words=[], segments=[], engine="test", seconds=1.0)
    await infra.data.put(first_pass_object(job_id), encode(first_pass))
    await fail(infra, job_id, attempt=1)
    await wait_status(client, job_id, "failed")
    assert (await client.post(f"/v1/jobs/{job_id}/retry")).status_code == 202

    # Run 2 stored a plan, then failed: run 3 resumes from clips.ready (the plan is that event).
    plan = ClipsReady(
        job_id=job_id,
        audio_ref=f"{job_id}/audio.wav",
        words_ref=first_pass_object(job_id),
        plan_ref=plan_object(job_id),
        language="en",
        duration_s=5.855,
        first_pass_seconds=1.0,
        words_flagged=0,
        clips=[],
        attempt=2,
    )
    await infra.data.put(plan_object(job_id), encode(plan))
    await fail(infra, job_id, attempt=2)
    await wait_status(client, job_id, "failed")
    answer = await client.post(f"/v1/jobs/{job_id}/retry")
    assert answer.status_code == 202
    assert (answer.json()["status"], answer.json()["attempt"]) == ("correcting", 3)

    events = await job_events(infra, job_id)
    resumed = [(type(e).__name__, e.attempt, msg_id) for e, msg_id in events if e.attempt > 0]
    assert [name for name, _, _ in resumed if name != "JobFailed"] == [
        "JobRetried",
        "JobCreated",
        "JobRetried",
        "WordsScored",
        "JobRetried",
        "ClipsReady",
    ]
    assert all(msg_id.endswith(f":a{attempt}") for _, attempt, msg_id in resumed)
    words = next(e for e, _ in events if isinstance(e, WordsScored))
    assert (words.words_ref, words.attempt) == (first_pass_object(job_id), 2)
    created = [e for e, _ in events if isinstance(e, JobCreated)]
    assert [c.attempt for c in created] == [0, 1]
    assert created[1].audio_ref == created[0].audio_ref

    # A late progress event of an earlier run does not move the reopened view.
    await infra.publish(JobProgress(job_id=job_id, stage="merging", progress=0.5, attempt=1))
    await infra.publish(JobProgress(job_id=job_id, stage="merging", progress=0.7, attempt=3))
    body = await wait_status(client, job_id, "merging")
    assert body["attempt"] == 3


@pytestmark_nats
async def test_two_concurrent_retries_run_the_job_once(client: httpx.AsyncClient, infra: Infra) -> None:
    job_id = await submit(client)
    await fail(infra, job_id)
    await wait_status(client, job_id, "failed")
    answers = await asyncio.gather(*(client.post(f"/v1/jobs/{job_id}/retry") for _ in range(2)))
    assert sorted(a.status_code for a in answers) == [202, 409]
    retried = [
        e for e, _ in await job_events(infra, job_id) if isinstance(e, JobRetried | JobCreated) and e.attempt
    ]
    assert len(retried) == 2  # one job.retried, one job.created of run 1


@pytestmark_nats
async def test_two_replicas_failing_the_same_job_at_once_publish_one_job_failed(
    client: httpx.AsyncClient, infra: Infra
) -> None:
    job_id = await submit(client)
    replicas = [
        Watchdog(infra, deadline_base_s=1.0, deadline_per_audio_s=0.0, sweep_interval_s=3600.0)
        for _ in range(2)
    ]
    # Both see the job running (neither waits for the other's event to reach the view).
    published = await asyncio.gather(*(w.fail(job_id, 0, code="stuck", message="test") for w in replicas))
    assert published == [True, True]
    await wait_status(client, job_id, "failed")
    failures = [msg_id for e, msg_id in await job_events(infra, job_id) if isinstance(e, JobFailed)]
    assert failures == [f"job.failed.v1:{job_id}"]  # the stream dropped the second as a duplicate
