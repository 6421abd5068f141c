"""Secrets stay secret: a callback URL's query and credentials are not shown in job views or lists,
and NATS credentials appear in no error body and no log line."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import httpx
import pytest
from relisten_contracts import STREAM_NAME, JobCreated, Subject, decode_event
from relisten_ingest.app import create_app
from relisten_ingest.settings import IngestSettings
from relisten_runtime.embedded import free_port
from relisten_runtime.infra import Infra

from .conftest import SPEECH_WAV, StartClient

SECRET_CALLBACK = "https://hook-user:hook-pass@hooks.example.com/relisten?token=t0ps3cret&x=1#frag"


@pytest.mark.nats
async def test_callback_urls_are_shown_without_query_or_credentials(
    start_client: StartClient, make_settings: Callable[..., IngestSettings], infra: Infra
) -> None:
    async with start_client(make_settings()) as client:
        created = await client.post(
            "/v1/jobs",
            files={"file": ("talk.wav", SPEECH_WAV.read_bytes())},
            data={"callback_url": SECRET_CALLBACK},
        )
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]
        shown = [
            created.text,
            (await client.get(f"/v1/jobs/{job_id}")).text,
            (await client.get("/v1/jobs")).text,
        ]
    for body in shown:
        assert "hooks.example.com/relisten" in body
        for secret in ("t0ps3cret", "hook-pass", "hook-user", "frag"):
            assert secret not in body
    # The notifier still gets the whole URL: it travels in the event, not in the view.
    message = await infra.js.get_last_msg(STREAM_NAME, str(Subject.JOB_CREATED))
    event = decode_event(message.data or b"")
    assert isinstance(event, JobCreated) and event.options.callback_url == SECRET_CALLBACK


async def test_nats_credentials_are_in_no_error_body_and_no_log(
    tmp_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    closed = free_port()  # nothing listens there: NATS is "down"
    settings = IngestSettings(nats_url=f"nats://alice:s3cr3t-pw@127.0.0.1:{closed}", access_log=False)
    app = create_app(settings)
    caplog.set_level(logging.DEBUG)
    async with app.router.lifespan_context(app):
        for _ in range(200):  # until connecting has been tried and failed a few times
            if sum(r.exc_info is not None for r in caplog.records) >= 2:
                break
            await asyncio.sleep(0.025)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            bodies = [
                await client.get("/readyz"),
                await client.get("/v1/jobs"),
                await client.post("/v1/jobs", files={"file": ("a.wav", b"x")}),
                await client.get("/asyncapi.json"),
            ]
    assert [b.status_code for b in bodies[:3]] == [503, 503, 503]
    assert f"127.0.0.1:{closed}" in bodies[0].text  # where it tried is still said
    for answer in bodies:
        assert "s3cr3t-pw" not in answer.text and "alice" not in answer.text
    logged = caplog.text  # messages and tracebacks
    assert "Connect call failed" in logged
    assert "s3cr3t-pw" not in logged and "alice" not in logged
