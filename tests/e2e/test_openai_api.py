"""The OpenAI-compatible route end to end: the official ``openai`` client against the real services
(real nats-server, real models, real speech), with API keys switched on."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from relisten.dataset import word_error_rate
from relisten.services import SERVICES
from relisten.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.nats]

API_KEY = "e2e-openai-key"
AUDIO = Path(__file__).resolve().parents[1] / "fixtures" / "audio"
QUILTER = AUDIO / "ls-dev-clean-1272-128104-0000.wav"
QUILTER_TEXT = "mister quilter is the apostle of the middle classes and we are glad to welcome his gospel"
IRON = AUDIO / "ls-test-other-1688-142285-0000.flac"
IRON_TEXT = (
    "there's iron they say in all our blood and a grain or two perhaps is good but his he makes me "
    "harshly feel has got a little too much of steel anon"
)
SRT_CUE = re.compile(r"^\d+\n\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}\n.+", re.MULTILINE)


@pytest.fixture(scope="module")
def stack(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack(
        nats_url, tmp_path_factory.mktemp("stack"), extra_env={"RELISTEN_INGEST_API_KEYS": API_KEY}
    ) as running:
        running.start(SERVICES)
        yield running


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key=API_KEY, timeout=300) as made:
        yield made


def test_text_and_json(client: openai.OpenAI, stack: Stack) -> None:
    with QUILTER.open("rb") as audio:
        text = client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="text")
    assert text.endswith("\n")
    assert word_error_rate(QUILTER_TEXT, text) < 0.2, (text, stack.logs())
    with QUILTER.open("rb") as audio:
        result = client.audio.transcriptions.create(model="whisper-1", file=audio, language="en")
    assert word_error_rate(QUILTER_TEXT, result.text) < 0.2, result.text


def test_srt(client: openai.OpenAI) -> None:
    with QUILTER.open("rb") as audio:
        srt = client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="srt")
    cues = SRT_CUE.findall(srt)
    assert cues and srt.startswith("1\n00:00:0"), srt
    assert "quilter" in srt.lower()


def test_verbose_json_with_words_and_their_probability(client: openai.OpenAI) -> None:
    with IRON.open("rb") as audio:
        result = client.audio.transcriptions.create(
            model="whisper-1",
            file=audio,
            response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
        )
    assert result.language == "english"
    assert result.duration == pytest.approx(15.0, abs=0.1)
    assert word_error_rate(IRON_TEXT, result.text) < 0.35, result.text
    assert result.words and result.segments
    probabilities = [(w.model_extra or {})["probability"] for w in result.words]
    assert all(0.0 <= p <= 1.0 for p in probabilities)
    assert min(probabilities) < max(probabilities)
    assert all(0 <= w.start <= w.end <= result.duration + 1e-3 for w in result.words)
    assert [w.start for w in result.words] == sorted(w.start for w in result.words)
    assert " ".join(s.text.strip() for s in result.segments) == result.text.strip()
    assert all(s.avg_logprob <= 0 and s.compression_ratio > 0 for s in result.segments)


def test_a_wrong_key_is_refused_in_openai_shape(stack: Stack) -> None:
    with (
        openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key="wrong", max_retries=0) as client,
        pytest.raises(openai.AuthenticationError) as caught,
        QUILTER.open("rb") as audio,
    ):
        client.audio.transcriptions.create(model="whisper-1", file=audio)
    assert caught.value.code == "invalid_api_key"
    assert httpx.get(f"{stack.base_url}/healthz", timeout=10).status_code == 200
