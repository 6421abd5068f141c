"""The clipping step against the in-memory job store (no NATS): what it stores, what it returns, and
when it fails the job."""

from __future__ import annotations

import math
import struct

import msgspec
import pytest
from relisten_clipper.domain import ClipPolicy
from relisten_clipper.handlers import ClipHandler
from relisten_contracts import (
    ClipsReady,
    FirstPass,
    JobOptions,
    Segment,
    Word,
    WordsScored,
    names,
    words_scored,
)
from relisten_runtime.audio import SAMPLE_RATE, pcm_from_wav, wav_bytes
from relisten_runtime.store import MemoryJobStore
from relisten_runtime.worker import PermanentFailure

JOB = "job-clip"
DURATION_S = 30.0
"""Long enough that one window fits the shipped re-listening budget (a fifth of the audio)."""


def tone_pcm(seconds: float) -> bytes:
    """A recording whose every sample differs from its neighbours, so a clip's place is checkable."""
    count = int(seconds * SAMPLE_RATE)
    return struct.pack(f"<{count}h", *(int(8000 * math.sin(i * 0.05)) + i % 7 for i in range(count)))


def first_pass(doubtful: tuple[int, ...] = (31, 32)) -> FirstPass:
    words = [
        Word(word=f" w{i}", start=i * 0.5, end=i * 0.5 + 0.4, probability=0.2 if i in doubtful else 0.95)
        for i in range(60)
    ]
    segment = Segment(
        start=0.0,
        end=DURATION_S,
        text="".join(w.word for w in words),
        avg_logprob=-0.2,
        compression_ratio=1.2,
        no_speech_prob=0.01,
        first_word=0,
        last_word=len(words),
    )
    return FirstPass(
        language="en", duration_s=DURATION_S, words=words, segments=[segment], engine="test", seconds=1.5
    )


async def stored_job(store: MemoryJobStore, first: FirstPass, *, audio: bool = True) -> WordsScored:
    ref = names.first_pass_object(JOB)
    await store.put_first_pass(ref, first)
    if audio:
        await store.put_audio(names.audio_object(JOB), wav_bytes(tone_pcm(DURATION_S)))
    return words_scored(JOB, first, audio_ref=names.audio_object(JOB), words_ref=ref, options=JobOptions())


async def test_doubtful_words_become_sample_exact_clips_and_a_stored_plan() -> None:
    store = MemoryJobStore()
    event = await stored_job(store, first_pass())
    published = await ClipHandler(store, ClipPolicy())(event)

    assert len(published) == 1
    ready = published[0]
    assert isinstance(ready, ClipsReady)
    assert await store.plan(names.plan_object(JOB)) == ready
    assert ready.plan_ref == names.plan_object(JOB)
    assert ready.words_flagged == 2
    assert len(ready.clips) == 1
    clip = ready.clips[0]
    assert clip.flagged_word_indices == [31, 32]
    assert clip.start_s <= 15.5 and clip.end_s >= 16.4  # around the two doubtful words
    assert clip.audio_ref == names.clip_object(JOB, 0)
    # The clip is the recording's own samples, cut where the plan says.
    whole = tone_pcm(DURATION_S)
    cut = await store.audio_pcm(clip.audio_ref, "clip")
    assert cut == whole[clip.start_sample * 2 : clip.end_sample * 2]
    assert pcm_from_wav(store.objects[("audio", clip.audio_ref)]) == cut


async def test_a_doubtful_stretch_is_planned_as_a_whole_clip() -> None:
    store = MemoryJobStore()
    # 7 of the segment's 60 words unsure: with escalation at 0.1, the segment is one clip the merger takes whole.
    event = await stored_job(store, first_pass(doubtful=(10, 11, 12, 14, 15, 17, 18)))
    (ready,) = await ClipHandler(store, ClipPolicy(escalate_flag_rate=0.1))(event)
    assert isinstance(ready, ClipsReady)
    assert [clip.whole for clip in ready.clips] == [True]
    (clip,) = ready.clips
    assert clip.word_first <= 10 and clip.word_last >= 19
    assert (await store.plan(names.plan_object(JOB))) == ready
    other = MemoryJobStore()
    (usual,) = await ClipHandler(other, ClipPolicy())(await stored_job(other, first_pass()))
    assert isinstance(usual, ClipsReady)
    assert not any(clip.whole for clip in usual.clips)


async def test_a_confident_first_pass_plans_no_clip_and_needs_no_audio() -> None:
    store = MemoryJobStore()
    event = await stored_job(store, first_pass(doubtful=()), audio=False)
    (ready,) = await ClipHandler(store, ClipPolicy())(event)
    assert isinstance(ready, ClipsReady)
    assert ready.clips == [] and ready.words_flagged == 0
    assert await store.plan(ready.plan_ref) == ready


async def test_correction_off_plans_no_clip() -> None:
    store = MemoryJobStore()
    event = await stored_job(store, first_pass(), audio=False)
    off = msgspec.structs.replace(event, options=JobOptions(correction="off"))
    (ready,) = await ClipHandler(store, ClipPolicy())(off)
    assert isinstance(ready, ClipsReady)
    assert ready.clips == []


async def test_missing_first_pass_fails_the_job() -> None:
    store = MemoryJobStore()
    event = await stored_job(store, first_pass())
    store.objects.clear()
    with pytest.raises(PermanentFailure) as failure:
        await ClipHandler(store, ClipPolicy())(event)
    assert failure.value.code == "words_missing"


async def test_missing_audio_fails_the_job_before_any_plan_is_stored() -> None:
    store = MemoryJobStore()
    event = await stored_job(store, first_pass(), audio=False)
    with pytest.raises(PermanentFailure) as failure:
        await ClipHandler(store, ClipPolicy())(event)
    assert failure.value.code == "audio_missing"
    assert await store.plan(names.plan_object(JOB)) is None
