"""Limits: requests per minute per client (429 ``rate_limited``), uploads, event streams and OpenAI
waits held at once (503), and uploads that trickle (408 ``upload_timeout``); against a real uvicorn
and nats-server, with a raw socket where a client must misbehave."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from relisten_contracts import STREAM_NAME, Subject
from relisten_ingest.limits import MAX_TRACKED, RateLimiter, Slots
from relisten_ingest.settings import IngestSettings
from relisten_runtime.infra import Infra

from .conftest import SPEECH_WAV, ServeApp, StartClient, leftovers
from .fake_pipeline import fake_services

AUDIO = SPEECH_WAV.read_bytes()
BOUNDARY = "relistenlimitsboundary"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_rate_limiter_is_a_token_bucket_per_client() -> None:
    clock = Clock()
    limiter = RateLimiter(3, clock)
    assert [limiter.take("a") for _ in range(3)] == [None, None, None]
    wait = limiter.take("a")
    assert wait == pytest.approx(20.0)  # 3 a minute: one token every 20 s
    assert limiter.take("b") is None, "another client has its own bucket"
    clock.now += 10
    assert limiter.take("a") == pytest.approx(10.0)
    clock.now += 10
    assert limiter.take("a") is None
    clock.now += 3600
    assert [limiter.take("a") for _ in range(4)][-1] is not None, "a long pause refills to 3, not more"


def test_the_rate_limiter_forgets_the_oldest_clients_beyond_its_bound() -> None:
    limiter = RateLimiter(1, Clock())
    for index in range(MAX_TRACKED + 5):
        limiter.take(f"client-{index}")
    assert len(limiter._buckets) == MAX_TRACKED
    assert limiter.take(f"client-{MAX_TRACKED + 4}") is not None  # recent ones are still remembered


def test_slots() -> None:
    slots = Slots(2)
    assert slots.try_take() and slots.try_take() and not slots.try_take()
    slots.give_back()
    assert slots.try_take()
    unlimited = Slots(0)
    assert all(unlimited.try_take() for _ in range(1000))


@pytest.mark.nats
async def test_rate_limit_answers_429_with_retry_after(
    start_client: StartClient, make_settings: Callable[..., IngestSettings]
) -> None:
    async with start_client(make_settings(rate_limit_per_min=3)) as client:
        answers = [await client.get("/v1/jobs") for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 200]
        limited = await client.get("/v1/jobs/whatever")
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(limited.headers["retry-after"]) <= 20
        openai_shaped = await client.post("/v1/audio/transcriptions", files={"file": ("a.wav", AUDIO)})
        assert openai_shaped.status_code == 429
        assert set(openai_shaped.json()["error"]) == {"message", "type", "param", "code"}
        assert (await client.get("/healthz")).status_code == 200, "only /v1 routes are limited"
        assert (await client.get("/metrics")).status_code == 200
        assert (
            'relisten_requests_refused_total{code="rate_limited"} 2.0' in (await client.get("/metrics")).text
        )


@pytest.mark.nats
async def test_rate_limit_is_per_api_key(
    start_client: StartClient, make_settings: Callable[..., IngestSettings]
) -> None:
    async with start_client(make_settings(rate_limit_per_min=2, api_keys="alpha,beta")) as client:
        alpha = {"Authorization": "Bearer alpha"}
        beta = {"Authorization": "Bearer beta"}
        assert [(await client.get("/v1/jobs", headers=alpha)).status_code for _ in range(3)] == [
            200,
            200,
            429,
        ]
        assert (await client.get("/v1/jobs", headers=beta)).status_code == 200
        # Unknown keys are refused by the key check before they could claim buckets of their own.
        assert (await client.get("/v1/jobs", headers={"Authorization": "Bearer nope"})).status_code == 401


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _send_partial_upload(port: int, body_part: bytes, total_length: int) -> Connection:
    """Open a connection and send a request whose body stops after ``body_part``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {total_length}\r\n\r\n"
    ).encode()
    writer.write(head + body_part)
    await writer.drain()
    return reader, writer


def _multipart_start() -> bytes:
    start: bytes = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode() + AUDIO[:1000]
    return start


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    raw = await asyncio.wait_for(reader.read(65536), 30)
    status = int(raw.split(b" ", 2)[1])
    return status, raw


@pytest.mark.nats
async def test_a_trickling_upload_is_408_and_leaves_nothing(
    serve_app: ServeApp, make_settings: Callable[..., IngestSettings], infra: Infra, scratch: Path
) -> None:
    async with serve_app(make_settings(upload_idle_timeout_s=0.5)) as base:
        port = int(base.rsplit(":", 1)[1])
        reader, writer = await _send_partial_upload(port, _multipart_start(), len(AUDIO) + 500)
        status, raw = await _read_response(reader)  # the client sends nothing more
        writer.close()
        assert status == 408, raw
        assert b"upload_timeout" in raw
    info = await infra.js.stream_info(STREAM_NAME, subjects_filter=str(Subject.JOB_CREATED))
    assert not info.state.subjects
    assert leftovers(scratch) == []


@pytest.mark.nats
async def test_uploads_beyond_the_limit_are_503_until_one_ends(
    serve_app: ServeApp, make_settings: Callable[..., IngestSettings]
) -> None:
    async with serve_app(make_settings(max_concurrent_uploads=1, upload_idle_timeout_s=30)) as base:
        port = int(base.rsplit(":", 1)[1])
        _, holding = await _send_partial_upload(port, _multipart_start(), len(AUDIO) + 500)
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            busy = None
            for _ in range(200):  # until the first upload has been let in
                busy = await http.post("/v1/jobs", files={"file": ("b.wav", AUDIO)})
                if busy.status_code == 503:
                    break
                await asyncio.sleep(0.02)
            assert busy is not None and busy.status_code == 503, busy.text if busy else None
            assert busy.json()["error"]["code"] == "too_many_uploads"
            assert busy.headers["retry-after"] == "5"
            holding.close()  # the first client goes away: its slot is given back
            with contextlib.suppress(Exception):
                await holding.wait_closed()
            for _ in range(200):
                accepted = await http.post("/v1/jobs", files={"file": ("b.wav", AUDIO)})
                if accepted.status_code == 202:
                    break
                await asyncio.sleep(0.05)
            assert accepted.status_code == 202, accepted.text


@pytest.fixture
async def slow_pipeline(infra: Infra) -> AsyncIterator[list[str]]:
    async with fake_services(infra) as jobs:
        yield jobs


@pytest.mark.nats
async def test_event_streams_beyond_the_limit_are_503(
    serve_app: ServeApp, make_settings: Callable[..., IngestSettings], slow_pipeline: list[str]
) -> None:
    async with (
        serve_app(make_settings(max_event_streams=1, events_heartbeat_s=0.2)) as base,
        httpx.AsyncClient(base_url=base, timeout=30) as http,
    ):
        job = (await http.post("/v1/jobs", files={"file": ("slow.wav", AUDIO)})).json()["id"]
        async with http.stream("GET", f"/v1/jobs/{job}/events") as first:
            assert first.status_code == 200
            refused = await http.get(f"/v1/jobs/{job}/events")
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "too_many_streams"
            assert "retry-after" in refused.headers
        for _ in range(200):  # the closed stream gives its slot back
            async with http.stream("GET", f"/v1/jobs/{job}/events") as again:
                if again.status_code == 200:
                    break
            await asyncio.sleep(0.05)
        assert again.status_code == 200


@pytest.mark.nats
async def test_openai_waits_beyond_the_limit_are_503_before_the_upload(
    serve_app: ServeApp, make_settings: Callable[..., IngestSettings], slow_pipeline: list[str], infra: Infra
) -> None:
    async with (
        serve_app(make_settings(max_openai_waits=1, openai_timeout_s=30, events_heartbeat_s=0.2)) as base,
        httpx.AsyncClient(base_url=base, timeout=60) as http,
    ):
        waiting = asyncio.create_task(
            http.post("/v1/audio/transcriptions", files={"file": ("slow.wav", AUDIO)}, data={"model": "m"})
        )
        for _ in range(400):
            if slow_pipeline:
                break
            await asyncio.sleep(0.02)
        assert len(slow_pipeline) == 1
        refused = await http.post(
            "/v1/audio/transcriptions", files={"file": ("talk.wav", AUDIO)}, data={"model": "m"}
        )
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "too_many_waits"
        assert set(refused.json()["error"]) == {"message", "type", "param", "code"}
        assert len(slow_pipeline) == 1, "the refused request created a job"
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
