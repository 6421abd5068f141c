"""The transcribing step against the in-memory job store (no NATS), with the bundled tiny.en on real
speech: the first pass is stored and announced, a stored one is announced again without a second run,
and missing audio fails the job."""

from __future__ import annotations

from pathlib import Path

import pytest
from faster_whisper import decode_audio
from relisten_asr.engines import FasterWhisperEngine
from relisten_asr.handlers import FirstPassHandler
from relisten_asr.settings import AsrSettings
from relisten_contracts import JobCreated, JobProgress, WordsScored, names
from relisten_runtime.audio import pcm16_from_float, wav_bytes
from relisten_runtime.steps import RecordingPublisher
from relisten_runtime.store import MemoryJobStore
from relisten_runtime.worker import PermanentFailure

CLIP = (
    Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "audio" / "ls-dev-clean-1272-128104-0000.wav"
)
JOB = "job-asr"


@pytest.fixture(scope="module")
def engine() -> FasterWhisperEngine:
    return FasterWhisperEngine(AsrSettings(beam_size=1))


def created(duration_s: float) -> JobCreated:
    return JobCreated(
        job_id=JOB,
        filename="speech.wav",
        original_ref=names.original_object(JOB),
        audio_ref=names.audio_object(JOB),
        duration_s=duration_s,
    )


async def test_the_first_pass_is_stored_announced_and_not_run_twice(engine: FasterWhisperEngine) -> None:
    samples = decode_audio(str(CLIP), sampling_rate=16000)
    store = MemoryJobStore()
    await store.put_audio(names.audio_object(JOB), wav_bytes(pcm16_from_float(samples)))
    publisher = RecordingPublisher()
    handler = FirstPassHandler(publisher, store, engine)

    (scored,) = await handler(created(len(samples) / 16000))
    assert isinstance(scored, WordsScored)
    first = await store.first_pass(names.first_pass_object(JOB))
    assert first is not None
    assert scored.words_ref == names.first_pass_object(JOB)
    assert scored.audio_ref == names.audio_object(JOB)
    assert scored.word_count == len(first.words) > 10
    assert "quilter is the apostle of the middle classes" in " ".join(w.word for w in first.words).lower()
    assert publisher.published[0] == JobProgress(job_id=JOB, stage="transcribing", progress=0.0)
    assert all(isinstance(e, JobProgress) and e.stage == "transcribing" for e in publisher.published)

    # A redelivery finds the stored first pass: announced again, nothing transcribed or published.
    publisher.published.clear()
    store.objects.pop(("audio", names.audio_object(JOB)))
    assert list(await handler(created(len(samples) / 16000))) == [scored]
    assert publisher.published == []


async def test_missing_audio_fails_the_job(engine: FasterWhisperEngine) -> None:
    with pytest.raises(PermanentFailure) as failure:
        await FirstPassHandler(RecordingPublisher(), MemoryJobStore(), engine)(created(3.0))
    assert failure.value.code == "audio_missing"
