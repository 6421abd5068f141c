"""API keys (``RELISTEN_INGEST_API_KEYS``): every /v1 route needs a bearer key, the operational routes stay
open, and the event stream also takes ``?access_token=``."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import openai
import pytest
from relisten_ingest.access import bearer_token, key_matches
from relisten_ingest.settings import IngestSettings
from relisten_runtime.infra import Infra

from .conftest import SPEECH_WAV, ServeApp, read_events
from .fake_pipeline import FakeJob

pytestmark = pytest.mark.nats

KEYS = "first-key, second-key"


@pytest.fixture
async def server(serve_app: ServeApp, make_settings: Callable[..., IngestSettings]) -> AsyncIterator[str]:
    async with serve_app(make_settings(api_keys=KEYS, events_heartbeat_s=0.5)) as base:
        yield base


def test_settings_read_comma_separated_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELISTEN_INGEST_API_KEYS", " a-key ,b-key,, ")
    keys = IngestSettings().api_keys
    assert [k.get_secret_value() for k in keys] == ["a-key", "b-key"]
    assert "a-key" not in repr(keys)
    monkeypatch.setenv("RELISTEN_INGEST_API_KEYS", "")
    assert IngestSettings().api_keys == []


def test_bearer_parsing_and_matching() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer ") is None
    assert key_matches("abc", [b"x", b"abc"])
    assert not key_matches("ab", [b"abc"])


async def test_v1_routes_need_a_key(server: str) -> None:
    async with httpx.AsyncClient(base_url=server) as client:
        for method, path in [
            ("GET", "/v1/jobs"),
            ("GET", "/v1/jobs/abc"),
            ("GET", "/v1/jobs/abc/transcript"),
            ("GET", "/v1/jobs/abc/events"),
            ("POST", "/v1/jobs"),
            ("GET", "/v1/anything-else"),
        ]:
            response = await client.request(method, path)
            assert response.status_code == 401, path
            assert response.json()["error"]["code"] == "unauthorized"
            assert response.headers["www-authenticate"].startswith("Bearer")
        wrong = await client.get("/v1/jobs", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "not valid" in wrong.json()["error"]["message"]
        for key in ("first-key", "second-key"):
            ok = await client.get("/v1/jobs", headers={"Authorization": f"Bearer {key}"})
            assert ok.status_code == 200
        # A query token is for the event stream only.
        query = await client.get("/v1/jobs", params={"access_token": "first-key"})
        assert query.status_code == 401


async def test_open_routes_stay_open(server: str) -> None:
    async with httpx.AsyncClient(base_url=server) as client:
        for path in ("/healthz", "/readyz", "/metrics", "/asyncapi.json", "/openapi.json"):
            assert (await client.get(path)).status_code == 200, path


async def test_the_openai_route_answers_in_openai_shape(server: str) -> None:
    async with openai.AsyncOpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError) as caught:
            await client.audio.transcriptions.create(
                model="whisper-1", file=("a.wav", SPEECH_WAV.read_bytes())
            )
    assert caught.value.code == "invalid_api_key"
    assert caught.value.type == "invalid_request_error"


async def test_the_event_stream_takes_an_access_token(server: str, infra: Infra) -> None:
    job = FakeJob(infra, uuid.uuid4().hex)
    await job.created()
    headers = {"Authorization": "Bearer second-key"}
    async with httpx.AsyncClient(base_url=server, timeout=10) as client:
        for _ in range(200):
            if (await client.get(f"/v1/jobs/{job.job_id}", headers=headers)).status_code == 200:
                break
            await asyncio.sleep(0.02)
        url = f"/v1/jobs/{job.job_id}/events"
        assert (await client.get(url, params={"access_token": "nope"})).status_code == 401
        async with client.stream("GET", url, params={"access_token": "first-key"}) as response:
            assert response.status_code == 200
            first = await anext(read_events(response))
        assert first.event == "state" and first.data["id"] == job.job_id


async def test_the_access_token_is_removed_before_the_app_and_the_access_log_see_it() -> None:
    from relisten_ingest.access import ApiKeyMiddleware
    from starlette.types import Message, Receive, Scope, Send

    seen: list[bytes] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["query_string"])

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        return None

    scope: Scope = {
        "type": "http",
        "method": "GET",
        "path": "/v1/jobs/abc/events",
        "query_string": b"x=1&access_token=first-key",
        "headers": [],
    }
    await ApiKeyMiddleware(app, ["first-key"])(scope, receive, send)
    assert seen == [b"x=1"]
    assert scope["query_string"] == b"x=1"  # the server's own scope: its access log shows no key
