"""``relisten live`` as a person runs it, against the real services (API keys on): a real LibriSpeech
recording streamed at several times real time prints text close to its reference, names the stored
job and exits 0; a wrong key and an address nobody listens on give a clear message and a non-zero
exit code; ``--mic`` without a sound stack says what it needs."""

from __future__ import annotations

import subprocess
import sys
import wave
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from relisten_runtime.embedded import free_port

from relisten.dataset import SAMPLE_RATE, long_form_recordings, word_error_rate
from relisten.services import SERVICES
from relisten.stack import Stack

pytestmark = [pytest.mark.nats, pytest.mark.e2e]

KEY = "live-client-test-key"
RECORDING = "chapter-1688-142285"  # validation part; its first three utterances, 0.6 s apart
UTTERANCES = 3
SPEED = "3"
MAX_WER = 0.35
"""The file pipeline's WER on these utterances is well under this; a client that lost or repeated
turns, or printed deltas twice, lands far above it."""


@pytest.fixture(scope="module")
def stack(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack(nats_url, tmp_path_factory.mktemp("stack"), extra_env={"RELISTEN_API_KEYS": KEY}) as running:
        running.start(SERVICES)
        yield running


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    chapter = next(r for r in long_form_recordings(include_sonnets=False) if r.name == RECORDING)
    kept = chapter.utterances[:UTTERANCES]
    audio = chapter.audio[: int((kept[-1].end_s + 0.3) * SAMPLE_RATE)]
    path = tmp_path_factory.mktemp("live") / f"{RECORDING}-head.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return path, " ".join(u.reference for u in kept)


def live(*args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relisten", "live", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def test_a_recording_streamed_fast_prints_its_transcript_and_the_job(
    stack: Stack, recording: tuple[Path, str]
) -> None:
    path, reference = recording
    done = live(str(path), "--speed", SPEED, "--url", stack.base_url, "--api-key", KEY, "--language", "en")
    explain = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}\n{stack.logs()}"
    assert done.returncode == 0, explain
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(lines) >= 2, explain  # one line per turn: the pauses between utterances end turns
    wer = word_error_rate(reference, " ".join(lines))
    assert wer < MAX_WER, f"WER {wer:.2f}\n{explain}"
    assert "/v1/jobs/" in done.stderr, explain
    job_id = done.stderr.split("/v1/jobs/")[1].split()[0]
    # The session is an ordinary job (what it holds is the realtime endpoint's own tests' concern).
    answer = httpx.get(
        f"{stack.base_url}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {KEY}"}, timeout=15
    )
    assert answer.status_code == 200, answer.text


def test_a_wrong_key_is_refused_clearly(stack: Stack, recording: tuple[Path, str]) -> None:
    path, _ = recording
    done = live(str(path), "--speed", "50", "--url", stack.base_url, "--api-key", "not-the-key")
    assert done.returncode == 2, done.stderr
    assert "refused" in done.stderr or "invalid_api_key" in done.stderr or "401" in done.stderr, done.stderr
    assert done.stdout.strip() == ""


def test_an_address_nobody_listens_on_is_reported(recording: tuple[Path, str]) -> None:
    path, _ = recording
    done = live(str(path), "--url", f"http://127.0.0.1:{free_port()}", timeout_s=60)
    assert done.returncode == 2, done.stderr
    assert "cannot reach" in done.stderr, done.stderr


def test_mic_without_a_sound_stack_says_what_it_needs() -> None:
    try:
        import sounddevice  # type: ignore[import-not-found, unused-ignore]  # noqa: F401
    except (ImportError, OSError):
        done = live("--mic", "--url", "http://127.0.0.1:9", timeout_s=60)
        assert done.returncode == 2
        assert "sounddevice" in done.stderr
    else:
        pytest.skip("sounddevice is installed here: --mic would open the real device")
