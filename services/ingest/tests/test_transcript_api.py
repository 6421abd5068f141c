"""``GET /v1/jobs/{id}/transcript`` in every format, and its 404/409 answers (real nats-server)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import msgspec
import pytest
from relisten_contracts import (
    Correction,
    ErrorInfo,
    JobView,
    Transcript,
    TranscriptSegment,
    TranscriptStats,
    TranscriptWord,
    encode,
)
from relisten_ingest.settings import IngestSettings
from relisten_runtime.infra import Infra

from .conftest import StartClient

pytestmark = pytest.mark.nats

WORDS = [
    (" Mister", 0.0, 0.4, 0.95, "first", False),
    (" Quilter", 0.4, 0.9, 0.98, "second", False),
    (" is", 0.9, 1.0, 0.99, "first", False),
    (" the", 1.0, 1.1, 0.99, "first", False),
    (" apostle", 1.1, 1.7, 0.7, "second", True),
    (" of", 1.7, 1.8, 0.99, "first", False),
    (" the", 1.8, 1.9, 0.99, "first", False),
    (" middle", 1.9, 2.3, 0.99, "first", False),
    (" classes.", 2.3, 3.0, 0.99, "first", False),
    (" Welcome.", 4.0, 4.6, 0.9, "first", False),
]


def make_transcript(job_id: str) -> Transcript:
    words = [
        TranscriptWord(word=w, start=s, end=e, probability=p, source=src, interpolated=i)  # type: ignore[arg-type]
        for w, s, e, p, src, i in WORDS
    ]
    return Transcript(
        job_id=job_id,
        text="Mister Quilter is the apostle of the middle classes. Welcome.",
        language="en",
        duration_s=5.0,
        words=words,
        segments=[
            TranscriptSegment(
                id=0,
                start=0.0,
                end=3.0,
                text="Mister Quilter is the apostle of the middle classes.",
                first_word=0,
                last_word=9,
            ),
            TranscriptSegment(id=1, start=4.0, end=4.6, text="Welcome.", first_word=9, last_word=10),
        ],
        corrections=[
            Correction(
                start=0.4,
                end=0.9,
                trigger_confidence=0.3,
                original_text="quilt her",
                corrected_text="Quilter",
                status="accepted",
                reason="second pass more confident",
                backend="base",
            )
        ],
        stats=TranscriptStats(
            first_pass_seconds=0.5,
            second_pass_seconds=0.8,
            audio_redecoded_seconds=2.0,
            words_flagged=2,
            corrections_accepted=1,
            corrections_rejected=0,
        ),
    )


def make_view(
    job_id: str, status: str, *, error: ErrorInfo | None = None, transcript_ref: str | None = None
) -> JobView:
    now = time.time()
    return JobView(
        id=job_id,
        status=status,  # type: ignore[arg-type]
        progress=1.0 if status == "completed" else 0.3,
        error=error,
        created_at=now - 10,
        updated_at=now,
        filename="quilter.wav",
        duration_s=5.0,
        transcript_ref=transcript_ref,
    )


@pytest.fixture
async def client(
    start_client: StartClient, make_settings: Callable[..., IngestSettings]
) -> AsyncIterator[httpx.AsyncClient]:
    async with start_client(make_settings()) as client:
        yield client


@pytest.fixture
async def completed_job(infra: Infra) -> str:
    job_id = uuid.uuid4().hex
    ref = f"{job_id}/transcript.json"
    await infra.data.put(ref, encode(make_transcript(job_id)))
    await infra.jobs.put(job_id, encode(make_view(job_id, "completed", transcript_ref=ref)))
    return job_id


async def test_json(client: httpx.AsyncClient, completed_job: str) -> None:
    response = await client.get(f"/v1/jobs/{completed_job}/transcript")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["text"] == "Mister Quilter is the apostle of the middle classes. Welcome."
    assert body["language"] == "en" and body["duration_s"] == 5.0
    assert set(body["words"][0]) >= {"word", "start", "end", "probability", "source", "interpolated"}
    assert body["words"][4]["interpolated"] is True and body["words"][1]["source"] == "second"
    assert body["segments"][1]["text"] == "Welcome."
    assert body["corrections"][0]["status"] == "accepted"
    assert body["stats"]["corrections_accepted"] == 1
    assert msgspec.convert(body, Transcript) == make_transcript(completed_job)
    same = await client.get(f"/v1/jobs/{completed_job}/transcript", params={"format": "json"})
    assert same.json() == body


async def test_text(client: httpx.AsyncClient, completed_job: str) -> None:
    response = await client.get(f"/v1/jobs/{completed_job}/transcript", params={"format": "text"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "Mister Quilter is the apostle of the middle classes. Welcome.\n"


async def test_srt(client: httpx.AsyncClient, completed_job: str) -> None:
    response = await client.get(f"/v1/jobs/{completed_job}/transcript", params={"format": "srt"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-subrip")
    assert response.headers["content-disposition"] == f'inline; filename="{completed_job}.srt"'
    assert response.text == (
        "1\n00:00:00,000 --> 00:00:03,000\nMister Quilter is the apostle\nof the middle classes.\n\n"
        "2\n00:00:04,000 --> 00:00:04,800\nWelcome.\n\n"
    )


async def test_vtt(client: httpx.AsyncClient, completed_job: str) -> None:
    response = await client.get(f"/v1/jobs/{completed_job}/transcript", params={"format": "vtt"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/vtt")
    assert response.text == (
        "WEBVTT\n\n"
        "00:00:00.000 --> 00:00:03.000\nMister Quilter is the apostle\nof the middle classes.\n\n"
        "00:00:04.000 --> 00:00:04.800\nWelcome.\n\n"
    )


@pytest.mark.parametrize("status", ["queued", "transcribing", "correcting", "merging"])
async def test_not_completed(client: httpx.AsyncClient, infra: Infra, status: str) -> None:
    job_id = uuid.uuid4().hex
    await infra.jobs.put(job_id, encode(make_view(job_id, status)))
    for fmt in ("json", "srt"):
        response = await client.get(f"/v1/jobs/{job_id}/transcript", params={"format": fmt})
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "job_not_completed"
        assert status in response.json()["error"]["message"]


async def test_failed_job_says_why(client: httpx.AsyncClient, infra: Infra) -> None:
    job_id = uuid.uuid4().hex
    error = ErrorInfo(code="transcribing_failed", message="the model could not be loaded")
    await infra.jobs.put(job_id, encode(make_view(job_id, "failed", error=error)))
    response = await client.get(f"/v1/jobs/{job_id}/transcript")
    assert response.status_code == 409
    body = response.json()["error"]
    assert body["code"] == "job_not_completed"
    assert "transcribing_failed" in body["message"] and "could not be loaded" in body["message"]
    job = (await client.get(f"/v1/jobs/{job_id}")).json()
    assert job["status"] == "failed" and job["error"] == {"code": error.code, "message": error.message}


async def test_unknown_job(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/v1/jobs/{uuid.uuid4().hex}/transcript")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "job_not_found"


async def test_completed_view_without_stored_transcript(client: httpx.AsyncClient, infra: Infra) -> None:
    job_id = uuid.uuid4().hex
    view = make_view(job_id, "completed", transcript_ref=f"{job_id}/transcript.json")
    await infra.jobs.put(job_id, encode(view))
    response = await client.get(f"/v1/jobs/{job_id}/transcript")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "transcript_missing"


async def test_completed_job_links_its_transcript(client: httpx.AsyncClient, completed_job: str) -> None:
    job = (await client.get(f"/v1/jobs/{completed_job}")).json()
    assert job["status"] == "completed" and job["progress"] == 1.0
    assert job["links"]["transcript"] == f"/v1/jobs/{completed_job}/transcript"
