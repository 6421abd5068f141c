"""The whole pipeline as real processes: real nats-server, real models, real speech."""

from __future__ import annotations

import itertools
import pathlib
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from relisten_contracts import Subject

from relisten.dataset import Recording, long_form_recordings, word_error_rate
from relisten.services import SERVICES
from relisten.stack import Stack, stored_first_pass, stream_events

pytestmark = [pytest.mark.e2e, pytest.mark.nats]


@pytest.fixture(scope="module")
def recordings() -> dict[str, Recording]:
    return {r.name: r for r in long_form_recordings(include_sonnets=False)}


@pytest.fixture(scope="module")
def stack(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(nats_url, tmp_path_factory.mktemp("stack")).start(SERVICES)
    try:
        yield running
    finally:
        running.stop()


def submit(stack: Stack, recording: Recording, **form: str) -> str:
    body = stack.submit(recording, **form)
    assert body["status"] == "queued"
    return str(body["id"])


def test_long_form_recording_is_transcribed_and_corrected(
    stack: Stack, recordings: dict[str, Recording], nats_url: str
) -> None:
    recording = recordings["chapter-1688-142285"]
    started = time.monotonic()
    job_id = submit(stack, recording)
    view = stack.wait_for(job_id)
    elapsed = time.monotonic() - started
    assert view["status"] == "completed", view
    assert view["progress"] == 1.0

    transcript = httpx.get(f"{stack.base_url}/v1/jobs/{job_id}/transcript", timeout=30).json()
    first_pass_text = " ".join(w["word"] for w in transcript["words"] if w["source"] == "first")
    final_wer = word_error_rate(recording.reference, transcript["text"])
    first_pass = stored_first_pass(nats_url, job_id)
    first_wer = word_error_rate(recording.reference, " ".join(w.word for w in first_pass.words))
    stats = transcript["stats"]
    print(
        f"\nend-to-end: {recording.duration_s:.1f} s of audio in {elapsed:.1f} s; first-pass WER {first_wer:.3f}, "
        f"final WER {final_wer:.3f}; "
        f"re-decoded {stats['audio_redecoded_seconds']:.1f} s; stats {stats}; "
        f"corrections {[(c['status'], c['original_text'][:40], c['corrected_text'][:40]) for c in transcript['corrections']]}"
    )
    assert final_wer < 0.25, transcript["text"]
    assert final_wer <= first_wer + 0.02, "the second pass must not make the transcript clearly worse"
    assert transcript["corrections"], "a long real recording should have doubtful stretches"
    assert stats["words_flagged"] > 0
    assert 0 < stats["audio_redecoded_seconds"] <= recording.duration_s
    assert abs(transcript["duration_s"] - recording.duration_s) < 0.1
    words = transcript["words"]
    assert all(a["start"] <= b["start"] for a, b in itertools.pairwise(words))
    assert all(0 <= w["start"] <= w["end"] <= transcript["duration_s"] + 1e-6 for w in words)
    assert first_pass_text  # most words survive unchanged

    srt = httpx.get(f"{stack.base_url}/v1/jobs/{job_id}/transcript", params={"format": "srt"}, timeout=30)
    assert srt.status_code == 200 and "-->" in srt.text


def test_job_without_correction_completes(stack: Stack, recordings: dict[str, Recording]) -> None:
    recording = recordings["chapter-2414-128291"]
    job_id = submit(stack, recording, correction="off")
    view = stack.wait_for(job_id)
    assert view["status"] == "completed", view
    transcript = httpx.get(f"{stack.base_url}/v1/jobs/{job_id}/transcript", timeout=30).json()
    assert transcript["corrections"] == []
    assert all(w["source"] == "first" for w in transcript["words"])
    assert word_error_rate(recording.reference, transcript["text"]) < 0.35


def test_killing_a_service_mid_job_still_gives_one_transcript(
    stack: Stack, recordings: dict[str, Recording], nats_url: str
) -> None:
    audio = recordings["chapter-2609-156975"]
    job_id = submit(stack, audio)
    stack.wait_for(job_id, {"transcribing"}, timeout_s=120)
    stack.services["asr"].kill()
    view = httpx.get(f"{stack.base_url}/v1/jobs/{job_id}", timeout=10).json()
    assert view["status"] == "transcribing", (
        "the kill must land mid-transcription for this test to mean anything"
    )
    stack.services["asr"].start()
    view = stack.wait_for(job_id)
    assert view["status"] == "completed", view

    events = stream_events(nats_url, job_id)
    subjects = [subject for subject, _ in events]
    assert subjects.count(Subject.JOB_MERGED) == 1
    assert subjects.count(Subject.WORDS_SCORED) == 1
    assert subjects.count(Subject.JOB_CREATED) == 1
    assert Subject.JOB_FAILED not in subjects
    clip_indices = [event.clip_index for subject, event in events if subject == Subject.CLIP_CORRECTED]
    assert len(clip_indices) == len(set(clip_indices))


def test_unknown_job_is_404(stack: Stack) -> None:
    response = httpx.get(f"{stack.base_url}/v1/jobs/does-not-exist", timeout=10)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "job_not_found"


def test_cli_transcribes_to_a_subtitle_file(
    stack: Stack, recordings: dict[str, Recording], tmp_path: pathlib.Path
) -> None:
    audio = tmp_path / "sonnet.wav"
    audio.write_bytes(recordings["chapter-1998-15444"].wav_bytes())
    output = tmp_path / "sonnet.srt"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "relisten",
            "transcribe",
            str(audio),
            "--server",
            stack.base_url,
            "--format",
            "srt",
            "--output",
            str(output),
            "--correction",
            "off",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    srt = output.read_text(encoding="utf-8")
    assert srt.startswith("1\n") and " --> " in srt
    assert "wrote" in done.stderr

    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "relisten",
            "transcribe",
            str(tmp_path / "nope.wav"),
            "--server",
            stack.base_url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2
