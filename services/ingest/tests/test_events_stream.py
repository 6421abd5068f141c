"""``GET /v1/jobs/{id}/events`` on a real nats-server under a real uvicorn: events published the way
the services publish them, read back as Server-Sent Events with httpx streaming."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from relisten_contracts import ErrorInfo, JobView, encode
from relisten_ingest.adapters import JobViews
from relisten_ingest.settings import IngestSettings
from relisten_runtime.infra import Infra

from .conftest import ServeApp, SseEvent, read_events
from .fake_pipeline import (
    CORRECTIONS,
    FIRST_WORDS,
    FakeJob,
    make_transcript,
    transcript_ref,
)

pytestmark = pytest.mark.nats


@pytest.fixture
async def server(serve_app: ServeApp, make_settings: Callable[..., IngestSettings]) -> AsyncIterator[str]:
    async with serve_app(make_settings(events_heartbeat_s=0.5)) as base:
        yield base


async def new_job(infra: Infra, **kwargs: Any) -> FakeJob:
    job = FakeJob(infra, uuid.uuid4().hex, **kwargs)
    await job.created()
    deadline = time.monotonic() + 10
    while await JobViews.of(infra).get(job.job_id) is None:
        assert time.monotonic() < deadline, "the projector never made the view"
        await asyncio.sleep(0.02)
    return job


class Stream:
    """An open event stream; ``next()`` returns the next named event."""

    def __init__(
        self, response: httpx.Response, events: AsyncIterator[SseEvent], comments: list[str]
    ) -> None:
        self.response = response
        self.events = events
        self.comments = comments

    async def next(self, timeout_s: float = 10.0) -> SseEvent:
        async with asyncio.timeout(timeout_s):
            return await anext(self.events)

    async def rest(self, timeout_s: float = 10.0) -> list[SseEvent]:
        """Every remaining event; the stream must end by itself."""
        async with asyncio.timeout(timeout_s):
            return [event async for event in self.events]


@asynccontextmanager
async def follow(base: str, job_id: str, comments: list[str] | None = None) -> AsyncIterator[Stream]:
    """Open the job's event stream (closed, like a client going away, on leaving the block)."""
    comments = [] if comments is None else comments
    async with (
        httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(30, read=None)) as client,
        client.stream("GET", f"/v1/jobs/{job_id}/events") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        yield Stream(response, read_events(response, comments=comments), comments)


async def test_a_job_followed_from_the_start(server: str, infra: Infra) -> None:
    job = await new_job(infra)
    async with follow(server, job.job_id) as stream:
        state = await stream.next()
        assert state.event == "state"
        assert state.data["id"] == job.job_id and state.data["status"] == "queued"

        await job.progress("transcribing", 0.5)
        status = await stream.next()
        assert (status.event, status.data) == ("status", {"status": "transcribing", "progress": 0.325})

        await job.scored()
        names = [(await stream.next()).event for _ in range(2)]
        assert sorted(names) == ["first_pass", "status"]

        await job.ready()
        await job.corrected(0)
        clip = await stream.next()
        assert (clip.event, clip.data) == ("clip", {"index": 0, "count": 2, "ok": True})
        assert (await stream.next()).data == {"status": "correcting", "progress": 0.75}

        await job.corrected(1, ok=False)
        clip = await stream.next()
        assert clip.data == {"index": 1, "count": 2, "ok": False}
        assert (await stream.next()).data == {"status": "merging", "progress": 0.9}

        await job.merged()
        rest = await stream.rest()
    assert [e.event for e in rest] == ["correction", "correction", "completed"]
    accepted = rest[0].data
    assert accepted["original_text"] == "quilt her" and accepted["corrected_text"] == "Quilter"
    assert accepted["status"] == "accepted" and accepted["backend"] == "fake-base"
    assert [w["word"] for w in accepted["words"]] == [" Quilter"]
    assert accepted["words"][0]["source"] == "second"
    assert rest[1].data["status"] == "rejected"
    assert rest[2].data["transcript_url"] == f"/v1/jobs/{job.job_id}/transcript"
    assert rest[2].data["stats"]["corrections_accepted"] == 1
    ids = [int(e.id or 0) for e in (state, status, clip, *rest)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


async def test_first_pass_payload(server: str, infra: Infra) -> None:
    job = await new_job(infra)
    await job.progress("transcribing", 0.1)
    await job.scored()
    async with follow(server, job.job_id) as stream:
        assert (await stream.next()).event == "state"
        first = await stream.next()
        if first.event == "status":  # the view had not caught up with the words when we connected
            first = await stream.next()
    assert first.event == "first_pass"
    assert first.data["language"] == "en" and first.data["duration_s"] == 5.0
    assert first.data["text"].startswith("Mister quilt her is the apostle")
    assert first.data["words"][1] == {"word": " quilt", "start": 0.4, "end": 0.6, "probability": 0.31}
    assert len(first.data["words"]) == len(FIRST_WORDS)


async def test_a_late_client_gets_the_state_then_only_what_is_new(server: str, infra: Infra) -> None:
    job = await new_job(infra)
    await job.progress("transcribing", 0.5)
    await job.scored()
    await job.ready()
    await job.corrected(0)
    views = JobViews.of(infra)
    deadline = time.monotonic() + 10
    while (found := await views.get(job.job_id)) is None or found[0].clips_done != [0]:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)

    async with follow(server, job.job_id) as stream:
        state = await stream.next()
        assert state.data["status"] == "correcting" and state.data["clips"] == {"total": 2, "done": 1}
        first = await stream.next()
        assert first.event == "first_pass"
        await job.corrected(0)  # a duplicate: nothing new
        await job.corrected(1)
        clip = await stream.next()
        assert clip.data == {"index": 1, "count": 2, "ok": True}
        await job.merged()
        rest = await stream.rest()
    assert [e.event for e in rest] == ["status", "correction", "correction", "completed"]


async def test_a_completed_job_replays_at_once(server: str, infra: Infra) -> None:
    job = await new_job(infra)
    await job.run_to_completion()
    views = JobViews.of(infra)
    deadline = time.monotonic() + 10
    while (found := await views.get(job.job_id)) is None or found[0].status != "completed":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)

    started = time.monotonic()
    async with follow(server, job.job_id) as stream:
        events = await stream.rest(timeout_s=10)
    assert time.monotonic() - started < 3
    assert [e.event for e in events] == ["state", "first_pass", "correction", "correction", "completed"]
    assert events[0].data["status"] == "completed"


async def test_a_failed_job(server: str, infra: Infra) -> None:
    job = await new_job(infra)
    async with follow(server, job.job_id) as stream:
        assert (await stream.next()).event == "state"
        await job.progress("transcribing", 0.2)
        assert (await stream.next()).event == "status"
        await job.failed("audio_invalid", "stored audio is unusable")
        rest = await stream.rest()
    assert [(e.event, e.data) for e in rest] == [
        ("failed", {"error": {"code": "audio_invalid", "message": "stored audio is unusable"}})
    ]


async def test_a_terminal_view_whose_events_are_gone(server: str, infra: Infra) -> None:
    """The stream no longer holds the job's events (purged, aged out): the view decides the end."""
    job_id = uuid.uuid4().hex
    await infra.data.put(transcript_ref(job_id), encode(make_transcript(job_id)))
    now = time.time()
    view = JobView(
        id=job_id,
        status="completed",
        progress=1.0,
        error=None,
        created_at=now - 3600,
        updated_at=now - 3500,
        transcript_ref=transcript_ref(job_id),
    )
    await JobViews.of(infra).create(view)
    failed_id = uuid.uuid4().hex
    error = ErrorInfo(code="merging_failed", message="gone")
    await JobViews.of(infra).create(
        JobView(id=failed_id, status="failed", progress=0.9, error=error, created_at=now, updated_at=now)
    )

    async with follow(server, job_id) as stream:
        events = await stream.rest(timeout_s=10)
    assert [e.event for e in events] == ["state", "correction", "correction", "completed"]
    assert events[1].data["corrected_text"] == CORRECTIONS[0].corrected_text

    async with follow(server, failed_id) as stream:
        events = await stream.rest(timeout_s=10)
    assert [e.event for e in events] == ["state", "failed"]
    assert events[1].data == {"error": {"code": "merging_failed", "message": "gone"}}


async def test_keep_alive_comments_while_idle(server: str, infra: Infra) -> None:
    job = await new_job(infra)
    comments: list[str] = []
    async with follow(server, job.job_id, comments) as stream:
        assert (await stream.next()).event == "state"
        await asyncio.sleep(1.3)
        await job.progress("transcribing", 0.5)
        assert (await stream.next()).event == "status"
    assert comments.count("keep-alive") >= 2


async def test_unknown_job_is_a_json_404(server: str) -> None:
    async with httpx.AsyncClient(base_url=server) as client:
        response = await client.get("/v1/jobs/nope/events")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "job_not_found"


async def test_a_client_that_leaves_releases_its_consumer(server: str, infra: Infra) -> None:
    job = await new_job(infra)
    async with follow(server, job.job_id) as stream:
        assert (await stream.next()).event == "state"
    deadline = time.monotonic() + 10
    while True:
        consumers = await infra.js.consumers_info("RELISTEN")
        ephemeral = [c for c in consumers if not c.config.durable_name]
        if not ephemeral:
            break
        assert time.monotonic() < deadline, f"consumers left behind: {[c.name for c in ephemeral]}"
        await asyncio.sleep(0.1)
