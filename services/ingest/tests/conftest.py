"""Fixtures of the ingest tests: a real nats-server per module, the app on an in-process ASGI transport,
and checks that a rejected upload left nothing behind."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from nats.js.errors import NoKeysError, NotFoundError
from relisten_contracts import AUDIO_BUCKET, STREAM_NAME
from relisten_ingest.adapters import JobViews
from relisten_ingest.app import create_app
from relisten_ingest.settings import IngestSettings
from relisten_runtime.embedded import free_port
from relisten_runtime.infra import Infra, open_infra

AUDIO_FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "audio"
SPEECH_WAV = AUDIO_FIXTURES / "ls-dev-clean-1272-128104-0000.wav"
"""LibriSpeech dev-clean 1272-128104-0000: 5.855 s, 16 kHz mono 16-bit."""
STEREO_MP3 = AUDIO_FIXTURES / "long-librivox-shakespeare-sonnet-001.mp3"
"""LibriVox Sonnet 1: 53.267 s, 44.1 kHz stereo MP3."""

StartClient = Callable[[IngestSettings], AbstractAsyncContextManager[httpx.AsyncClient]]
ServeApp = Callable[[IngestSettings], AbstractAsyncContextManager[str]]
NothingStored = Callable[..., Awaitable[None]]


def leftovers(directory: Path) -> list[Path]:
    """What is left in a scratch directory (a sync helper: a listing is instant)."""
    return list(directory.iterdir())


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    path = tmp_path / "scratch"
    path.mkdir()
    return path


@pytest.fixture
def make_settings(nats_url: str, scratch: Path) -> Callable[..., IngestSettings]:
    def make(**overrides: Any) -> IngestSettings:
        values: dict[str, Any] = {"nats_url": nats_url, "tmp_dir": scratch, "retry_backoff_s": 0.1}
        values.update(overrides)
        return IngestSettings(**values)

    return make


@pytest.fixture
def start_client() -> StartClient:
    """Run the app's lifespan (NATS, projector), wait until it is ready, and talk to it over ASGI."""

    @asynccontextmanager
    async def start(settings: IngestSettings) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            await app.state.ingest.wait_ready(30)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
                yield client

    return start


class _QuietServer(uvicorn.Server):
    """uvicorn inside the test's event loop, leaving the process's signal handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@pytest.fixture
def serve_app() -> ServeApp:
    """Run the app under a real uvicorn on a free port (streamed responses need a real server:
    httpx's ASGI transport buffers whole bodies); yields the base URL once ingest is ready."""

    @asynccontextmanager
    async def serve(settings: IngestSettings) -> AsyncIterator[str]:
        app = create_app(settings)
        port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", log_config=None)
        server = _QuietServer(config)
        task = asyncio.create_task(server.serve())
        try:
            async with asyncio.timeout(30):
                while not server.started:
                    assert not task.done(), "uvicorn exited during startup"
                    await asyncio.sleep(0.02)
                await app.state.ingest.wait_ready(30)
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 30)

    return serve


@dataclass
class SseEvent:
    event: str
    data: Any
    id: str | None


async def read_events(
    response: httpx.Response, *, comments: list[str] | None = None
) -> AsyncIterator[SseEvent]:
    """Parse a ``text/event-stream`` body into events (comments go to ``comments``)."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if "event" in fields or "data" in fields:
                data = json.loads(fields["data"]) if "data" in fields else None
                yield SseEvent(fields.get("event", "message"), data, fields.get("id"))
            fields = {}
        elif line.startswith(":"):
            if comments is not None:
                comments.append(line[1:].strip())
        else:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


@pytest.fixture
async def infra(nats_url: str) -> AsyncIterator[Infra]:
    """A separate connection to look at (and publish into) what the service stored."""
    handles = await open_infra(nats_url, "ingest-tests")
    try:
        yield handles
    finally:
        await handles.close()


async def subjects(infra: Infra, stream: str, subjects_filter: str) -> list[str]:
    info = await infra.js.stream_info(stream, subjects_filter=subjects_filter)
    return list(info.state.subjects or {})


@pytest.fixture
def assert_nothing_stored(infra: Infra, scratch: Path) -> NothingStored:
    """No event, no job view, no stored audio, no temporary file.

    ``kv.keys()`` and ``obs.list()`` are asked first; because their nats-py watchers can miss
    entries in flight, the streams behind the buckets are then checked directly.
    """

    async def check(*, allow_tombstones: bool = False) -> None:
        info = await infra.js.stream_info(STREAM_NAME)
        assert info.state.messages == 0, "an event was published"
        with pytest.raises(NoKeysError):
            await infra.jobs.keys()
        with pytest.raises(NotFoundError):
            # A rolled-back admission deletes its objects, which leaves tombstones in the listing.
            await infra.audio.list(ignore_deletes=allow_tombstones)

        views = JobViews.of(infra)
        keys = await views.ids()
        assert [k for k in keys if await views.get(k) is not None] == [], "a job view was written"
        assert await subjects(infra, f"OBJ_{AUDIO_BUCKET}", f"$O.{AUDIO_BUCKET}.C.>") == [], (
            "audio chunks remain"
        )
        if not allow_tombstones:
            assert keys == []
            assert await subjects(infra, f"OBJ_{AUDIO_BUCKET}", f"$O.{AUDIO_BUCKET}.M.>") == []
        assert leftovers(scratch) == [], "temporary files were left behind"

    return check
