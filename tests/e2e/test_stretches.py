"""Doubtful stretches re-heard whole, end to end: the real services, the bundled models, real speech.

With ``RELISTEN_CLIPPER_ESCALATE_FLAG_RATE`` set (and no windows beside), every first-pass segment in which
enough words are flagged is cut as one clip, decoded by the corrector as its own chunk, and its words are
replaced whole by the merger.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from relisten.dataset import long_form_recordings, word_error_rate
from relisten.services import SERVICES
from relisten.stack import Stack, stored_first_pass

pytestmark = [pytest.mark.e2e, pytest.mark.nats]


@pytest.fixture(scope="module")
def stack(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"RELISTEN_CLIPPER_ESCALATE_FLAG_RATE": "0.3", "RELISTEN_CLIPPER_MAX_REDECODE_FRACTION": "0"}
    running = Stack(nats_url, tmp_path_factory.mktemp("stretches"), extra_env=env).start(SERVICES)
    try:
        yield running
    finally:
        running.stop()


def test_doubtful_segments_are_re_heard_whole_by_the_second_pass(stack: Stack, nats_url: str) -> None:
    recording = next(
        r for r in long_form_recordings(include_sonnets=False) if r.name == "chapter-2414-128291"
    )
    # A high threshold flags many words, so that some segments are doubtful throughout.
    job_id = str(stack.submit(recording, confidence_threshold="0.9")["id"])
    view = stack.wait_for(job_id)
    assert view["status"] == "completed", f"{view}\n{stack.logs()}"
    transcript: dict[str, Any] = httpx.get(f"{stack.base_url}/v1/jobs/{job_id}/transcript", timeout=30).json()
    first = stored_first_pass(nats_url, job_id)

    corrections = transcript["corrections"]
    whole = [c for c in corrections if c["reason"].startswith("stretch re-heard whole")]
    print(f"\n{len(corrections)} clips, {len(whole)} stretches taken whole; stats {transcript['stats']}")
    assert whole, "some segment should be doubtful throughout at this threshold"
    # No windows beside the stretches: every clip is a stretch, judged as one.
    assert all(c["status"] in ("accepted", "rejected") for c in corrections)
    assert transcript["stats"]["audio_redecoded_seconds"] > 0
    replaced = [w for w in transcript["words"] if w["source"] == "second"]
    assert replaced
    # The stretches' words are base's; outside them the first pass's words stand as they were.
    spans = [(c["start"], c["end"]) for c in corrections]
    outside = [w for w in transcript["words"] if not any(s <= w["start"] < e for s, e in spans)]
    first_outside = [w for w in first.words if not any(s <= w.start < e for s, e in spans)]
    assert [w["word"] for w in outside] == [w.word for w in first_outside]
    words = transcript["words"]
    assert all(a["start"] <= b["start"] for a, b in itertools.pairwise(words))
    assert all(0 <= w["start"] <= w["end"] <= transcript["duration_s"] + 1e-6 for w in words)
    first_text = " ".join(w.word for w in first.words)
    final_wer = word_error_rate(recording.reference, transcript["text"])
    first_wer = word_error_rate(recording.reference, first_text)
    print(f"first-pass WER {first_wer:.3f}, final WER {final_wer:.3f}")
    for c in corrections:
        print(c["status"], c["reason"][:50], "|", c["original_text"], "|", c["corrected_text"])
    # base's reading of the doubtful segments, not something else: on this chapter base alone is a little
    # worse than tiny.en, so the transcript may be too, but it stays a transcript of the recording.
    assert final_wer < 0.25
    assert all(c["status"] == "accepted" for c in corrections)
