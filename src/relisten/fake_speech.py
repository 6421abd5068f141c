"""A fake OpenAI-compatible speech server for the tests of the remote engines (asr) and backends
(corrector): real HTTP on loopback (FastAPI under uvicorn, :func:`relisten.testing.loopback_server`),
the documented request formats checked the way the real servers would.

It speaks ``/v1/audio/transcriptions`` (speaches, vLLM's Whisper, OpenAI: a multipart WAV, ``verbose_json``
with word timestamps back) and ``/v1/chat/completions`` (vLLM serving Qwen2-Audio: the audio inline as a
base64 WAV ``input_audio`` part). A request such a server would not accept gets a 422 naming the
problem (also kept in ``problems``), which the clients treat as permanent, so a malformed request fails
the test loudly. ``script`` holds replies to give instead of the valid default (errors, delays).
"""

from __future__ import annotations

import asyncio
import base64
import io
import time
import wave
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from relisten.testing import loopback_server

QWEN = "Qwen/Qwen2-Audio-7B-Instruct"


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Seen:
    """One request as the server understood it."""

    path: str
    authorization: str | None
    pcm: np.ndarray
    fields: dict[str, Any]


class FakeSpeechServer:
    """Scripted replies (first in, first out; a valid default when the script runs out)."""

    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.seen: list[Seen] = []
        self.problems: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.chat_answer = "The original content of this audio is: 'there's iron they say'"
        self.transcription: dict[str, Any] = {}
        """A fixed answer for every transcription request; empty: ``answer_for(seconds)``."""
        self.answer_for: Callable[[float], dict[str, Any]] = verbose_json
        self.url = ""

    def reset(self) -> None:
        # A request an earlier test gave up on may still be sleeping in the server: let it finish.
        deadline = time.monotonic() + 5
        while self.in_flight and time.monotonic() < deadline:
            time.sleep(0.02)
        self.script.clear()
        self.seen.clear()
        self.problems.clear()
        self.max_in_flight = 0
        self.transcription = {}
        self.answer_for = verbose_json


def _decode_wav(data: bytes, problems: list[str]) -> np.ndarray:
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            shape = (wav.getframerate(), wav.getnchannels(), wav.getsampwidth())
            if shape != (16000, 1, 2):
                problems.append(f"audio is {shape}, not 16 kHz mono s16")
            return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    except (wave.Error, EOFError) as exc:
        problems.append(f"audio is not a WAV file: {exc}")
        return np.zeros(0, dtype=np.int16)


def _check_chat(body: Any, problems: list[str]) -> tuple[np.ndarray, dict[str, Any]]:
    pcm = np.zeros(0, dtype=np.int16)
    if not isinstance(body, dict) or body.get("model") != QWEN:
        problems.append(f"model is not {QWEN}")
        return pcm, {}
    if body.get("temperature") != 0 or not isinstance(body.get("max_tokens"), int):
        problems.append("temperature must be 0 and max_tokens an integer")
    messages = body.get("messages") or []
    if len(messages) != 2 or messages[0].get("role") != "system" or messages[1].get("role") != "user":
        problems.append("expected a system then a user message")
        return pcm, {}
    system = messages[0].get("content", "")
    if "exactly" not in system or "preamble" not in system:
        problems.append("system instruction is not strict")
    parts = messages[1].get("content")
    audio_parts = [p for p in parts if p.get("type") == "input_audio"] if isinstance(parts, list) else []
    text_parts = [p for p in parts if p.get("type") == "text"] if isinstance(parts, list) else []
    if len(audio_parts) != 1 or len(text_parts) != 1:
        problems.append("user content needs one input_audio part and one text part")
        return pcm, {}
    audio = audio_parts[0].get("input_audio", {})
    if audio.get("format") != "wav":
        problems.append("input_audio format is not wav")
    try:
        wav = base64.b64decode(audio.get("data", ""), validate=True)
    except ValueError:
        problems.append("input_audio data is not base64")
        return pcm, {}
    return _decode_wav(wav, problems), {"text": text_parts[0]["text"], "system": system}


async def _check_transcription(request: Request, problems: list[str]) -> tuple[np.ndarray, dict[str, Any]]:
    form = await request.form()
    upload = form.get("file")
    fields: dict[str, Any] = {
        key: form.get(key) for key in ("model", "response_format", "language", "prompt", "temperature")
    }
    fields["timestamp_granularities[]"] = form.getlist("timestamp_granularities[]")
    if upload is None or isinstance(upload, str):
        problems.append("no file part")
        return np.zeros(0, dtype=np.int16), fields
    if fields["response_format"] != "verbose_json":
        problems.append("response_format is not verbose_json")
    if "word" not in fields["timestamp_granularities[]"]:
        problems.append("timestamp_granularities[] lacks word")
    if not fields["model"]:
        problems.append("no model")
    fields["filename"] = upload.filename
    return _decode_wav(await upload.read(), problems), fields


def build_app(server: FakeSpeechServer) -> FastAPI:
    app = FastAPI()

    async def serve(request: Request, kind: str) -> Response:
        server.in_flight += 1
        server.max_in_flight = max(server.max_in_flight, server.in_flight)
        try:
            problems: list[str] = []
            if kind == "chat":
                pcm, fields = _check_chat(await request.json(), problems)
            else:
                pcm, fields = await _check_transcription(request, problems)
            server.seen.append(Seen(request.url.path, request.headers.get("authorization"), pcm, fields))
            reply = server.script.pop(0) if server.script else Reply()
            if reply.delay_s:
                await asyncio.sleep(reply.delay_s)
            if problems:
                server.problems.extend(problems)
                return JSONResponse({"error": {"message": "; ".join(problems)}}, status_code=422)
            if reply.status != 200 or reply.body is not None:
                return JSONResponse(
                    reply.body or {"error": {"message": "scripted"}}, reply.status, reply.headers
                )
            if kind == "chat":
                return JSONResponse(chat_completion(server.chat_answer))
            return JSONResponse(server.transcription or server.answer_for(len(pcm) / 16000))
        finally:
            server.in_flight -= 1

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        return await serve(request, "chat")

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request) -> Response:
        return await serve(request, "transcription")

    return app


def chat_completion(content: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-8f1c",
        "object": "chat.completion",
        "created": 1732550000,
        "model": QWEN,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "tool_calls": []},
                "logprobs": None,
                "finish_reason": "stop",
                "stop_reason": None,
            }
        ],
        "usage": {"prompt_tokens": 391, "total_tokens": 403, "completion_tokens": 12},
    }


def verbose_json(duration: float) -> dict[str, Any]:
    """What speaches answers for verbose_json with word timestamps (OpenAI's shape plus probabilities)."""
    words = [
        {"start": 0.0, "end": 0.42, "word": " There's", "probability": 0.71},
        {"start": 0.42, "end": 0.8, "word": " iron,", "probability": 0.52},
        {"start": 1.1, "end": 1.3, "word": " they", "probability": 0.97},
        {"start": 1.3, "end": 1.62, "word": " say.", "probability": 0.99},
    ]
    return {
        "task": "transcribe",
        "language": "en",
        "duration": duration,
        "text": " There's iron, they say.",
        "words": words,
        "segments": [
            {
                "id": 1,
                "seek": 0,
                "start": 0.0,
                "end": 1.62,
                "text": " There's iron, they say.",
                "tokens": [50364, 821, 311, 6497, 11, 436, 584, 13],
                "temperature": 0.0,
                "avg_logprob": -0.31,
                "compression_ratio": 0.83,
                "no_speech_prob": 0.02,
                "words": words,
            }
        ],
    }


@contextmanager
def running_fake_speech_server() -> Iterator[FakeSpeechServer]:
    """A :class:`FakeSpeechServer` listening on loopback for the duration of the block."""
    server = FakeSpeechServer()
    with loopback_server(build_app(server)) as url:
        server.url = url
        yield server
