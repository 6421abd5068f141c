"""The vLLM chat and OpenAI transcription backends against a real HTTP server on loopback.

The server (FastAPI under uvicorn, in its own thread and event loop) speaks the documented formats and
checks every request the way the real servers would: a request it would not accept gets a 422 naming the
problem, which the backend treats as permanent, so a malformed request fails the test loudly.
"""

from __future__ import annotations

import asyncio
import base64
import io
import socket
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from relisten_corrector.backends import (
    BackendError,
    OpenAITranscriptionBackend,
    SecondPassBackend,
    VllmChatBackend,
    build_backend,
)
from relisten_corrector.settings import CorrectorSettings

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


class FakeServer:
    """Scripted replies (first in, first out; a valid default when the script runs out)."""

    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.seen: list[Seen] = []
        self.problems: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.chat_answer = "The original content of this audio is: 'there's iron they say'"
        self.transcription: dict[str, Any] = {}
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


def build_app(server: FakeServer) -> FastAPI:
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
            return JSONResponse(server.transcription or verbose_json(len(pcm) / 16000))
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


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeServer]:
    server = FakeServer()
    with loopback_server(build_app(server)) as url:
        server.url = url
        yield server


@pytest.fixture
def server(fake: FakeServer) -> FakeServer:
    fake.reset()
    return fake


@pytest.fixture
def clip() -> np.ndarray:
    pcm = np.random.default_rng(7).integers(-8000, 8000, size=int(16000 * 2.5), dtype=np.int16)
    return pcm.astype(np.float32) / 32768.0


def settings_for(server: FakeServer, backend: str, **overrides: Any) -> CorrectorSettings:
    values: dict[str, Any] = {
        "backend": backend,
        "base_url": server.url,
        "timeout_s": 5.0,
        "max_attempts": 3,
        "backoff_s": 0.01,
    }
    values.update(overrides)
    return CorrectorSettings(**values)


async def test_vllm_sends_the_clip_inline_and_cleans_the_answer(server: FakeServer, clip: np.ndarray) -> None:
    backend = build_backend(settings_for(server, "vllm"))
    assert isinstance(backend, VllmChatBackend)
    try:
        answer = await backend.transcribe(clip, prompt="Glossary: Thornton, Milton.", language="en")
    finally:
        await backend.aclose()
    assert server.problems == []
    assert answer.text == "there's iron they say"
    assert answer.words is None
    assert backend.name == f"vllm:{QWEN}"
    [seen] = server.seen
    np.testing.assert_array_equal(seen.pcm, np.rint(clip * 32768).astype(np.int16))
    assert "Thornton, Milton." in seen.fields["text"]
    assert seen.authorization is None


async def test_vllm_sends_a_long_clip_in_pieces_of_at_most_30_s(server: FakeServer) -> None:
    pcm = np.random.default_rng(5).integers(-8000, 8000, size=16000 * 45, dtype=np.int16)
    pcm[16000 * 20 : 16000 * 21] = 0
    long_clip = pcm.astype(np.float32) / 32768.0
    backend = build_backend(settings_for(server, "vllm"))
    try:
        answer = await backend.transcribe(long_clip, prompt=None, language=None)
    finally:
        await backend.aclose()
    assert server.problems == []
    assert answer.text == "there's iron they say there's iron they say"
    lengths = sorted(len(seen.pcm) for seen in server.seen)
    assert len(lengths) == 2 and max(lengths) <= 16000 * 30 and sum(lengths) == len(pcm)


async def test_vllm_sends_the_api_key_and_accepts_a_v1_base_url(server: FakeServer, clip: np.ndarray) -> None:
    backend = build_backend(settings_for(server, "vllm", base_url=server.url + "/v1/", api_key="sekret"))
    try:
        await backend.transcribe(clip, prompt=None, language=None)
    finally:
        await backend.aclose()
    assert server.problems == []
    assert server.seen[0].authorization == "Bearer sekret"


async def test_a_503_is_retried(server: FakeServer, clip: np.ndarray) -> None:
    server.script = [Reply(503, {"error": "loading model"})]
    backend = build_backend(settings_for(server, "vllm"))
    try:
        answer = await backend.transcribe(clip, prompt=None, language=None)
    finally:
        await backend.aclose()
    assert answer.text == "there's iron they say"
    assert len(server.seen) == 2


async def test_a_429_waits_for_retry_after(server: FakeServer, clip: np.ndarray) -> None:
    server.script = [Reply(429, {"error": "busy"}, headers={"Retry-After": "1"})]
    backend = build_backend(settings_for(server, "vllm", backoff_s=0.01))
    started = time.monotonic()
    try:
        answer = await backend.transcribe(clip, prompt=None, language=None)
    finally:
        await backend.aclose()
    assert time.monotonic() - started >= 1.0
    assert answer.text == "there's iron they say"
    assert len(server.seen) == 2


async def test_a_400_is_permanent(server: FakeServer, clip: np.ndarray) -> None:
    server.script = [Reply(400, {"error": {"message": "audio too long"}})]
    backend = build_backend(settings_for(server, "vllm"))
    try:
        with pytest.raises(BackendError) as failure:
            await backend.transcribe(clip, prompt=None, language=None)
    finally:
        await backend.aclose()
    assert failure.value.code == "http_400"
    assert not failure.value.retryable
    assert "audio too long" in failure.value.message
    assert len(server.seen) == 1


async def test_a_slow_server_times_out_after_every_attempt(server: FakeServer, clip: np.ndarray) -> None:
    server.script = [Reply(delay_s=1.5), Reply(delay_s=1.5)]
    backend = build_backend(settings_for(server, "vllm", timeout_s=0.3, max_attempts=2))
    started = time.monotonic()
    try:
        with pytest.raises(BackendError) as failure:
            await backend.transcribe(clip, prompt=None, language=None)
    finally:
        await backend.aclose()
    assert failure.value.code == "timeout"
    assert len(server.seen) == 2
    assert time.monotonic() - started < 1.5


async def test_persistent_5xx_gives_up_after_max_attempts(server: FakeServer, clip: np.ndarray) -> None:
    server.script = [Reply(502, {"error": "bad gateway"}) for _ in range(3)]
    backend = build_backend(settings_for(server, "openai", max_attempts=3))
    try:
        with pytest.raises(BackendError) as failure:
            await backend.transcribe(clip, prompt=None, language=None)
    finally:
        await backend.aclose()
    assert failure.value.code == "http_502"
    assert len(server.seen) == 3


async def test_an_unreachable_server_is_a_backend_error(clip: np.ndarray) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    settings = CorrectorSettings(
        backend="openai", base_url=f"http://127.0.0.1:{closed_port}", max_attempts=2, backoff_s=0.01
    )
    backend = build_backend(settings)
    try:
        with pytest.raises(BackendError) as failure:
            await backend.transcribe(clip, prompt=None, language=None)
    finally:
        await backend.aclose()
    assert failure.value.code == "unreachable"


async def test_concurrency_is_bounded(server: FakeServer, clip: np.ndarray) -> None:
    server.script = [Reply(delay_s=0.2) for _ in range(6)]
    backend = build_backend(settings_for(server, "vllm", max_concurrency=2))
    try:
        answers = await asyncio.gather(
            *(backend.transcribe(clip, prompt=None, language=None) for _ in range(6))
        )
    finally:
        await backend.aclose()
    assert len(answers) == 6
    assert server.max_in_flight == 2


async def test_openai_transcription_multipart_and_words(server: FakeServer, clip: np.ndarray) -> None:
    backend = build_backend(settings_for(server, "openai", model="Systran/faster-whisper-large-v3"))
    assert isinstance(backend, OpenAITranscriptionBackend)
    try:
        answer = await backend.transcribe(clip, prompt="Thornton", language="en")
    finally:
        await backend.aclose()
    assert server.problems == []
    [seen] = server.seen
    assert seen.path == "/v1/audio/transcriptions"
    assert seen.fields["model"] == "Systran/faster-whisper-large-v3"
    assert seen.fields["timestamp_granularities[]"] == ["word"]
    assert (seen.fields["language"], seen.fields["prompt"], seen.fields["temperature"]) == (
        "en",
        "Thornton",
        "0",
    )
    assert seen.fields["filename"].endswith(".wav")
    assert len(seen.pcm) == len(clip)
    assert answer.text == "There's iron, they say."
    assert answer.words is not None
    assert [(w.word, w.start, w.end, w.probability) for w in answer.words] == [
        ("There's", 0.0, 0.42, 0.71),
        ("iron,", 0.42, 0.8, 0.52),
        ("they", 1.1, 1.3, 0.97),
        ("say.", 1.3, 1.62, 0.99),
    ]
    assert backend.name == "openai:Systran/faster-whisper-large-v3"


async def test_openai_words_without_probability_and_text_only_answers(
    server: FakeServer, clip: np.ndarray
) -> None:
    backend: SecondPassBackend = build_backend(settings_for(server, "openai"))
    try:
        # OpenAI's own verbose_json: words carry no probability.
        server.transcription = {
            "task": "transcribe",
            "language": "english",
            "duration": 2.5,
            "text": "There's iron.",
            "words": [
                {"word": "There's", "start": 0.0, "end": 0.4},
                {"word": "iron", "start": 0.4, "end": 0.8},
            ],
        }
        with_words = await backend.transcribe(clip, prompt=None, language=None)
        # A server without word timestamps (e.g. Qwen3-ASR on vLLM) answers text only.
        server.transcription = {"text": " There's iron.", "language": "en", "duration": 2.5}
        text_only = await backend.transcribe(clip, prompt=None, language=None)
    finally:
        await backend.aclose()
    assert server.problems == []
    assert with_words.words is not None and [w.probability for w in with_words.words] == [1.0, 1.0]
    assert text_only.text == "There's iron." and text_only.words is None
    assert "language" not in {k for k, v in server.seen[0].fields.items() if v is not None}


async def test_a_non_json_answer_is_a_bad_response(server: FakeServer, clip: np.ndarray) -> None:
    server.script = [Reply(200, body=["not", "an", "object"])]
    backend = build_backend(settings_for(server, "openai"))
    try:
        with pytest.raises(BackendError) as failure:
            await backend.transcribe(clip, prompt=None, language=None)
    finally:
        await backend.aclose()
    assert failure.value.code == "bad_response"
