"""The realtime route under a real uvicorn on a real nats-server, without asr or corrector replicas:
the rate limit it shares with the HTTP routes, the idle timeout, the beta session shape, and a turn
that finds no replica."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import websockets
from relisten_ingest.settings import IngestSettings

from .conftest import ServeApp

pytestmark = pytest.mark.nats


def ws(base: str) -> str:
    return base.replace("http://", "ws://") + "/v1/realtime?intent=transcription"


async def until_closed(connection: Any) -> list[dict[str, Any]]:
    events = []
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            events.append(json.loads(await connection.recv()))
    return events


async def test_a_session_spends_a_request_of_the_shared_rate_limit(
    serve_app: ServeApp, make_settings: Callable[..., IngestSettings]
) -> None:
    async with serve_app(make_settings(rate_limit_per_min=2)) as base:
        async with websockets.connect(ws(base)) as first:
            assert json.loads(await first.recv())["type"] == "session.created"
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{base}/v1/jobs")).status_code == 200  # the second request
            assert (await http.get(f"{base}/v1/jobs")).status_code == 429
        async with websockets.connect(ws(base)) as third:
            events = await until_closed(third)
            assert [e["error"]["code"] for e in events] == ["rate_limited"]
            assert third.close_code == 1013


async def test_an_idle_session_is_closed(
    serve_app: ServeApp, make_settings: Callable[..., IngestSettings]
) -> None:
    async with (
        serve_app(make_settings(live_session_idle_s=0.3)) as base,
        websockets.connect(ws(base)) as idle,
    ):
        events = await until_closed(idle)
        assert [e["type"] for e in events] == ["session.created", "error"]
        assert events[1]["error"]["code"] == "session_idle"
        assert idle.close_code == 1000


async def test_beta_shape_and_a_turn_without_replicas(
    serve_app: ServeApp, make_settings: Callable[..., IngestSettings]
) -> None:
    async with serve_app(make_settings()) as base, websockets.connect(ws(base)) as session:
        created = json.loads(await session.recv())
        assert created["session"]["id"] == "sess_" + created["session"]["relisten"]["job_id"]
        await session.send(
            json.dumps(
                {
                    "type": "transcription_session.update",
                    "session": {"input_audio_format": "g711_ulaw", "turn_detection": None},
                }
            )
        )
        updated = json.loads(await session.recv())
        assert updated["type"] == "transcription_session.updated"
        assert updated["session"]["input_audio_format"] == "g711_ulaw"
        assert updated["session"]["turn_detection"] is None
        # a second of mu-law "silence" (0xFF), committed: no asr replica answers, the turn fails
        await session.send(
            json.dumps(
                {"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\xff" * 8000).decode()}
            )
        )
        await session.send(json.dumps({"type": "input_audio_buffer.commit"}))
        kinds: list[str] = []
        while not kinds or kinds[-1] != "conversation.item.input_audio_transcription.failed":
            event = json.loads(await session.recv())
            kinds.append(event["type"])
        assert kinds == [
            "input_audio_buffer.committed",
            "conversation.item.added",
            "conversation.item.input_audio_transcription.failed",
        ]
        assert event["error"]["code"] == "asr_unavailable"
