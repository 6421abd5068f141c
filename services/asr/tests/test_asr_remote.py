"""The OpenAI-compatible first pass against a real HTTP server on loopback, and its response mapping.

The server (:mod:`relisten.fake_speech`) checks the multipart request the way speaches would and answers
as speaches does; a request it would not accept gets a 422 naming the problem, which fails the test.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from relisten_asr.engines import (
    EngineError,
    OpenAITranscriptionEngine,
    build_engine,
    first_pass_from_verbose_json,
)
from relisten_asr.settings import AsrSettings

from relisten.fake_speech import FakeSpeechServer, Reply

MODEL = "Systran/faster-whisper-small.en"


def speaches_answer(duration: float) -> dict[str, Any]:
    """speaches' verbose_json for timestamp_granularities word+segment: words on top and per segment."""
    first = [
        {"start": 0.0, "end": 0.8, "word": " There's", "probability": 0.57},
        {"start": 0.8, "end": 1.04, "word": " iron,", "probability": 0.67},
        {"start": 1.16, "end": 1.28, "word": " they", "probability": 0.98},
        {"start": 1.28, "end": 1.56, "word": " say.", "probability": 0.99},
    ]
    second = [
        {"start": 2.1, "end": 2.4, "word": " But", "probability": 0.97},
        {"start": 2.4, "end": 2.9, "word": " his,", "probability": 0.35},
    ]
    segment = {"seek": 0, "tokens": [50364, 821], "temperature": 0.0, "compression_ratio": 1.29}
    return {
        "task": "transcribe",
        "language": "en",
        "duration": duration,
        "text": "There's iron, they say. But his,",
        "words": first + second,
        "segments": [
            {
                **segment,
                "id": 1,
                "start": 0.0,
                "end": 1.56,
                "text": " There's iron, they say.",
                "avg_logprob": -0.28,
                "no_speech_prob": 0.03,
                "words": first,
            },
            {
                **segment,
                "id": 2,
                "start": 2.1,
                "end": 2.9,
                "text": " But his,",
                "avg_logprob": -0.61,
                "no_speech_prob": 0.11,
                "words": second,
            },
        ],
    }


@pytest.fixture
def fake(speech_server: FakeSpeechServer) -> FakeSpeechServer:
    speech_server.answer_for = speaches_answer
    return speech_server


def engine_for(fake: FakeSpeechServer, **overrides: Any) -> OpenAITranscriptionEngine:
    values: dict[str, Any] = {
        "engine": "openai",
        "base_url": fake.url + "/v1",
        "model": MODEL,
        "backoff_s": 0.01,
    }
    values.update(overrides)
    engine = build_engine(AsrSettings(**values))
    assert isinstance(engine, OpenAITranscriptionEngine)
    return engine


AUDIO = np.zeros(16000 * 3, dtype=np.float32)


async def test_maps_words_and_segments(fake: FakeSpeechServer) -> None:
    engine = engine_for(fake, api_key="k")
    progress: list[float] = []
    try:
        result = await engine.transcribe(AUDIO, language="en", prompt="Thornton", on_progress=progress.append)
    finally:
        await engine.aclose()
    assert fake.problems == []
    [seen] = fake.seen
    assert (seen.fields["language"], seen.fields["prompt"], seen.fields["temperature"], len(seen.pcm)) == (
        "en",
        "Thornton",
        "0",
        48000,
    )
    assert (seen.fields["model"], seen.fields["response_format"]) == (MODEL, "verbose_json")
    assert sorted(seen.fields["timestamp_granularities[]"]) == ["segment", "word"]
    assert seen.authorization == "Bearer k"
    assert result.engine == f"openai:{MODEL}"
    assert result.language == "en" and result.duration_s == 3.0
    assert [(w.word, w.probability) for w in result.words] == [
        ("There's", 0.57),
        ("iron,", 0.67),
        ("they", 0.98),
        ("say.", 0.99),
        ("But", 0.97),
        ("his,", 0.35),
    ]
    assert [(s.first_word, s.last_word, s.avg_logprob, s.no_speech_prob) for s in result.segments] == [
        (0, 4, -0.28, 0.03),
        (4, 6, -0.61, 0.11),
    ]
    assert result.segments[0].text == "There's iron, they say."
    assert progress == [1.0]


async def test_5xx_then_success_is_retried_and_4xx_is_not(fake: FakeSpeechServer) -> None:
    engine = engine_for(fake)
    try:
        fake.script = [Reply(503, {"detail": "model loading"}, {"Retry-After": "0.2"})]
        result = await engine.transcribe(AUDIO, language=None, prompt=None)
        assert len(result.words) == 6 and len(fake.seen) == 2
        fake.seen.clear()
        fake.script = [Reply(404, {"detail": f"model {MODEL} not found"})]
        with pytest.raises(EngineError) as failure:
            await engine.transcribe(AUDIO, language=None, prompt=None)
    finally:
        await engine.aclose()
    assert failure.value.code == "http_404" and not failure.value.retryable
    assert len(fake.seen) == 1


async def test_text_without_word_timestamps_is_refused(fake: FakeSpeechServer) -> None:
    fake.transcription = {"text": "There's iron.", "language": "en", "duration": 3.0}
    engine = engine_for(fake)
    try:
        with pytest.raises(EngineError) as failure:
            await engine.transcribe(AUDIO, language=None, prompt=None)
    finally:
        await engine.aclose()
    assert failure.value.code == "no_word_timestamps"


def test_openai_shape_without_probabilities_or_segment_words() -> None:
    # OpenAI's whisper-1: language as a name, words without probability, segments without words.
    body = {
        "task": "transcribe",
        "language": "english",
        "duration": 4.0,
        "text": "one two three",
        "words": [
            {"word": "one", "start": 0.2, "end": 0.5},
            {"word": "two", "start": 0.6, "end": 0.9},
            {"word": "three", "start": 2.6, "end": 3.1},
        ],
        "segments": [
            {"id": 0, "start": 0.0, "end": 1.0, "text": " one two", "avg_logprob": -0.2},
            {"id": 1, "start": 2.5, "end": 4.5, "text": " three"},
        ],
    }
    result = first_pass_from_verbose_json(
        body, duration_s=4.0, engine="openai:whisper-1", seconds=1.0, language=None
    )
    assert result.language == "english"
    assert [w.probability for w in result.words] == [1.0, 1.0, 1.0]
    assert [(s.first_word, s.last_word) for s in result.segments] == [(0, 2), (2, 3)]
    assert result.segments[1].end == 4.0  # clamped to the audio
    assert (
        result.segments[1].avg_logprob,
        result.segments[1].compression_ratio,
        result.segments[1].no_speech_prob,
    ) == (
        0.0,
        1.0,
        0.0,
    )
    assert (
        first_pass_from_verbose_json(body, duration_s=4.0, engine="e", seconds=0, language="en").language
        == "en"
    )


def test_words_are_clamped_and_never_go_backwards() -> None:
    body = {
        "language": "en",
        "text": "a b c",
        "words": [
            {"word": " a", "start": -0.1, "end": 0.4, "probability": 0.9},
            {"word": " b", "start": 0.3, "end": 0.2, "probability": 1.2},
            {"word": " c", "start": 0.25, "end": 9.0, "probability": 0.5},
            {"word": "  ", "start": 1.0, "end": 1.1, "probability": 0.5},
        ],
    }
    result = first_pass_from_verbose_json(body, duration_s=2.0, engine="e", seconds=0, language=None)
    assert [(w.word, w.start, w.end, w.probability) for w in result.words] == [
        ("a", 0.0, 0.4, 0.9),
        ("b", 0.3, 0.3, 1.0),
        ("c", 0.3, 2.0, 0.5),
    ]
    # No segments in the answer: one segment holds every word.
    assert [(s.first_word, s.last_word) for s in result.segments] == [(0, 3)]
    assert (
        first_pass_from_verbose_json(
            {"text": "", "language": "en"}, duration_s=1.0, engine="e", seconds=0, language=None
        ).words
        == []
    )
    with pytest.raises(EngineError):
        first_pass_from_verbose_json(
            {"words": [{"word": "a", "start": None, "end": 1}]},
            duration_s=1,
            engine="e",
            seconds=0,
            language=None,
        )
