"""``GET /v1/realtime`` when the rest of the pipeline is missing or behind, against real processes: no
asr replica (turns fail, the session goes on, the job is still stored), the session limit, the duration limit, and a
session that degrades to first-pass text.

Two stacks, one per NATS server (a module each would load the same fixtures twice): the first runs
ingest alone, the second ingest and asr, without a corrector.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from relisten_runtime.embedded import EmbeddedNats, free_port

from relisten.dataset import word_error_rate
from relisten.stack import Stack
from tests.e2e.test_realtime import (
    QUILTER,
    QUILTER_TEXT,
    chunks,
    events_until,
    of_type,
    pcm_at,
    silence,
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
    running = Stack(
        server.url, tmp, extra_env={"RELISTEN_MAX_LIVE_SESSIONS": "1", "RELISTEN_MAX_DURATION_S": "3"}
    )
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


async def test_a_session_ends_at_the_duration_limit(ingest_alone: Stack) -> None:
    async with websockets.connect(url(ingest_alone)) as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"
        await ws.send(MANUAL)
        assert json.loads(await ws.recv())["type"] == "session.updated"
        events: list[Any] = []
        with pytest.raises(websockets.ConnectionClosed):
            for chunk in chunks(silence(4.0, 24000), 24000):
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
            while True:
                events.append(json.loads(await ws.recv()))
        # the error, then the turn spoken so far is finished (here: failed, no asr), then the close
        assert events[0]["type"] == "error" and events[0]["error"]["code"] == "session_too_long"
        assert [e["type"] for e in events[1:]] == [
            "input_audio_buffer.committed",
            "conversation.item.added",
            "conversation.item.input_audio_transcription.failed",
        ]
        assert ws.close_code == 1009


async def test_a_session_behind_degrades_to_first_pass_text(without_corrector: Stack) -> None:
    async with websockets.connect(url(without_corrector)) as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"
        speech = silence(0.5, 24000) + pcm_at(QUILTER, 24000) + silence(1.5, 24000)
        for chunk in chunks(speech, 24000):
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
            await asyncio.sleep(0.05)
        events = await events_until(ws, lambda seen: any(e["type"] == "relisten.turn.refined" for e in seen))
    kinds = [e["type"] for e in events]
    degraded = of_type(events, "relisten.session.degraded")
    assert degraded and degraded[0]["reason"] == "delay", kinds
    assert kinds.index("relisten.session.degraded") < kinds.index(
        "conversation.item.input_audio_transcription.completed"
    )
    completed = of_type(events, "conversation.item.input_audio_transcription.completed")[0]
    refined = of_type(events, "relisten.turn.refined")[0]
    assert refined["refined"] is False and refined["skipped"] == "degraded"
    assert completed["transcript"] == refined["first_pass_text"]
    assert word_error_rate(QUILTER_TEXT, completed["transcript"]) < 0.2, completed
    assert all(w["source"] == "first" for w in refined["words"])
