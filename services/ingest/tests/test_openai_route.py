"""``POST /v1/audio/transcriptions`` through the official ``openai`` client, against a real uvicorn and
nats-server, with a stand-in for the pipeline (:mod:`.fake_pipeline`) so no model is loaded."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import openai
import pytest
from relisten_contracts import STREAM_NAME, Subject
from relisten_ingest.settings import IngestSettings
from relisten_runtime.infra import Infra

from .conftest import SPEECH_WAV, ServeApp
from .fake_pipeline import TEXT, fake_services

pytestmark = pytest.mark.nats

AUDIO = SPEECH_WAV.read_bytes()


@pytest.fixture
async def server(serve_app: ServeApp, make_settings: Callable[..., IngestSettings]) -> AsyncIterator[str]:
    async with serve_app(make_settings(openai_timeout_s=1.5, events_heartbeat_s=0.5)) as base:
        yield base


@pytest.fixture
async def client(server: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=2) as made:
        yield made


@pytest.fixture
async def pipeline(infra: Infra) -> AsyncIterator[list[str]]:
    async with fake_services(infra) as jobs:
        yield jobs


async def jobs_created(infra: Infra) -> int:
    info = await infra.js.stream_info(STREAM_NAME, subjects_filter=str(Subject.JOB_CREATED))
    return sum((info.state.subjects or {}).values())


async def test_json_and_text(client: openai.AsyncOpenAI, pipeline: list[str]) -> None:
    result = await client.audio.transcriptions.create(model="whisper-1", file=("talk.wav", AUDIO))
    assert result.text == TEXT
    text = await client.audio.transcriptions.create(
        model="anything", file=("talk.wav", AUDIO), response_format="text"
    )
    assert text == TEXT + "\n"
    assert len(pipeline) == 2


async def test_subtitles(client: openai.AsyncOpenAI, pipeline: list[str]) -> None:
    srt = await client.audio.transcriptions.create(
        model="whisper-1", file=("talk.wav", AUDIO), response_format="srt"
    )
    assert srt.startswith("1\n00:00:00,000 --> 00:00:03,000\nMister Quilter is the apostle")
    vtt = await client.audio.transcriptions.create(
        model="whisper-1", file=("talk.wav", AUDIO), response_format="vtt"
    )
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:03.000\n")


async def test_verbose_json_with_words_and_segments(client: openai.AsyncOpenAI, pipeline: list[str]) -> None:
    result = await client.audio.transcriptions.create(
        model="whisper-1",
        file=("talk.wav", AUDIO),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
        language="en",
        prompt="Quilter",
        temperature=0.2,
    )
    assert result.text == TEXT
    assert result.language == "english" and result.duration == 5.0
    assert result.words is not None and result.segments is not None
    assert [w.word for w in result.words][:3] == ["Mister", "Quilter", "is"]
    extra = result.words[1].model_extra or {}
    assert extra["probability"] == 0.88
    first = result.segments[0]
    assert (first.id, first.start, first.end, first.seek) == (0, 0.0, 3.0, 0)
    assert first.avg_logprob == -0.35 and first.no_speech_prob == 0.01  # the first pass's signals
    assert first.temperature == 0.2 and first.tokens == []
    assert (result.model_extra or {})["task"] == "transcribe"


async def test_verbose_json_granularities(client: openai.AsyncOpenAI, pipeline: list[str]) -> None:
    default = await client.audio.transcriptions.create(
        model="whisper-1", file=("talk.wav", AUDIO), response_format="verbose_json"
    )
    assert default.segments and default.words is None
    words_only = await client.audio.transcriptions.create(
        model="whisper-1",
        file=("talk.wav", AUDIO),
        response_format="verbose_json",
        timestamp_granularities=["word"],
    )
    assert words_only.words and words_only.segments is None


async def test_a_failed_job_is_a_500_that_is_not_retried(
    client: openai.AsyncOpenAI, pipeline: list[str], infra: Infra
) -> None:
    before = await jobs_created(infra)
    with pytest.raises(openai.InternalServerError) as caught:
        await client.audio.transcriptions.create(model="whisper-1", file=("fail.wav", AUDIO))
    error = caught.value
    assert error.status_code == 500
    assert error.code == "transcribing_failed" and error.type == "server_error"
    assert "the model crashed" in error.message
    assert error.response.headers["x-relisten-job-id"] == pipeline[-1]
    assert await jobs_created(infra) == before + 1, "the SDK resubmitted the audio"


async def test_a_job_that_outlasts_the_wait_is_a_504(
    client: openai.AsyncOpenAI, pipeline: list[str], infra: Infra
) -> None:
    before = await jobs_created(infra)
    with pytest.raises(openai.InternalServerError) as caught:
        await client.audio.transcriptions.create(model="whisper-1", file=("slow.wav", AUDIO))
    assert caught.value.status_code == 504 and caught.value.code == "job_timeout"
    job_id = caught.value.response.headers["x-relisten-job-id"]
    assert f"/v1/jobs/{job_id}" in caught.value.message
    assert await jobs_created(infra) == before + 1


async def test_bad_fields_are_400s_in_openai_shape(
    server: str, client: openai.AsyncOpenAI, infra: Infra
) -> None:
    before = await jobs_created(infra)
    with pytest.raises(openai.BadRequestError) as caught:
        await client.audio.transcriptions.create(
            model="whisper-1",
            file=("talk.wav", AUDIO),
            response_format="diarized_json",
        )
    assert caught.value.param == "response_format" and caught.value.type == "invalid_request_error"

    async with httpx.AsyncClient(base_url=server) as http:
        bad = await http.post(
            "/v1/audio/transcriptions",
            files={"file": ("talk.wav", AUDIO)},
            data={"timestamp_granularities[]": "sentence"},
        )
        assert bad.status_code == 400
        assert bad.json()["error"]["param"] == "timestamp_granularities[]"
        missing = await http.post("/v1/audio/transcriptions", data={"model": "whisper-1"})
        assert missing.status_code == 400
        assert set(missing.json()["error"]) == {"message", "type", "param", "code"}
        not_audio = await http.post(
            "/v1/audio/transcriptions", files={"file": ("a.wav", b"not audio at all")}
        )
        assert not_audio.status_code == 415
        assert not_audio.json()["error"]["param"] == "file"
        wrong_method = await http.get("/v1/audio/transcriptions")
        assert wrong_method.status_code == 405 and "type" in wrong_method.json()["error"]
        # The rest of the API keeps relisten's own shape.
        elsewhere = await http.get("/v1/jobs/nope")
        assert set(elsewhere.json()["error"]) == {"code", "message"}
    assert await jobs_created(infra) == before
