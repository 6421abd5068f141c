"""The merging steps against the in-memory job store (no NATS): the last clip's answer merges, earlier
ones wait, a merged job is announced again without being rebuilt, and missing documents fail the job."""

from __future__ import annotations

import pytest
from relisten_contracts import (
    ClipCorrected,
    ClipResult,
    ClipSpec,
    ClipsReady,
    FirstPass,
    JobMerged,
    JobProgress,
    Word,
    names,
)
from relisten_merger.domain import MergePolicy
from relisten_merger.handlers import MergeHandler
from relisten_runtime.steps import RecordingPublisher
from relisten_runtime.store import MemoryJobStore
from relisten_runtime.worker import PermanentFailure

JOB = "job-merge"


def first_pass() -> FirstPass:
    words = [
        Word(word=" the", start=0.0, end=0.3, probability=0.95),
        Word(word=" cat", start=0.4, end=0.7, probability=0.3),
        Word(word=" sat", start=0.8, end=1.1, probability=0.95),
        Word(word=" down", start=5.0, end=5.3, probability=0.2),
    ]
    return FirstPass(language="en", duration_s=6.0, words=words, segments=[], engine="test", seconds=0.5)


def plan(clip_count: int) -> ClipsReady:
    spans = [(0.2, 0.9, 1, 1, 2), (4.8, 5.5, 3, 3, 4)][:clip_count]
    clips = [
        ClipSpec(
            index=index,
            start_s=start,
            end_s=end,
            start_sample=int(start * 16000),
            end_sample=int(end * 16000),
            audio_ref=names.clip_object(JOB, index),
            flagged_word_indices=[flagged],
            trigger_confidence=0.3,
            word_first=first,
            word_last=last,
        )
        for index, (start, end, flagged, first, last) in enumerate(spans)
    ]
    return ClipsReady(
        job_id=JOB,
        audio_ref=names.audio_object(JOB),
        words_ref=names.first_pass_object(JOB),
        plan_ref=names.plan_object(JOB),
        language="en",
        duration_s=6.0,
        first_pass_seconds=0.5,
        words_flagged=len(clips),
        clips=clips,
    )


def corrected(index: int, count: int) -> ClipCorrected:
    return ClipCorrected(
        job_id=JOB,
        clip_index=index,
        clip_count=count,
        plan_ref=names.plan_object(JOB),
        ok=True,
        backend="test",
        result_key=names.clip_result_key(JOB, index),
    )


async def stored(clip_count: int) -> tuple[MemoryJobStore, ClipsReady]:
    store = MemoryJobStore()
    ready = plan(clip_count)
    await store.put_first_pass(ready.words_ref, first_pass())
    await store.put_plan(ready)
    return store, ready


def answer(index: int, text: str, start: float) -> ClipResult:
    words = [
        Word(word=f" {w}", start=start + 0.2 * i, end=start + 0.2 * i + 0.15, probability=0.9)
        for i, w in enumerate(text.split())
    ]
    return ClipResult(clip_index=index, ok=True, backend="test", text=text, words=words, seconds=0.1)


async def test_the_last_answer_merges_and_earlier_ones_wait() -> None:
    store, _ = await stored(2)
    publisher = RecordingPublisher()
    handler = MergeHandler(publisher, store, MergePolicy())
    await store.put_clip_result(names.clip_result_key(JOB, 0), answer(0, "the cat sat", 0.0))
    assert await handler.on_clip_corrected(corrected(0, 2)) == ()
    assert publisher.published == [] and await store.transcript(names.transcript_object(JOB)) is None

    await store.put_clip_result(names.clip_result_key(JOB, 1), answer(1, "down", 5.0))
    (merged,) = await handler.on_clip_corrected(corrected(1, 2))
    assert isinstance(merged, JobMerged)
    assert publisher.published == [JobProgress(job_id=JOB, stage="merging", progress=0.0)]
    transcript = await store.transcript(names.transcript_object(JOB))
    assert transcript is not None
    assert merged.transcript_ref == names.transcript_object(JOB)
    assert merged.text_preview == transcript.text[:500]
    assert transcript.stats.second_pass_seconds == pytest.approx(0.2)
    assert transcript.stats.words_flagged == 2

    # A redelivery (or another clip event once merged) announces the stored transcript again.
    again = await handler.on_clip_corrected(corrected(0, 2))
    assert list(again) == [merged]
    assert len(publisher.published) == 1


async def test_a_plan_without_clips_merges_at_once_and_one_with_clips_waits() -> None:
    store, ready = await stored(0)
    publisher = RecordingPublisher()
    handler = MergeHandler(publisher, store, MergePolicy())
    (merged,) = await handler.on_clips_ready(ready)
    assert isinstance(merged, JobMerged)
    transcript = await store.transcript(names.transcript_object(JOB))
    assert transcript is not None and transcript.text == "the cat sat down"
    assert (merged.corrections_accepted, merged.words_flagged) == (0, 0)

    store, ready = await stored(2)
    assert await MergeHandler(publisher, store, MergePolicy()).on_clips_ready(ready) == ()


@pytest.mark.parametrize(("missing", "code"), [("plan", "plan_missing"), ("first_pass", "words_missing")])
async def test_missing_documents_fail_the_job(missing: str, code: str) -> None:
    store, ready = await stored(1)
    await store.put_clip_result(names.clip_result_key(JOB, 0), answer(0, "the cat sat", 0.0))
    name = ready.plan_ref if missing == "plan" else ready.words_ref
    del store.objects[("data", name)]
    with pytest.raises(PermanentFailure) as failure:
        await MergeHandler(RecordingPublisher(), store, MergePolicy()).on_clip_corrected(corrected(0, 1))
    assert failure.value.code == code
