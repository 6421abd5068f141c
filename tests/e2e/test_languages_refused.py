"""A configuration that cannot do a language refuses it at submission (422 ``unsupported_language``), on
relisten's API and in OpenAI's shape, instead of transcribing it as English: ingest and asr with tiny.en
alone (no multilingual model), on a NATS server of their own."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from relisten.stack import Stack
from tests.e2e.test_languages import SPANISH_SHORT, post_job, wait_for_capabilities

pytestmark = [pytest.mark.e2e, pytest.mark.nats]


@pytest.fixture(scope="module")
def english_only(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(
        nats_url, tmp_path_factory.mktemp("english-only"), extra_env={"RELISTEN_ASR_MULTILINGUAL_MODEL": ""}
    )
    running.start(("ingest", "asr"))
    try:
        wait_for_capabilities(running)
        yield running
    finally:
        running.stop()


def test_spanish_is_refused_where_only_english_can_be_transcribed(english_only: Stack) -> None:
    response = post_job(english_only, SPANISH_SHORT, language="es")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "unsupported_language" and "'es'" in error["message"]
    assert httpx.get(f"{english_only.base_url}/v1/jobs", timeout=10).json()["jobs"] == []  # nothing stored


def test_translation_is_refused_without_a_multilingual_model(english_only: Stack) -> None:
    response = post_job(english_only, SPANISH_SHORT, task="translate")
    assert response.status_code == 422 and response.json()["error"]["code"] == "unsupported_language"
    with (
        openai.OpenAI(base_url=f"{english_only.base_url}/v1", api_key="unused", max_retries=0) as client,
        pytest.raises(openai.UnprocessableEntityError) as caught,
        open(SPANISH_SHORT, "rb") as audio,
    ):
        client.audio.translations.create(model="relisten", file=audio)
    assert caught.value.code == "unsupported_language"


def test_english_is_still_admitted(english_only: Stack) -> None:
    response = post_job(english_only, SPANISH_SHORT, language="en")
    assert response.status_code == 202
