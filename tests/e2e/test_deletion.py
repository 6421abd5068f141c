"""Deleting a job after a full run through the real services: afterwards no bucket holds anything of
the job (audio, clips, first pass, plan, transcript, second-pass answers, delivery latches, view,
Idempotency-Key claim) and every route answers 404."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from relisten_contracts import NOTIFY_BUCKET
from relisten_ingest.deletion import remnants
from relisten_runtime.infra import open_infra

from relisten.services import SERVICES
from relisten.stack import Stack

from .test_failures import Receiver

pytestmark = [pytest.mark.e2e, pytest.mark.nats]

IRON = Path(__file__).resolve().parents[1] / "fixtures" / "audio" / "ls-test-other-1688-142285-0000.flac"
"""15 s of LibriSpeech test-other: the first pass doubts some words, so clips are cut and answered."""


@pytest.fixture(scope="module")
def stack(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(nats_url, tmp_path_factory.mktemp("stack")).start(SERVICES)
    try:
        yield running
    finally:
        running.stop()


async def left_of(nats_url: str, job_id: str) -> list[str]:
    infra = await open_infra(nats_url, "e2e-deletion")
    try:
        return await remnants(infra, job_id)
    finally:
        await infra.close()


def test_after_a_real_run_and_delete_nothing_of_the_job_remains(nats_url: str, stack: Stack) -> None:
    callback = Receiver(204, {})
    try:
        submitted = httpx.post(
            f"{stack.base_url}/v1/jobs",
            files={"file": (IRON.name, IRON.read_bytes(), "audio/flac")},
            data={"callback_url": f"{callback.url}/hook"},
            headers={"Idempotency-Key": "e2e-delete"},
            timeout=60,
        )
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["id"]
        view = stack.wait_for(job_id, timeout_s=600)
        assert view["status"] == "completed", stack.logs()
        assert view["clips"] and view["clips"]["total"] > 0, "the run should have cut clips"
        # The notifier writes its latch after the receiver answered: wait for both.
        deadline = time.monotonic() + 60
        stored: list[str] = []
        while time.monotonic() < deadline:
            stored = asyncio.run(left_of(nats_url, job_id))
            if callback.requests and any(NOTIFY_BUCKET in item for item in stored):
                break
            time.sleep(0.5)
        print(f"\njob {job_id} stored {len(stored)} things: {stored}")
        kinds = " ".join(stored)
        for expected in ("/original", "/audio.wav", "/clips/0000.wav", "/first_pass.json", "/plan.json"):
            assert expected in kinds, expected
        assert "/transcript.json" in kinds and "relisten-clips" in kinds and NOTIFY_BUCKET in kinds
        assert "relisten-idempotency" in kinds

        deleted = httpx.delete(f"{stack.base_url}/v1/jobs/{job_id}", timeout=60)
        assert deleted.status_code == 200, deleted.text
        assert asyncio.run(left_of(nats_url, job_id)) == []
        for route in ("", "/transcript", "/audio", "/events"):
            gone = httpx.get(f"{stack.base_url}/v1/jobs/{job_id}{route}", timeout=15)
            assert gone.status_code == 404, route
        assert httpx.delete(f"{stack.base_url}/v1/jobs/{job_id}", timeout=15).status_code == 404
        assert httpx.get(f"{stack.base_url}/readyz", timeout=15).status_code == 200
    finally:
        callback.close()
