"""Nothing invented, end to end: a one-word recording with a little noise after the word (which tiny.en
alone turns into "No. Thank you.") goes through every service and comes out as at most that one word,
with the job's doubt said in the transcript's ``warnings`` and in the completion callback."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from relisten.dataset import Recording, decode, normalise_text
from relisten.services import SERVICES
from relisten.stack import Stack
from tests.e2e.test_failures import Receiver

pytestmark = [pytest.mark.e2e, pytest.mark.nats]

ONE_WORD = Path(__file__).resolve().parents[1] / "fixtures" / "audio" / "one-word-known-noise.wav"


@pytest.fixture(scope="module")
def callback() -> Iterator[Receiver]:
    receiver = Receiver(204, {})
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def stack(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(nats_url, tmp_path_factory.mktemp("noinvent")).start(SERVICES)
    try:
        yield running
    finally:
        running.stop()


def test_one_word_recording_gains_no_words(stack: Stack, callback: Receiver) -> None:
    recording = Recording(name="one-word", audio=decode(ONE_WORD), reference="known")
    job_id = str(stack.submit(recording, callback_url=f"{callback.url}/hook")["id"])
    view = stack.wait_for(job_id, timeout_s=300)
    assert view["status"] == "completed", view

    transcript = httpx.get(f"{stack.base_url}/v1/jobs/{job_id}/transcript", timeout=30).json()
    text = normalise_text(transcript["text"])
    assert "thank" not in text, transcript
    assert len(text.split()) <= 1, transcript
    # The one word left is heard at low confidence: the transcript says it is mostly unsure.
    codes = [warning["code"] for warning in transcript["warnings"]]
    assert "mostly_unsure" in codes, transcript

    deadline = time.monotonic() + 30
    while not callback.requests and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(callback.requests) == 1, stack.logs()
    payload = json.loads(callback.requests[0][2])
    assert payload["type"] == "job.completed"
    assert [w["code"] for w in payload["data"]["warnings"]] == codes
