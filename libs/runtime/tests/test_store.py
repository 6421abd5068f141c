"""The job store's contract, held by both implementations: the in-memory one and the NATS one against a
real nats-server (stored audio is PCM, or a permanent failure with the code the job view and clients
see; every document reads back as it was stored; what is not stored reads as None). The NATS one also
puts each document in the bucket and under the name :mod:`relisten_contracts.names` gives it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import numpy as np
import pytest
from relisten_contracts import (
    ClipResult,
    ClipsReady,
    FirstPass,
    Transcript,
    TranscriptStats,
    Word,
    names,
)
from relisten_runtime.audio import pcm16_to_float, wav_bytes
from relisten_runtime.embedded import EmbeddedNats, free_port
from relisten_runtime.infra import Infra, open_infra
from relisten_runtime.remote import pcm16_from_float
from relisten_runtime.store import JobStore, MemoryJobStore, NatsJobStore
from relisten_runtime.worker import PermanentFailure

JOB = "job-store"


def test_pcm16_to_float_inverts_pcm16_from_float() -> None:
    pcm = np.array([-32768, -1, 0, 1, 16384, 32767], dtype="<i2").tobytes()
    samples = pcm16_to_float(pcm)
    assert samples.dtype == np.float32
    assert samples[0] == -1.0 and samples[2] == 0.0 and samples[4] == 0.5
    assert pcm16_from_float(samples) == pcm


@pytest.fixture
async def infra(tmp_path: Path) -> AsyncIterator[Infra]:
    nats = EmbeddedNats(tmp_path / "store", port=free_port())
    nats.start(log_file=tmp_path / "nats.log")
    try:
        handles = await open_infra(nats.url, "job-store-test", 1)
        try:
            yield handles
        finally:
            await handles.close()
    finally:
        nats.stop()


@pytest.fixture(params=["memory", pytest.param("nats", marks=pytest.mark.nats)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobStore]:
    if request.param == "memory":
        yield MemoryJobStore()
        return
    nats = EmbeddedNats(tmp_path / "store", port=free_port())
    nats.start(log_file=tmp_path / "nats.log")
    try:
        opened = await open_infra(nats.url, "job-store-test", 1)
        try:
            yield NatsJobStore(lambda: opened)
        finally:
            await opened.close()
    finally:
        nats.stop()


def first_pass() -> FirstPass:
    words = [Word(word=" hello", start=0.0, end=0.4, probability=0.4)]
    return FirstPass(language="en", duration_s=1.0, words=words, segments=[], engine="test", seconds=0.1)


def plan() -> ClipsReady:
    return ClipsReady(
        job_id=JOB,
        audio_ref=names.audio_object(JOB),
        words_ref=names.first_pass_object(JOB),
        plan_ref=names.plan_object(JOB),
        language="en",
        duration_s=1.0,
        first_pass_seconds=0.1,
        words_flagged=0,
        clips=[],
    )


def transcript() -> Transcript:
    return Transcript(
        job_id=JOB,
        text="hello",
        language="en",
        duration_s=1.0,
        words=[],
        segments=[],
        corrections=[],
        stats=TranscriptStats(
            first_pass_seconds=0.1,
            second_pass_seconds=0.0,
            audio_redecoded_seconds=0.0,
            words_flagged=0,
            corrections_accepted=0,
            corrections_rejected=0,
            corrections_unresolved=0,
        ),
    )


async def test_stored_audio_is_pcm_or_fails_for_good(store: JobStore) -> None:
    pcm = np.arange(-800, 800, dtype="<i2").tobytes()
    await store.put_audio("job-a/audio.wav", wav_bytes(pcm))
    assert await store.audio_pcm("job-a/audio.wav") == pcm
    assert await store.audio_pcm("job-a/audio.wav", "clip") == pcm

    with pytest.raises(PermanentFailure) as missing:
        await store.audio_pcm("job-b/audio.wav")
    assert missing.value.code == "audio_missing"
    assert missing.value.message == "normalised audio job-b/audio.wav is not stored"

    await store.put_audio("job-c/clip-0.wav", wav_bytes(pcm, sample_rate=8000))
    with pytest.raises(PermanentFailure) as invalid:
        await store.audio_pcm("job-c/clip-0.wav", "clip")
    assert invalid.value.code == "clip_invalid"
    assert invalid.value.message.startswith("clip job-c/clip-0.wav is unusable: expected 16 kHz mono")

    with pytest.raises(PermanentFailure) as clip_missing:
        await store.audio_pcm("job-d/clip-0.wav", "clip")
    assert clip_missing.value.code == "clip_missing"

    await store.put_audio("job-e/audio.wav", b"not a wav file")
    with pytest.raises(PermanentFailure) as not_wav:
        await store.audio_pcm("job-e/audio.wav")
    assert not_wav.value.code == "audio_invalid"
    assert not_wav.value.message.startswith("stored audio is unusable: ")


async def test_documents_read_back_as_stored(store: JobStore) -> None:
    first_ref, transcript_ref = names.first_pass_object(JOB), names.transcript_object(JOB)
    key = names.clip_result_key(JOB, 3)
    assert await store.first_pass(first_ref) is None
    assert await store.plan(names.plan_object(JOB)) is None
    assert await store.transcript(transcript_ref) is None
    assert await store.clip_result(key) is None

    answer = ClipResult(clip_index=3, ok=True, backend="test", text="hello", seconds=0.2)
    await store.put_first_pass(first_ref, first_pass())
    await store.put_plan(plan())
    await store.put_transcript(transcript_ref, transcript())
    await store.put_clip_result(key, answer)
    assert await store.first_pass(first_ref) == first_pass()
    assert await store.plan(names.plan_object(JOB)) == plan()
    assert await store.transcript(transcript_ref) == transcript()
    assert await store.clip_result(key) == answer
    assert await store.clip_result(names.clip_result_key(JOB, 4)) is None


@pytest.mark.nats
async def test_the_nats_store_keeps_the_documented_layout(infra: Infra) -> None:
    store = NatsJobStore(lambda: infra)
    answer = ClipResult(clip_index=0, ok=False, backend="test", text="")
    await store.put_first_pass(names.first_pass_object(JOB), first_pass())
    await store.put_plan(plan())
    await store.put_transcript(names.transcript_object(JOB), transcript())
    await store.put_clip_result(names.clip_result_key(JOB, 0), answer)
    await store.put_audio(names.clip_object(JOB, 0), wav_bytes(b"\x00\x00" * 160))

    async def data(name: str) -> bytes:
        return (await infra.data.get(name)).data or b""

    assert msgspec.json.decode(await data(names.first_pass_object(JOB)), type=FirstPass) == first_pass()
    assert msgspec.json.decode(await data(names.plan_object(JOB)), type=ClipsReady) == plan()
    assert msgspec.json.decode(await data(names.transcript_object(JOB)), type=Transcript) == transcript()
    entry = await infra.clips.get(names.clip_result_key(JOB, 0))
    assert msgspec.json.decode(entry.value or b"", type=ClipResult) == answer
    assert (await infra.audio.get(names.clip_object(JOB, 0))).data == wav_bytes(b"\x00\x00" * 160)
