"""``GET /v1/realtime`` end to end: real nats-server, real services and models, real speech streamed
over a real WebSocket; the official ``openai`` SDK's realtime client, and a plain ``websockets`` client
for the event order and the error codes. API keys are on."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import openai
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from relisten.dataset import word_error_rate
from relisten.services import SERVICES
from relisten.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.nats]

API_KEY = "e2e-realtime-key"
AUDIO = Path(__file__).resolve().parents[1] / "fixtures" / "audio"
QUILTER = AUDIO / "ls-dev-clean-1272-128104-0000.wav"
QUILTER_TEXT = "mister quilter is the apostle of the middle classes and we are glad to welcome his gospel"
IRON = AUDIO / "ls-test-other-1688-142285-0000.flac"
IRON_TEXT = (
    "there's iron they say in all our blood and a grain or two perhaps is good but his he makes me "
    "harshly feel has got a little too much of steel anon"
)
CHUNK_S = 0.1
PACE = 0.5
"""Seconds of wall time per second of audio sent (the tests stream at twice real time)."""


def pcm_at(path: Path, rate: int) -> bytes:
    """A recording as mono pcm16 at ``rate`` (PyAV's resampler)."""
    chunks: list[np.ndarray] = []
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        for frame in container.decode(audio=0):
            chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(frame)]
        chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    return np.concatenate(chunks).astype("<i2").tobytes()


def silence(seconds: float, rate: int) -> bytes:
    return bytes(2 * int(seconds * rate))


def chunks(pcm: bytes, rate: int) -> Iterator[str]:
    step = 2 * int(CHUNK_S * rate)
    for at in range(0, len(pcm), step):
        yield base64.b64encode(pcm[at : at + step]).decode()


@pytest.fixture(scope="module")
def stack(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack(
        nats_url,
        tmp_path_factory.mktemp("stack"),
        # Generous bounds: on a loaded machine a turn must still be refined, not degraded (the
        # degradation has its own test).
        extra_env={
            "RELISTEN_API_KEYS": API_KEY,
            "RELISTEN_LIVE_REQUEST_TIMEOUT_S": "120",
            "RELISTEN_LIVE_MAX_DELAY_S": "120",
        },
    ) as running:
        running.start(SERVICES)
        yield running


def ws_url(stack: Stack, query: str = "intent=transcription") -> str:
    return stack.base_url.replace("http://", "ws://") + "/v1/realtime?" + query


async def events_until(ws: ClientConnection, done: Any, timeout_s: float = 180.0) -> list[dict[str, Any]]:
    """Every event received until ``done(events)`` holds."""
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout_s):
        while not done(seen):
            seen.append(json.loads(await ws.recv()))
    return seen


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


@pytest.fixture
async def plain(stack: Stack) -> AsyncIterator[ClientConnection]:
    async with websockets.connect(
        ws_url(stack), additional_headers={"Authorization": f"Bearer {API_KEY}"}, max_size=None
    ) as ws:
        yield ws


# --- the official SDK ------------------------------------------------------------------------------


async def test_openai_sdk_realtime_client(stack: Stack) -> None:
    client = openai.AsyncOpenAI(base_url=f"{stack.base_url}/v1", api_key=API_KEY)
    speech = pcm_at(QUILTER, 24000) + silence(1.5, 24000) + pcm_at(IRON, 24000) + silence(1.5, 24000)
    deltas: dict[str, str] = {}
    completed: dict[str, str] = {}
    async with client.realtime.connect(extra_query={"intent": "transcription"}) as connection:
        created = await connection.recv()
        assert created.type == "session.created"
        # relisten's own session field travels as an extra the SDK keeps in its dict form
        session: dict[str, Any] = created.to_dict()["session"]  # type: ignore[assignment]
        job_id = session["relisten"]["job_id"]
        await connection.session.update(
            session={
                "type": "transcription",
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcm", "rate": 24000},
                        "transcription": {"model": "whisper-1", "language": "en"},
                        "turn_detection": {"type": "server_vad", "silence_duration_ms": 700},
                    }
                },
            }
        )

        async def send() -> None:
            for chunk in chunks(speech, 24000):
                await connection.input_audio_buffer.append(audio=chunk)
                await asyncio.sleep(CHUNK_S * PACE)

        sender = asyncio.create_task(send())
        async with asyncio.timeout(240):
            async for event in connection:
                if event.type == "conversation.item.input_audio_transcription.delta":
                    deltas[event.item_id] = deltas.get(event.item_id, "") + (event.delta or "")
                elif event.type == "conversation.item.input_audio_transcription.completed":
                    completed[event.item_id] = event.transcript
                    if sender.done() and " ".join(completed.values()).lower().count("steel") >= 1:
                        break
                elif event.type == "error":
                    raise AssertionError(event.error)
        await sender
    text = " ".join(completed.values())
    assert word_error_rate(f"{QUILTER_TEXT} {IRON_TEXT}", text) < 0.25, (text, stack.logs())
    assert deltas, "no delta came"
    # The deltas of a turn concatenate to its first-pass text, close to the reference as well.
    assert word_error_rate(f"{QUILTER_TEXT} {IRON_TEXT}", " ".join(deltas.values())) < 0.35, deltas
    # The closed session is a job, its transcript the completed turns'.
    assert (await wait_for_job(stack.base_url, job_id))["status"] == "completed"
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        transcript = (await http.get(f"{stack.base_url}/v1/jobs/{job_id}/transcript")).json()
    assert word_error_rate(f"{QUILTER_TEXT} {IRON_TEXT}", transcript["text"]) < 0.25, transcript["text"]


# --- a plain WebSocket client -------------------------------------------------------------------------


async def test_event_order_with_server_vad(plain: ClientConnection, stack: Stack) -> None:
    created = json.loads(await plain.recv())
    assert created["type"] == "session.created"
    job_id = created["session"]["relisten"]["job_id"]
    await plain.send(
        json.dumps(
            {
                "type": "session.update",
                "session": {
                    "type": "transcription",
                    "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}},
                    "include": ["item.input_audio_transcription.logprobs"],
                },
            }
        )
    )
    updated = json.loads(await plain.recv())
    assert updated["type"] == "session.updated"
    assert updated["session"]["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 16000}
    speech = silence(0.5, 16000) + pcm_at(QUILTER, 16000) + silence(1.5, 16000)
    for chunk in chunks(speech, 16000):
        await plain.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
        await asyncio.sleep(CHUNK_S * PACE)
    events = await events_until(plain, lambda seen: any(e["type"] == "relisten.turn.refined" for e in seen))
    kinds = [e["type"] for e in events]
    order = [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.done",
        "relisten.turn.refined",
    ]
    positions = [kinds.index(kind) for kind in order]
    assert positions == sorted(positions), kinds
    item = of_type(events, "input_audio_buffer.committed")[0]["item_id"]
    assert all(e["item_id"] == item for e in events if "item_id" in e), events
    deltas = of_type(events, "conversation.item.input_audio_transcription.delta")
    last_delta = max(i for i, kind in enumerate(kinds) if kind.endswith("input_audio_transcription.delta"))
    assert deltas and last_delta < kinds.index(order[4])
    assert all(d["logprobs"] and all(p["logprob"] <= 0 for p in d["logprobs"]) for d in deltas)
    completed = of_type(events, order[4])[0]
    done = of_type(events, "conversation.item.done")[0]["item"]
    assert done["id"] == item and done["content"][0]["transcript"] == completed["transcript"]
    assert word_error_rate(QUILTER_TEXT, completed["transcript"]) < 0.2, completed
    assert completed["logprobs"]
    refined = of_type(events, "relisten.turn.refined")[0]
    assert refined["transcript"] == completed["transcript"]
    assert refined["refined"] is True and refined["skipped"] is None, refined
    assert {w["source"] for w in refined["words"]} <= {"first", "second"}
    # The words are on the session's timeline: the speech began after half a second of silence.
    assert 0.3 <= refined["words"][0]["start"] <= 1.5, refined["words"][:2]
    for correction in refined["corrections"]:
        assert correction["status"] in {"accepted", "rejected", "unresolved"}
        assert {"original_text", "corrected_text", "reason"} <= correction.keys()

    await plain.close()
    view = await wait_for_job(stack.base_url, job_id)
    assert view["status"] == "completed", view
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        transcript = (await http.get(f"{stack.base_url}/v1/jobs/{job_id}/transcript")).json()
        assert transcript["text"] == completed["transcript"]
        audio = await http.get(f"{stack.base_url}/v1/jobs/{job_id}/audio")
        assert audio.status_code == 200 and len(audio.content) > 2 * 16000 * 5
        vtt = await http.get(f"{stack.base_url}/v1/jobs/{job_id}/transcript", params={"format": "vtt"})
        assert vtt.text.startswith("WEBVTT")


async def wait_for_job(base_url: str, job_id: str, api_key: str | None = API_KEY) -> dict[str, Any]:
    """The job's view once it is completed or failed (the session's job is stored after it closes)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx.AsyncClient(headers=headers) as http, asyncio.timeout(60):
        while True:
            answer = await http.get(f"{base_url}/v1/jobs/{job_id}")
            if answer.status_code == 200 and answer.json()["status"] in {"completed", "failed"}:
                view: dict[str, Any] = answer.json()
                return view
            await asyncio.sleep(0.3)


async def test_manual_commit_and_clear(plain: ClientConnection) -> None:
    assert json.loads(await plain.recv())["type"] == "session.created"
    await plain.send(
        json.dumps(
            {
                "type": "session.update",
                "session": {"type": "transcription", "audio": {"input": {"turn_detection": None}}},
            }
        )
    )
    updated = json.loads(await plain.recv())
    assert updated["session"]["audio"]["input"]["turn_detection"] is None
    # Committing nothing is an error.
    await plain.send(json.dumps({"type": "input_audio_buffer.commit", "event_id": "c1"}))
    error = json.loads(await plain.recv())
    assert error["type"] == "error" and error["error"]["code"] == "input_audio_buffer_commit_empty"
    assert error["error"]["event_id"] == "c1"
    # Audio then clear: nothing of it is transcribed.
    iron = pcm_at(IRON, 24000)
    for chunk in list(chunks(iron, 24000))[:20]:
        await plain.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
    await plain.send(json.dumps({"type": "input_audio_buffer.clear"}))
    # Then the Quilter recording, committed by hand.
    for chunk in chunks(pcm_at(QUILTER, 24000), 24000):
        await plain.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
    await plain.send(json.dumps({"type": "input_audio_buffer.commit"}))
    events = await events_until(
        plain,
        lambda seen: any(e["type"] == "conversation.item.input_audio_transcription.completed" for e in seen),
    )
    kinds = [e["type"] for e in events]
    assert "input_audio_buffer.cleared" in kinds
    assert "input_audio_buffer.speech_started" not in kinds  # no server VAD
    committed = of_type(events, "input_audio_buffer.committed")
    assert len(committed) == 1
    completed = of_type(events, "conversation.item.input_audio_transcription.completed")[0]
    assert completed["item_id"] == committed[0]["item_id"]
    assert word_error_rate(QUILTER_TEXT, completed["transcript"]) < 0.2, completed
    assert "iron" not in completed["transcript"].lower()


async def test_error_codes(plain: ClientConnection) -> None:
    assert json.loads(await plain.recv())["type"] == "session.created"
    cases = [
        ("not json", "invalid_json"),
        (json.dumps({"type": "response.create"}), "unknown_event_type"),
        (json.dumps({"type": "input_audio_buffer.append", "audio": "@@not base64@@"}), "invalid_audio"),
        (
            json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(b"abc").decode()}),
            "invalid_audio",
        ),
        (json.dumps({"type": "session.update", "session": {"type": "realtime"}}), "unsupported_session_type"),
        (
            json.dumps(
                {
                    "type": "session.update",
                    "session": {
                        "type": "transcription",
                        "audio": {"input": {"format": {"type": "audio/pcm", "rate": 44100}}},
                    },
                }
            ),
            "invalid_session_config",
        ),
        (
            json.dumps(
                {
                    "type": "session.update",
                    "session": {
                        "type": "transcription",
                        "audio": {"input": {"transcription": {"language": "zz"}}},
                    },
                }
            ),
            "unsupported_language",
        ),
    ]
    for message, code in cases:
        await plain.send(message)
        event = json.loads(await plain.recv())
        assert event["type"] == "error" and event["error"]["code"] == code, (message, event)
    # The session goes on after errors.
    await plain.send(json.dumps({"type": "input_audio_buffer.clear"}))
    assert json.loads(await plain.recv())["type"] == "input_audio_buffer.cleared"


async def refused(url: str, **options: Any) -> tuple[dict[str, Any], int | None]:
    async with websockets.connect(url, **options) as ws:
        event = json.loads(await ws.recv())
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
        return event, ws.close_code


async def test_refusals(stack: Stack) -> None:
    event, code = await refused(ws_url(stack))
    assert event["error"]["code"] == "missing_api_key" and code == 1008
    event, code = await refused(ws_url(stack), additional_headers={"Authorization": "Bearer wrong"})
    assert event["error"]["code"] == "invalid_api_key" and code == 1008
    event, code = await refused(
        ws_url(stack, "intent=conversation"), additional_headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert event["error"]["code"] == "unsupported_intent" and code == 1008


async def test_key_in_query_and_subprotocol(stack: Stack) -> None:
    async with websockets.connect(ws_url(stack, f"intent=transcription&access_token={API_KEY}")) as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"
    async with websockets.connect(
        ws_url(stack),
        subprotocols=["realtime", f"openai-insecure-api-key.{API_KEY}"],  # type: ignore[list-item]
    ) as ws:
        assert ws.subprotocol == "realtime"
        assert json.loads(await ws.recv())["type"] == "session.created"
