"""``GET /v1/realtime`` when the rest of the pipeline is missing or behind, against real processes: no
asr replica (turns fail, the session goes on, the job is still stored), the session limit, and a
session that degrades to first-pass text.

Two stacks, one per NATS server (a module each would load the same fixtures twice): the first runs
ingest alone, the second ingest and asr, without a corrector.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from relisten_runtime.embedded import EmbeddedNats, free_port

from relisten.stack import Stack
from tests.e2e.test_realtime import (
    QUILTER,
    chunks,
    events_until,
    of_type,
    pcm_at,
    wait_for_job,
)

pytestmark = [pytest.mark.e2e, pytest.mark.nats]


def _nats(tmp: Path) -> EmbeddedNats:
    server = EmbeddedNats(tmp / "nats-store", port=free_port())
    server.start(log_file=tmp / "nats.log")
    return server


@pytest.fixture(scope="module")
def ingest_alone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("alone")
    server = _nats(tmp)
    running = Stack(server.url, tmp, extra_env={"RELISTEN_MAX_LIVE_SESSIONS": "1"})
    try:
        running.start(("ingest",))
        yield running
    finally:
        running.stop()
        server.stop()


@pytest.fixture(scope="module")
def without_corrector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("behind")
    server = _nats(tmp)
    # Any finished turn is "late" at a bound of a millisecond: the session degrades on its first turn.
    running = Stack(server.url, tmp, extra_env={"RELISTEN_LIVE_MAX_DELAY_S": "0.001"})
    try:
        running.start(("ingest", "asr"))
        yield running
    finally:
        running.stop()
        server.stop()


def url(stack: Stack) -> str:
    return stack.base_url.replace("http://", "ws://") + "/v1/realtime?intent=transcription"


MANUAL = json.dumps(
    {
        "type": "session.update",
        "session": {"type": "transcription", "audio": {"input": {"turn_detection": None}}},
    }
)


async def test_no_asr_fails_the_turn_not_the_session(ingest_alone: Stack) -> None:
    async with websockets.connect(url(ingest_alone)) as ws:
        created = json.loads(await ws.recv())
        job_id = created["session"]["relisten"]["job_id"]
        await ws.send(MANUAL)
        assert json.loads(await ws.recv())["type"] == "session.updated"
        for chunk in chunks(pcm_at(QUILTER, 24000)[: 2 * 24000 * 2], 24000):
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        events = await events_until(
            ws, lambda seen: any(e["type"].endswith("input_audio_transcription.failed") for e in seen), 60
        )
        failed = of_type(events, "conversation.item.input_audio_transcription.failed")[0]
        assert failed["error"]["code"] == "asr_unavailable", failed
        assert failed["item_id"] == of_type(events, "input_audio_buffer.committed")[0]["item_id"]
        # the session goes on
        await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
        assert (await events_until(ws, lambda seen: bool(seen), 30))[0][
            "type"
        ] == "input_audio_buffer.cleared"

        # one session at a time on this server: a second is refused while the first is open
        async with websockets.connect(url(ingest_alone)) as second:
            refusal = json.loads(await second.recv())
            assert refusal["error"]["code"] == "too_many_sessions"
            with pytest.raises(websockets.ConnectionClosed):
                await second.recv()
            assert second.close_code == 1013

    # the session is a job all the same: its audio is kept, its transcript is empty
    assert (await wait_for_job(ingest_alone.base_url, job_id, None))["status"] == "completed"
    async with httpx.AsyncClient() as http:
        transcript = (await http.get(f"{ingest_alone.base_url}/v1/jobs/{job_id}/transcript")).json()
        assert transcript["text"] == "" and transcript["duration_s"] == pytest.approx(2.0, abs=0.05)
