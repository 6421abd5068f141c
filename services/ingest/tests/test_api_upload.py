"""Accepted uploads against a real nats-server: what is stored, what is published, what the API shows."""

from __future__ import annotations

import asyncio
import hashlib
import io
import wave
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from relisten_contracts import AUDIO_BUCKET, STREAM_NAME, JobCreated, Subject, decode_event
from relisten_ingest.adapters import JobViews
from relisten_ingest.app import create_app
from relisten_ingest.settings import IngestSettings
from relisten_runtime.embedded import free_port
from relisten_runtime.infra import Infra

from .conftest import SPEECH_WAV, STEREO_MP3, StartClient, leftovers, subjects

pytestmark = pytest.mark.nats


@pytest.fixture
async def client(
    start_client: StartClient, make_settings: Callable[..., IngestSettings]
) -> AsyncIterator[httpx.AsyncClient]:
    async with start_client(make_settings()) as client:
        yield client


async def last_job_created(infra: Infra) -> tuple[JobCreated, str]:
    message = await infra.js.get_last_msg(STREAM_NAME, str(Subject.JOB_CREATED))
    event = decode_event(message.data or b"")
    assert isinstance(event, JobCreated)
    return event, (message.headers or {}).get("Nats-Msg-Id", "")


def wav_params(data: bytes) -> tuple[int, int, int, int]:
    with wave.open(io.BytesIO(data), "rb") as wav:
        return wav.getnchannels(), wav.getsampwidth(), wav.getframerate(), wav.getnframes()


async def test_speech_wav_becomes_a_queued_job(
    client: httpx.AsyncClient, infra: Infra, scratch: Path
) -> None:
    original = SPEECH_WAV.read_bytes()
    response = await client.post(
        "/v1/jobs",
        files={"file": ("quilter.wav", original, "audio/wav")},
        data={"language": "en", "prompt": "Quilter", "confidence_threshold": "0.5"},
    )
    assert response.status_code == 202, response.text
    body = response.json()
    job_id = body["id"]
    assert body["status"] == "queued"
    assert body["progress"] == 0
    assert response.headers["location"] == f"/v1/jobs/{job_id}"

    # Readable at once, with ISO-8601 UTC times.
    job = (await client.get(f"/v1/jobs/{job_id}")).json()
    assert job["id"] == job_id and job["status"] == "queued" and job["error"] is None
    assert job["filename"] == "quilter.wav"
    assert job["duration_s"] == pytest.approx(5.855)
    assert job["created_at"].endswith("Z")
    assert datetime.fromisoformat(job["created_at"]) <= datetime.fromisoformat(job["updated_at"])
    assert job["options"]["language"] == "en" and job["options"]["confidence_threshold"] == 0.5

    # Both objects are stored: the original byte for byte, the audio as 16 kHz mono WAV.
    stored_original = await infra.audio.get(f"{job_id}/original")
    assert hashlib.sha256(stored_original.data or b"").digest() == hashlib.sha256(original).digest()
    normalised = (await infra.audio.get(f"{job_id}/audio.wav")).data or b""
    assert wav_params(normalised) == (1, 2, 16000, 93680)

    # job.created is in the stream with the right facts and a deterministic message id.
    event, msg_id = await last_job_created(infra)
    assert event.job_id == job_id
    assert event.duration_s == pytest.approx(5.855)
    assert (event.original_ref, event.audio_ref) == (f"{job_id}/original", f"{job_id}/audio.wav")
    assert event.options.language == "en" and event.options.prompt == "Quilter"
    assert event.filename == "quilter.wav"
    assert msg_id == f"job.created.v1:{job_id}"

    # The normalised audio is served for the web page.
    audio = await client.get(f"/v1/jobs/{job_id}/audio")
    assert audio.status_code == 200
    assert audio.headers["content-type"] == "audio/wav"
    assert audio.content == normalised

    # The projector saw job.created and left the view as it was.
    await asyncio.sleep(0.3)
    assert (await client.get(f"/v1/jobs/{job_id}")).json() == job
    assert leftovers(scratch) == []


async def test_stereo_mp3_is_normalised(client: httpx.AsyncClient, infra: Infra) -> None:
    response = await client.post(
        "/v1/jobs", files={"file": ("sonnet-1.mp3", STEREO_MP3.read_bytes(), "application/octet-stream")}
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    channels, width, rate, frames = wav_params((await infra.audio.get(f"{job_id}/audio.wav")).data or b"")
    assert (channels, width, rate) == (1, 2, 16000)
    assert frames / 16000 == pytest.approx(53.267, abs=0.05)
    event, _ = await last_job_created(infra)
    assert event.job_id == job_id
    assert event.duration_s == pytest.approx(frames / 16000)


async def test_chunked_upload_without_content_length(client: httpx.AsyncClient) -> None:
    request = httpx.Request("POST", "http://x/", files={"file": ("a.wav", SPEECH_WAV.read_bytes())})
    body = request.read()

    async def stream() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 10_000):
            yield body[start : start + 10_000]

    response = await client.post(
        "/v1/jobs", content=stream(), headers={"content-type": request.headers["content-type"]}
    )
    assert response.status_code == 202, response.text


async def test_list_newest_first(client: httpx.AsyncClient) -> None:
    ids = []
    for name in ("one.wav", "two.wav"):
        response = await client.post("/v1/jobs", files={"file": (name, SPEECH_WAV.read_bytes())})
        ids.append(response.json()["id"])
    listed = (await client.get("/v1/jobs", params={"limit": 2})).json()["jobs"]
    assert [j["id"] for j in listed] == ids[::-1]
    everything = (await client.get("/v1/jobs")).json()["jobs"]
    assert len(everything) >= 2


async def test_transcript_of_a_queued_job_is_not_ready(client: httpx.AsyncClient) -> None:
    job_id = (await client.post("/v1/jobs", files={"file": ("a.wav", SPEECH_WAV.read_bytes())})).json()["id"]
    response = await client.get(f"/v1/jobs/{job_id}/transcript")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "job_not_completed"


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}


async def test_not_ready_without_nats(make_settings: Callable[..., IngestSettings], scratch: Path) -> None:
    app = create_app(make_settings(nats_url=f"nats://127.0.0.1:{free_port()}"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            assert (await client.get("/healthz")).status_code == 200
            ready = await client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["error"]["code"] == "not_ready"
            upload = await client.post("/v1/jobs", files={"file": ("a.wav", SPEECH_WAV.read_bytes())})
            assert upload.status_code == 503 and upload.json()["error"]["code"] == "not_ready"
            assert upload.headers["retry-after"]
    assert leftovers(scratch) == []


async def test_failure_after_partial_storage_is_rolled_back(
    make_settings: Callable[..., IngestSettings],
    infra: Infra,
) -> None:
    """Publishing job.created fails after both objects and the view were written: all are removed."""
    # This module already holds accepted jobs: look only at what this upload adds.
    before_keys = set(await _keys(infra))
    before_messages = (await infra.js.stream_info(STREAM_NAME)).state.messages
    before_chunks = set(await _chunks(infra))
    assert before_chunks

    app = create_app(make_settings())
    async with app.router.lifespan_context(app):
        await app.state.ingest.wait_ready(30)
        service_infra = app.state.ingest.infra

        async def broken_publish(event: object) -> None:
            raise ConnectionError("stream unavailable")

        service_infra.publish = broken_publish
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            response = await client.post("/v1/jobs", files={"file": ("a.wav", SPEECH_WAV.read_bytes())})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "storage_unavailable"
    assert set(await _keys(infra)) == before_keys
    assert (await infra.js.stream_info(STREAM_NAME)).state.messages == before_messages
    assert set(await _chunks(infra)) == before_chunks


async def _keys(infra: Infra) -> list[str]:
    views = JobViews.of(infra)
    return [k for k in await views.ids() if await views.get(k) is not None]


async def _chunks(infra: Infra) -> list[str]:
    """Chunk subjects of the audio store: every stored (non-empty) object has some; a deleted one none."""
    found: list[str] = await subjects(infra, f"OBJ_{AUDIO_BUCKET}", f"$O.{AUDIO_BUCKET}.C.>")
    return found
