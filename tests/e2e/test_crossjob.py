"""Clips of concurrent jobs decoded together, end to end: the real services on a real nats-server.

Two jobs' clips wait at the corrector (started only once both first passes are done, as after a
restart); with ``RELISTEN_CORRECTOR_CONCURRENT_JOBS=2`` and a linger the corrector holds both and
decodes their clips in one shared call, and each job's transcript says what the same recording says
with cross-job batching off. The encoder input is a fixed 30 s in both runs, so that a job's chunk is
encoded alike whichever call it is in (with the trimmed input a shared call is sized to its longest
chunk; ``tests`` of the corrector cover that case).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from relisten_runtime.embedded import EmbeddedNats, free_port

from relisten.bench_crossjob import _clips_ready_count
from relisten.dataset import Recording, decode, joined
from relisten.stack import Stack
from relisten.testing import AUDIO_FIXTURES, IRON

pytestmark = [pytest.mark.e2e, pytest.mark.nats]

FIRST_SERVICES = ("ingest", "asr", "clipper", "merger")
COMMON = {"RELISTEN_CORRECTOR_ENCODER_PADDING_S": "30"}
LIBRISPEECH = AUDIO_FIXTURES.parent / "librispeech-dev" / "audio"


def recordings() -> list[Recording]:
    """Two speakers whose first passes have doubtful words at the default threshold."""
    other = [
        Recording(name, decode(LIBRISPEECH / f"{name}.flac"), "")
        for name in (f"ls-test-other-1998-15444-000{i}" for i in range(3))
    ]
    return [Recording("iron", decode(IRON), ""), joined(other)]


def transcript(stack: Stack, job_id: str) -> dict[str, Any]:
    view = stack.wait_for(job_id, timeout_s=600)
    assert view["status"] == "completed", f"{view}\n{stack.logs()}"
    answer: dict[str, Any] = httpx.get(f"{stack.base_url}/v1/jobs/{job_id}/transcript", timeout=30).json()
    return answer


def corrections(found: dict[str, Any]) -> list[str]:
    return [str(c["corrected_text"]) for c in found["corrections"]]


def test_two_jobs_waiting_at_the_corrector_share_a_call_and_each_gets_its_own_transcript(
    tmp_path: Path,
) -> None:
    jobs = recordings()
    for folder in ("alone", "shared"):
        (tmp_path / folder).mkdir()
    # Batching off, one job at a time: what each recording says.
    server = EmbeddedNats(tmp_path / "alone-nats", port=free_port()).start(log_file=tmp_path / "alone.log")
    alone_stack = Stack(server.url, tmp_path / "alone", extra_env=COMMON)
    try:
        alone_stack.start((*FIRST_SERVICES, "corrector"))
        alone = [transcript(alone_stack, str(alone_stack.submit(r)["id"])) for r in jobs]
    finally:
        alone_stack.stop()
        server.stop()
    assert all(found["corrections"] for found in alone), "both jobs must have clips to re-decode"

    # Both jobs' clips waiting, then a corrector that holds two jobs and lingers for the second.
    env = COMMON | {"RELISTEN_CORRECTOR_CONCURRENT_JOBS": "2", "RELISTEN_CORRECTOR_BATCH_LINGER_S": "5"}
    server = EmbeddedNats(tmp_path / "shared-nats", port=free_port()).start(log_file=tmp_path / "shared.log")
    shared_stack = Stack(server.url, tmp_path / "shared", extra_env=env)
    try:
        shared_stack.start(FIRST_SERVICES)
        ids = [str(shared_stack.submit(r)["id"]) for r in jobs]
        deadline = time.monotonic() + 600
        while asyncio.run(_clips_ready_count(server.url)) < len(jobs):
            assert time.monotonic() < deadline, shared_stack.logs()
            time.sleep(0.5)
        shared_stack.start(("corrector",))
        shared = [transcript(shared_stack, job_id) for job_id in ids]
        log = (tmp_path / "shared" / "corrector.log").read_text(errors="replace")
    finally:
        shared_stack.stop()
        server.stop()

    assert "2 requests (" in log and "re-decoded in one call" in log, log
    for by_itself, together in zip(alone, shared, strict=True):
        assert corrections(together) == corrections(by_itself)
        assert together["text"] == by_itself["text"]
