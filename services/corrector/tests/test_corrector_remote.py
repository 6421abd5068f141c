"""The vLLM chat and OpenAI transcription backends against a real HTTP server on loopback
(:mod:`relisten.fake_speech`: the documented formats, every request checked as the real servers would)."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import numpy as np
import pytest
from relisten_corrector.backends import (
    BackendError,
    OpenAITranscriptionBackend,
    SecondPassBackend,
    VllmChatBackend,
    build_backend,
)
from relisten_corrector.settings import CorrectorSettings

from relisten.fake_speech import QWEN, FakeSpeechServer, Reply


@pytest.fixture
def server(speech_server: FakeSpeechServer) -> FakeSpeechServer:
    return speech_server


@pytest.fixture
def clip() -> np.ndarray:
    pcm = np.random.default_rng(7).integers(-8000, 8000, size=int(16000 * 2.5), dtype=np.int16)
    return pcm.astype(np.float32) / 32768.0


def settings_for(server: FakeSpeechServer, backend: str, **overrides: Any) -> CorrectorSettings:
    values: dict[str, Any] = {
        "backend": backend,
        "base_url": server.url,
        "timeout_s": 5.0,
        "max_attempts": 3,
        "backoff_s": 0.01,
    }
    values.update(overrides)
    return CorrectorSettings(**values)


async def test_vllm_sends_the_clip_inline_and_cleans_the_answer(
    server: FakeSpeechServer, clip: np.ndarray
) -> None:
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


async def test_vllm_sends_a_long_clip_in_pieces_of_at_most_30_s(server: FakeSpeechServer) -> None:
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


async def test_vllm_sends_the_api_key_and_accepts_a_v1_base_url(
    server: FakeSpeechServer, clip: np.ndarray
) -> None:
    backend = build_backend(settings_for(server, "vllm", base_url=server.url + "/v1/", api_key="sekret"))
    try:
        await backend.transcribe(clip, prompt=None, language=None)
    finally:
        await backend.aclose()
    assert server.problems == []
    assert server.seen[0].authorization == "Bearer sekret"


async def test_a_503_is_retried(server: FakeSpeechServer, clip: np.ndarray) -> None:
    server.script = [Reply(503, {"error": "loading model"})]
    backend = build_backend(settings_for(server, "vllm"))
    try:
        answer = await backend.transcribe(clip, prompt=None, language=None)
    finally:
        await backend.aclose()
    assert answer.text == "there's iron they say"
    assert len(server.seen) == 2


async def test_a_429_waits_for_retry_after(server: FakeSpeechServer, clip: np.ndarray) -> None:
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


async def test_a_400_is_permanent(server: FakeSpeechServer, clip: np.ndarray) -> None:
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


async def test_a_slow_server_times_out_after_every_attempt(
    server: FakeSpeechServer, clip: np.ndarray
) -> None:
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


async def test_persistent_5xx_gives_up_after_max_attempts(server: FakeSpeechServer, clip: np.ndarray) -> None:
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


async def test_concurrency_is_bounded(server: FakeSpeechServer, clip: np.ndarray) -> None:
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


async def test_openai_transcription_multipart_and_words(server: FakeSpeechServer, clip: np.ndarray) -> None:
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
    server: FakeSpeechServer, clip: np.ndarray
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


async def test_a_non_json_answer_is_a_bad_response(server: FakeSpeechServer, clip: np.ndarray) -> None:
    server.script = [Reply(200, body=["not", "an", "object"])]
    backend = build_backend(settings_for(server, "openai"))
    try:
        with pytest.raises(BackendError) as failure:
            await backend.transcribe(clip, prompt=None, language=None)
    finally:
        await backend.aclose()
    assert failure.value.code == "bad_response"
