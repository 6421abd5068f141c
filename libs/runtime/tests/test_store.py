"""The job store's contract, held by both implementations: the in-memory one and the NATS one against a
real nats-server (stored audio is PCM, or a permanent failure with the code the job view and clients
see; every document reads back as it was stored; what is not stored reads as None). The NATS one also
puts each document in the bucket and under the name :mod:`relisten_contracts.names` gives it."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import numpy as np
import pytest
from nats.js.errors import DigestMismatchError, NotFoundError
from relisten_contracts import (
    AUDIO_BUCKET,
    AsrCapabilities,
    ClipResult,
    ClipsReady,
    FirstPass,
    JobView,
    Transcript,
    TranscriptStats,
    Word,
    names,
)
from relisten_runtime.audio import pcm16_from_float, pcm16_to_float, wav_bytes
from relisten_runtime.embedded import EmbeddedNats, free_port
from relisten_runtime.infra import CHUNKS_PER_PULL, Infra, object_chunks, open_infra
from relisten_runtime.store import JobStore, MemoryJobStore, NatsJobStore, Removed, StaleRevision
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
    for required, code in (
        (store.required_first_pass(first_ref), "words_missing"),
        (store.required_plan(names.plan_object(JOB)), "plan_missing"),
    ):
        with pytest.raises(PermanentFailure) as missing:
            await required
        assert missing.value.code == code

    answer = ClipResult(clip_index=3, ok=True, backend="test", text="hello", seconds=0.2)
    await store.put_first_pass(first_ref, first_pass())
    await store.put_plan(plan())
    await store.put_transcript(transcript_ref, transcript())
    await store.put_clip_result(key, answer)
    assert await store.first_pass(first_ref) == first_pass()
    assert await store.plan(names.plan_object(JOB)) == plan()
    assert await store.required_first_pass(first_ref) == first_pass()
    assert await store.required_plan(names.plan_object(JOB)) == plan()
    assert await store.transcript(transcript_ref) == transcript()
    assert await store.clip_result(key) == answer
    assert await store.clip_result(names.clip_result_key(JOB, 4)) is None


async def test_asr_capabilities_read_back_as_stored(store: JobStore) -> None:
    assert await store.asr_capabilities() is None
    capabilities = AsrCapabilities(languages=["en"], translate=False, engines=["tiny.en"], updated_at=1.0)
    await store.put_asr_capabilities(capabilities)
    assert await store.asr_capabilities() == capabilities


@pytest.mark.nats
async def test_the_nats_store_keeps_the_documented_layout(infra: Infra) -> None:
    store = NatsJobStore(lambda: infra)
    answer = ClipResult(clip_index=0, ok=False, backend="test", text="")
    await store.put_first_pass(names.first_pass_object(JOB), first_pass())
    await store.put_plan(plan())
    await store.put_transcript(names.transcript_object(JOB), transcript())
    await store.put_clip_result(names.clip_result_key(JOB, 0), answer)
    await store.put_audio(names.clip_object(JOB, 0), wav_bytes(b"\x00\x00" * 160))
    await store.put_asr_capabilities(AsrCapabilities(languages=["en"], translate=False, engines=["tiny.en"]))

    async def data(name: str) -> bytes:
        return (await infra.data.get(name)).data or b""

    assert msgspec.json.decode(await data(names.first_pass_object(JOB)), type=FirstPass) == first_pass()
    assert msgspec.json.decode(await data(names.plan_object(JOB)), type=ClipsReady) == plan()
    assert msgspec.json.decode(await data(names.transcript_object(JOB)), type=Transcript) == transcript()
    assert msgspec.json.decode(await data(names.ASR_CAPABILITIES_REF), type=AsrCapabilities).languages == [
        "en"
    ]
    entry = await infra.clips.get(names.clip_result_key(JOB, 0))
    assert msgspec.json.decode(entry.value or b"", type=ClipResult) == answer
    assert (await infra.audio.get(names.clip_object(JOB, 0))).data == wav_bytes(b"\x00\x00" * 160)


@pytest.mark.nats
async def test_objects_are_read_whole_in_order_over_several_pulls(infra: Infra) -> None:
    chunk = 128 * 1024
    large = os.urandom(chunk * (CHUNKS_PER_PULL + 5) + 7)
    await infra.audio.put("large", large)
    await infra.audio.put("empty", b"")
    assert await infra.get_blob(AUDIO_BUCKET, "large") == large
    assert await infra.get_blob(AUDIO_BUCKET, "empty") == b""
    with pytest.raises(NotFoundError):
        await infra.get_blob(AUDIO_BUCKET, "missing")
    # each read's consumer is deleted, not left for the server to expire
    assert (await infra.js.stream_info("OBJ_" + AUDIO_BUCKET)).state.consumer_count == 0


@pytest.mark.nats
async def test_an_object_whose_chunks_do_not_match_its_digest_is_refused(infra: Infra) -> None:
    await infra.audio.put("recording", os.urandom(300_000))
    info = await infra.audio.get_info("recording")
    other = await infra.audio.put("other", os.urandom(300_000))
    with pytest.raises(DigestMismatchError):
        async for _ in object_chunks(infra.js, AUDIO_BUCKET, dataclasses.replace(info, digest=other.digest)):
            pass


def job_view(job_id: str = JOB, progress: float = 0.0) -> JobView:
    return JobView(id=job_id, status="queued", progress=progress, error=None, created_at=1.0, updated_at=1.0)


async def test_views_are_compare_and_set(store: JobStore) -> None:
    assert await store.view(JOB) is None
    first = await store.put_view(job_view(), 0)
    with pytest.raises(StaleRevision):
        await store.put_view(job_view(progress=0.1), 0)  # there is one already
    second = await store.put_view(job_view(progress=0.2), first)
    assert second > first
    with pytest.raises(StaleRevision):
        await store.put_view(job_view(progress=0.3), first)  # stale
    assert await store.view(JOB) == (job_view(progress=0.2), second)


async def test_removing_a_job_leaves_nothing_of_it_and_a_marker(store: JobStore) -> None:
    other = "job-other"
    for job_id in (JOB, other):
        await store.put_view(job_view(job_id), 0)
        await store.put_audio(names.audio_object(job_id), wav_bytes(b"\x00\x00" * 160))
        await store.put_audio(names.clip_object(job_id, 0), wav_bytes(b"\x00\x00" * 160))
        await store.put_first_pass(names.first_pass_object(job_id), first_pass())
        await store.put_clip_result(
            names.clip_result_key(job_id, 0), ClipResult(clip_index=0, ok=True, backend="t", text="")
        )
        await store.put_notice_record(f"{names.notify_key_prefix(job_id)}merged.discord", b"{}")
    await store.put_notice_record("disabled.discord", b"{}")
    assert await store.notice_record(f"{names.notify_key_prefix(JOB)}merged.discord") == b"{}"
    assert not await store.is_deleted(JOB)

    removed = await store.remove_job(JOB, clip_count=1)
    assert removed == Removed(objects=3, clip_answers=1, latches=1)
    assert await store.notice_record(f"{names.notify_key_prefix(JOB)}merged.discord") is None
    assert await store.notice_record(f"{names.notify_key_prefix(other)}merged.discord") == b"{}"
    assert await store.notice_record("disabled.discord") == b"{}"  # not the job's
    assert await store.is_deleted(JOB) and not await store.is_deleted(other)
    assert await store.view(JOB) is None
    assert await store.first_pass(names.first_pass_object(JOB)) is None
    assert await store.clip_result(names.clip_result_key(JOB, 0)) is None
    with pytest.raises(PermanentFailure):
        await store.audio_pcm(names.clip_object(JOB, 0), "clip")
    # The other job keeps everything.
    assert await store.view(other) is not None
    assert await store.first_pass(names.first_pass_object(other)) == first_pass()
    assert await store.clip_result(names.clip_result_key(other, 0)) is not None
    assert await store.audio_pcm(names.audio_object(other)) == b"\x00\x00" * 160
    # Again: nothing left to remove, still marked.
    assert await store.remove_job(JOB, clip_count=1) == Removed(objects=0, clip_answers=0, latches=0)


@pytest.mark.nats
async def test_the_nats_store_purges_a_removed_job_from_the_streams(infra: Infra) -> None:
    store = NatsJobStore(lambda: infra)
    await store.put_view(job_view(), 0)
    await store.put_first_pass(names.first_pass_object(JOB), first_pass())
    await infra.notify.put(f"{names.notify_key_prefix(JOB)}merged.discord", b"{}")
    removed = await store.remove_job(JOB, clip_count=0)
    assert removed.latches == 1 and removed.objects == 1
    for stream, prefix in (
        ("KV_relisten-jobs", "$KV.relisten-jobs.>"),
        ("KV_relisten-notify", "$KV.relisten-notify.>"),
    ):
        info = await infra.js.stream_info(stream, subjects_filter=prefix)
        assert not info.state.subjects  # purged, not just marked deleted
    meta = await infra.js.stream_info("OBJ_relisten-data", subjects_filter="$O.relisten-data.M.>")
    assert not meta.state.subjects
