"""The regression guard end to end: the real services, a second pass that answers unrelated words.

The corrector's ``openai`` backend is pointed at a loopback server that answers every clip with
confident Latin filler. The merger must reject every clip, so the transcript is the first pass, word
for word and time for time, and its WER is the first pass's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from relisten.bench import GARBAGE_WORDS, GarbageServer
from relisten.dataset import Recording, long_form_recordings, word_error_rate
from relisten.stack import Stack, stored_first_pass

pytestmark = [pytest.mark.e2e, pytest.mark.nats]

SERVICES = ("ingest", "asr", "clipper", "corrector", "merger")


@pytest.fixture(scope="module")
def garbage() -> Iterator[GarbageServer]:
    with GarbageServer() as server:
        yield server


@pytest.fixture(scope="module")
def stack(nats_url: str, garbage: GarbageServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {
        "RELISTEN_CORRECTOR_BACKEND": "openai",
        "RELISTEN_CORRECTOR_BASE_URL": garbage.url,
        "RELISTEN_CORRECTOR_MAX_ATTEMPTS": "1",
    }
    running = Stack(nats_url, tmp_path_factory.mktemp("guard"), extra_env=env).start(SERVICES)
    try:
        yield running
    finally:
        running.stop()


def transcribe(stack: Stack, recording: Recording, **form: str) -> tuple[str, dict[str, Any]]:
    job_id = str(stack.submit(recording, **form)["id"])
    view = stack.wait_for(job_id)
    assert view["status"] == "completed", f"{view}\n{stack.logs()}"
    transcript: dict[str, Any] = httpx.get(f"{stack.base_url}/v1/jobs/{job_id}/transcript", timeout=30).json()
    return job_id, transcript


def test_a_second_pass_of_unrelated_words_changes_nothing(
    stack: Stack, garbage: GarbageServer, nats_url: str
) -> None:
    recording = next(
        r for r in long_form_recordings(include_sonnets=False) if r.name == "chapter-2414-128291"
    )
    answered_before = garbage.answered
    # A high threshold flags many words: the guard has plenty to reject.
    job_id, transcript = transcribe(stack, recording, confidence_threshold="0.9")
    first = stored_first_pass(nats_url, job_id)

    corrections = transcript["corrections"]
    assert corrections, "the garbage must have been asked about something"
    assert garbage.answered - answered_before == len(corrections)
    assert all(c["status"] == "rejected" and c["reason"].startswith("drift 1.00") for c in corrections)
    assert all(set(c["corrected_text"].split()) <= set(GARBAGE_WORDS) for c in corrections)
    assert transcript["stats"]["corrections_accepted"] == 0

    kept = [(w["word"], w["start"], w["end"], w["probability"], w["source"]) for w in transcript["words"]]
    assert kept == [(w.word, w.start, w.end, w.probability, "first") for w in first.words]
    first_text = " ".join(w.word.strip() for w in first.words)
    assert word_error_rate(recording.reference, transcript["text"]) == word_error_rate(
        recording.reference, first_text
    )
