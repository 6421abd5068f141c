"""Languages and translation end to end: real Spanish and German speech through the real services
(real nats-server, the bundled models), over relisten's API and the official ``openai`` client.
(A configuration without a multilingual model: ``test_languages_refused.py``.)"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from relisten.multilingual import error_rate
from relisten.services import SERVICES
from relisten.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.nats]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "multilingual"
SPANISH = FIXTURES / "librivox-es-alarcon-capitan-veneno-dedicatoria.flac"
GERMAN = FIXTURES / "leopard-test_de.wav"
SPANISH_SHORT = FIXTURES / "leopard-test_es.wav"


def reference(path: Path) -> str:
    for line in (FIXTURES / "manifest.jsonl").read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        if item["file"] == path.name:
            return str(item["reference"])
    raise KeyError(path.name)


def wait_for_capabilities(stack: Stack, timeout_s: float = 240.0) -> None:
    """Until the asr has stored what it can do (ingest checks submissions against it)."""
    log = stack.work_dir / "asr.log"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if log.exists() and "capabilities:" in log.read_text(errors="replace"):
            return
        time.sleep(0.3)
    raise TimeoutError(f"asr stored no capabilities:\n{stack.logs()}")


def post_job(stack: Stack, path: Path, **form: str) -> httpx.Response:
    with open(path, "rb") as audio:
        return httpx.post(
            f"{stack.base_url}/v1/jobs", files={"file": (path.name, audio)}, data=form, timeout=60
        )


def transcript_of(stack: Stack, job_id: str) -> dict[str, Any]:
    view = stack.wait_for(job_id)
    assert view["status"] == "completed", view
    response = httpx.get(f"{stack.base_url}/v1/jobs/{job_id}/transcript", timeout=30)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture(scope="module")
def stack(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack(nats_url, tmp_path_factory.mktemp("stack")) as running:
        running.start(SERVICES)
        wait_for_capabilities(running)
        yield running


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key="unused", timeout=300) as made:
        yield made


def test_spanish_comes_out_in_spanish_with_its_language_identified(stack: Stack) -> None:
    response = post_job(stack, SPANISH)
    assert response.status_code == 202, response.text
    transcript = transcript_of(stack, response.json()["id"])
    assert transcript["language"] == "es"
    detection = transcript["language_detection"]
    assert detection["language"] == "es" and detection["probability"] > 0.8
    assert detection["candidates"][0]["language"] == "es" and detection["windows"]
    routing = transcript["routing"]
    assert routing["first_pass"] == "faster-whisper:base" and routing["second_pass"] is False
    assert "skipped" in routing["reason"]
    assert transcript["corrections"] == []  # the second pass was skipped, not run on Spanish
    assert error_rate(reference(SPANISH), transcript["text"], "es") < 0.3
    assert not transcript["warnings"]


def test_named_german_through_the_openai_route(client: openai.OpenAI) -> None:
    with open(GERMAN, "rb") as audio:
        result = client.audio.transcriptions.create(
            model="relisten", file=audio, language="de", response_format="verbose_json"
        )
    assert result.language == "german"
    assert error_rate(reference(GERMAN), result.text, "de") < 0.5


def test_translation_through_the_openai_sdk(client: openai.OpenAI) -> None:
    with open(SPANISH_SHORT, "rb") as audio:
        result = client.audio.translations.create(
            model="relisten", file=audio, response_format="verbose_json"
        )
    assert result.language == "english"
    words = result.text.lower().split()
    assert "the" in words and "arenas" not in words
    with open(SPANISH_SHORT, "rb") as audio:
        srt = client.audio.translations.create(model="relisten", file=audio, response_format="srt")
    assert "-->" in str(srt) and "the" in str(srt).lower()


def test_translation_as_a_job_option_keeps_word_timings(stack: Stack) -> None:
    response = post_job(stack, SPANISH_SHORT, task="translate")
    assert response.status_code == 202, response.text
    assert response.json()["options"]["task"] == "translate"
    transcript = transcript_of(stack, response.json()["id"])
    assert transcript["language"] == "en" and transcript["routing"]["task"] == "translate"
    assert transcript["routing"]["language"] == "es"
    assert transcript["words"] and all(
        0 <= w["start"] <= w["end"] <= transcript["duration_s"] for w in transcript["words"]
    )
    assert "the" in transcript["text"].lower().split()


def test_a_language_whisper_does_not_know_is_refused(stack: Stack) -> None:
    response = post_job(stack, SPANISH_SHORT, language="tlh")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "unsupported_language"


def test_spanish_forced_to_english_completes_with_a_warning(stack: Stack) -> None:
    response = post_job(stack, SPANISH, language="en")
    assert response.status_code == 202, response.text
    transcript = transcript_of(stack, response.json()["id"])
    # the job's choice is honoured (tiny.en, English) but the transcript says it is doubtful
    assert transcript["routing"]["first_pass"] == "faster-whisper:tiny.en"
    codes = {w["code"] for w in transcript["warnings"]}
    assert "language_mismatch" in codes
    assert transcript["language_detection"]["language"] == "es"
