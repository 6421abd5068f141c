"""`relisten health <service>` against a real nats-server: unhealthy until the service's durable
consumers exist, and when NATS cannot be reached."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import nats
import pytest
from nats.js.api import ConsumerConfig
from relisten_contracts import STREAM_NAME
from relisten_runtime.embedded import free_port
from relisten_runtime.infra import ensure_stream

from relisten.health import CONSUMERS, problems

pytestmark = pytest.mark.nats


async def create_consumers(nats_url: str, durables: tuple[str, ...]) -> None:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await ensure_stream(js)
        for durable in durables:
            await js.add_consumer(STREAM_NAME, ConsumerConfig(durable_name=durable))
    finally:
        await nc.close()


def test_a_service_is_healthy_once_its_consumers_exist(nats_url: str) -> None:
    missing = asyncio.run(problems("merger", nats_url))
    assert len(missing) == 2 and all("does not exist" in p for p in missing), missing
    asyncio.run(create_consumers(nats_url, CONSUMERS["merger"][:1]))
    assert asyncio.run(problems("merger", nats_url)) == [
        f"consumer merger-clips of stream {STREAM_NAME} does not exist"
    ]
    asyncio.run(create_consumers(nats_url, CONSUMERS["merger"][1:]))
    assert asyncio.run(problems("merger", nats_url)) == []


def test_unreachable_nats_is_unhealthy_with_exit_code_1() -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    found = asyncio.run(problems("asr", url, timeout_s=1))
    assert len(found) == 1 and found[0].startswith("cannot connect to NATS"), found
    result = subprocess.run(
        [sys.executable, "-m", "relisten", "health", "asr"],
        env={"RELISTEN_NATS_URL": url, "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result
    assert "cannot connect to NATS" in result.stdout
