"""The corrector's handler against the in-memory job store (no NATS): batched decoding of a job's clips, idempotency, one
clip.corrected per clip, the per-clip path for backends that cannot batch, and concurrent jobs meeting in the
cross-job batcher."""

from __future__ import annotations

import asyncio
import io
import wave
from collections.abc import Sequence

import msgspec
import numpy as np
import pytest
from relisten_contracts import (
    ClipCorrected,
    ClipResult,
    ClipSpec,
    ClipsReady,
    JobOptions,
    JobProgress,
    Word,
    names,
)
from relisten_corrector.backends import SecondPassAnswer
from relisten_corrector.batcher import CrossJobBatcher
from relisten_corrector.handlers import CorrectionHandler
from relisten_runtime.steps import RecordingPublisher
from relisten_runtime.store import MemoryJobStore
from relisten_runtime.worker import PermanentFailure

RATE = 16000


def wav(seconds: float) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(RATE)
        file.writeframes(np.zeros(int(seconds * RATE), dtype="<i2").tobytes())
    return out.getvalue()


async def stored_clips(blobs: dict[str, bytes]) -> tuple[MemoryJobStore, RecordingPublisher]:
    store = MemoryJobStore()
    for ref, data in blobs.items():
        await store.put_audio(ref, data)
    return store, RecordingPublisher()


async def result(store: MemoryJobStore, index: int) -> ClipResult:
    found = await store.clip_result(names.clip_result_key("job", index))
    assert found is not None
    return found


class BatchingBackend:
    name = "fake:batched"

    def __init__(self) -> None:
        self.calls: list[int] = []

    async def transcribe(
        self, audio: np.ndarray, *, prompt: str | None, language: str | None
    ) -> SecondPassAnswer:
        raise AssertionError("a batching backend is asked once per batch")

    async def transcribe_many(
        self, clips: Sequence[np.ndarray], *, prompt: str | None, language: str | None
    ) -> list[SecondPassAnswer]:
        self.calls.append(len(clips))
        return [
            SecondPassAnswer(
                text=f"clip of {len(clip) / RATE:.1f}",
                words=[Word(word="heard", start=0.1, end=0.4, probability=0.9)],
            )
            for clip in clips
        ]

    async def aclose(self) -> None:
        return None


class PerClipBackend:
    name = "fake:per-clip"

    def __init__(self) -> None:
        self.prompts: list[str | None] = []

    async def transcribe(
        self, audio: np.ndarray, *, prompt: str | None, language: str | None
    ) -> SecondPassAnswer:
        self.prompts.append(prompt)
        return SecondPassAnswer(text="said", words=None)

    async def aclose(self) -> None:
        return None


def job(lengths: list[float], job_id: str = "job") -> tuple[ClipsReady, dict[str, bytes]]:
    clips, blobs, cursor = [], {}, 0.0
    for index, length in enumerate(lengths):
        ref = f"{job_id}/clips/{index:04d}.wav"
        blobs[ref] = wav(length)
        clips.append(
            ClipSpec(
                index=index,
                start_s=cursor,
                end_s=cursor + length,
                start_sample=int(cursor * RATE),
                end_sample=int((cursor + length) * RATE),
                audio_ref=ref,
                flagged_word_indices=[index],
                trigger_confidence=0.2,
                context_prompt=f"before {index}",
            )
        )
        cursor += length + 10.0
    ready = ClipsReady(
        job_id=job_id,
        audio_ref=f"{job_id}/audio.wav",
        words_ref=f"{job_id}/words.json",
        plan_ref=f"{job_id}/plan.json",
        language="en",
        duration_s=cursor,
        first_pass_seconds=1.0,
        words_flagged=len(lengths),
        clips=clips,
        options=JobOptions(prompt="Quilter"),
    )
    return ready, blobs


def corrected(publisher: RecordingPublisher) -> list[ClipCorrected]:
    return [event for event in publisher.published if isinstance(event, ClipCorrected)]


async def test_a_job_s_clips_are_decoded_in_batches_and_announced_one_by_one() -> None:
    ready, blobs = job([3.0, 2.0, 4.0, 1.0])
    store, publisher = await stored_clips(blobs)
    backend = BatchingBackend()
    handler = CorrectionHandler(publisher, store, backend, batch_audio_s=6.0)
    await handler(ready)

    assert backend.calls == [2, 2]  # 3 + 2 s, then 4 + 1 s
    assert sorted(e.clip_index for e in corrected(publisher)) == [0, 1, 2, 3]
    results = {index: await result(store, index) for index in range(4)}
    assert all(r.ok and r.backend == "fake:batched" for r in results.values())
    # Word times move onto the job's timeline; each clip's text is its own.
    assert results[2].words is not None and results[2].words[0].start == pytest.approx(
        ready.clips[2].start_s + 0.1
    )
    assert results[2].text == "clip of 4.0"
    # The batch's time is shared among its clips by length.
    first_batch = results[0].seconds + results[1].seconds
    assert results[0].seconds == pytest.approx(first_batch * 3 / 5)


async def test_a_redelivered_job_decodes_only_what_is_missing() -> None:
    ready, blobs = job([3.0, 2.0, 4.0])
    store, publisher = await stored_clips(blobs)
    stored = ClipResult(clip_index=1, ok=True, backend="earlier", text="kept", seconds=1.0)
    await store.put_clip_result(names.clip_result_key("job", 1), stored)
    backend = BatchingBackend()
    handler = CorrectionHandler(publisher, store, backend, batch_audio_s=240.0)
    await handler(ready)

    assert backend.calls == [2]
    assert await result(store, 1) == stored
    assert sorted(e.clip_index for e in corrected(publisher)) == [0, 1, 2]
    assert next(e for e in corrected(publisher) if e.clip_index == 1).backend == "earlier"

    # Everything stored: nothing decoded, every clip announced again (the stream drops duplicates).
    publisher.published.clear()
    await handler(ready)
    assert backend.calls == [2]
    assert sorted(e.clip_index for e in corrected(publisher)) == [0, 1, 2]


async def test_a_failing_batch_leaves_its_clips_unresolved() -> None:
    ready, blobs = job([3.0, 2.0])
    store, publisher = await stored_clips(blobs)

    class Broken(BatchingBackend):
        async def transcribe_many(
            self, clips: Sequence[np.ndarray], *, prompt: str | None, language: str | None
        ) -> list[SecondPassAnswer]:
            raise RuntimeError("out of memory")

    handler = CorrectionHandler(publisher, store, Broken(), batch_audio_s=240.0)
    await handler(ready)
    results = [await result(store, index) for index in range(len(store.keys))]
    assert len(results) == 2 and not any(r.ok for r in results)
    assert all(r.error is not None and "out of memory" in r.error.message for r in results)
    assert all(not e.ok for e in corrected(publisher))


async def test_without_batching_each_clip_is_asked_alone_with_its_context() -> None:
    ready, blobs = job([3.0, 2.0])
    store, publisher = await stored_clips(blobs)
    backend = PerClipBackend()
    handler = CorrectionHandler(publisher, store, backend, concurrency=2)
    await handler(ready)
    assert sorted(backend.prompts, key=str) == ["before 0 Quilter", "before 1 Quilter"]
    assert sorted(e.clip_index for e in corrected(publisher)) == [0, 1]


async def test_the_job_is_announced_as_correcting_first_and_a_missing_clip_fails_it() -> None:
    ready, blobs = job([3.0, 2.0])
    store, publisher = await stored_clips({ref: data for ref, data in blobs.items() if "0001" not in ref})
    with pytest.raises(PermanentFailure) as failure:
        await CorrectionHandler(publisher, store, PerClipBackend())(ready)
    assert failure.value.code == "clip_missing"
    assert publisher.published[0] == JobProgress(job_id="job", stage="correcting", progress=0.0)
    # The clip that was there is answered and announced; the job fails on the missing one.
    assert [e.clip_index for e in corrected(publisher)] == [0]


async def test_a_plan_without_clips_is_not_the_corrector_s() -> None:
    ready, _ = job([])
    store, publisher = await stored_clips({})
    assert await CorrectionHandler(publisher, store, PerClipBackend())(ready) == ()
    assert publisher.published == []


class TogetherModel:
    """Stands in for the in-process model behind the cross-job batcher: one call for several jobs."""

    name = "fake:together"

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.whole: list[int] = []

    def chunk_count(self, clips: Sequence[np.ndarray]) -> int:
        return 1

    async def transcribe(
        self, audio: np.ndarray, *, prompt: str | None, language: str | None
    ) -> SecondPassAnswer:
        raise AssertionError("packed clips only")

    async def transcribe_together(
        self, requests: Sequence[Sequence[np.ndarray]], *, prompt: str | None, language: str | None
    ) -> list[list[SecondPassAnswer]]:
        self.calls.append([len(clips) for clips in requests])
        return [
            [SecondPassAnswer(text=f"clip of {len(clip) / RATE:.1f}", words=[]) for clip in clips]
            for clips in requests
        ]

    async def transcribe_whole(
        self, clips: Sequence[np.ndarray], *, prompt: str | None, language: str | None
    ) -> tuple[list[SecondPassAnswer], float]:
        self.whole.append(len(clips))
        return [SecondPassAnswer(text="whole", words=[]) for _ in clips], 0.5

    async def aclose(self) -> None:
        return None


async def test_concurrent_jobs_meet_in_one_call_and_each_stores_its_own_answers() -> None:
    first, first_blobs = job([3.0, 2.0], job_id="job-a")
    second, second_blobs = job([1.0, 4.0, 5.0], job_id="job-b")
    store, publisher = await stored_clips(first_blobs | second_blobs)
    model = TogetherModel()
    # A linger no test could sit through: the first job's call waits for the second, announced job.
    batcher = CrossJobBatcher(model, linger_s=3600.0, max_chunks=8)
    handler = CorrectionHandler(publisher, store, batcher, batch_audio_s=240.0)
    await asyncio.wait_for(asyncio.gather(handler(first), handler(second)), 30.0)

    assert model.calls == [[2, 3]]
    for ready, lengths in ((first, [3.0, 2.0]), (second, [1.0, 4.0, 5.0])):
        for clip, length in zip(ready.clips, lengths, strict=True):
            stored = await store.clip_result(names.clip_result_key(ready.job_id, clip.index))
            assert stored is not None and stored.ok and stored.text == f"clip of {length:.1f}"
        announced = [e for e in corrected(publisher) if e.job_id == ready.job_id]
        assert sorted(e.clip_index for e in announced) == list(range(len(lengths)))

    # Redelivered, each job reuses its stored answers: no new call.
    await asyncio.wait_for(asyncio.gather(handler(first), handler(second)), 30.0)
    assert model.calls == [[2, 3]]


class WholeAwareBackend(BatchingBackend):
    """Batches usual clips and decodes each stretch re-heard whole on its own."""

    name = "fake:whole-aware"

    def __init__(self) -> None:
        super().__init__()
        self.whole: list[tuple[list[float], str | None]] = []

    async def transcribe_whole(
        self, clips: Sequence[np.ndarray], *, prompt: str | None, language: str | None
    ) -> tuple[list[SecondPassAnswer], float]:
        self.whole.append(([len(clip) / RATE for clip in clips], prompt))
        answer = SecondPassAnswer(
            text="whole", words=[Word(word="whole", start=0.2, end=0.5, probability=0.9)]
        )
        return [answer for _ in clips], 1.5


def with_whole(ready: ClipsReady, indices: set[int]) -> ClipsReady:
    clips = [msgspec.structs.replace(clip, whole=clip.index in indices) for clip in ready.clips]
    return msgspec.structs.replace(ready, clips=clips)


async def test_a_stretch_re_heard_whole_is_decoded_on_its_own_without_context() -> None:
    ready, blobs = job([3.0, 20.0, 2.0, 12.0])
    ready = with_whole(ready, {1, 3})
    store, publisher = await stored_clips(blobs)
    backend = WholeAwareBackend()
    await CorrectionHandler(publisher, store, backend, batch_audio_s=60.0)(ready)

    # The stretches in a call of their own, prompted with the glossary only (as the first pass is); the
    # other clips batched as usual.
    assert backend.whole == [([20.0, 12.0], "Quilter")]
    assert backend.calls == [2]
    assert sorted(e.clip_index for e in corrected(publisher)) == [0, 1, 2, 3]
    stretch = await result(store, 1)
    assert stretch.ok and stretch.text == "whole"
    assert stretch.words is not None and stretch.words[0].start == pytest.approx(ready.clips[1].start_s + 0.2)
    # The call's model seconds are shared among the stretches by length.
    assert stretch.seconds == pytest.approx(1.5 * 20 / 32)
    assert (await result(store, 0)).text == "clip of 3.0"

    # Redelivered: nothing is decoded again.
    await CorrectionHandler(publisher, store, backend, batch_audio_s=60.0)(ready)
    assert len(backend.whole) == 1 and backend.calls == [2]


async def test_without_a_whole_decoder_a_stretch_is_a_clip_like_the_others() -> None:
    ready, blobs = job([3.0, 20.0])
    ready = with_whole(ready, {1})
    store, publisher = await stored_clips(blobs)
    backend = PerClipBackend()
    await CorrectionHandler(publisher, store, backend)(ready)
    assert backend.prompts == ["before 0 Quilter", "before 1 Quilter"]
    assert (await result(store, 1)).ok


async def test_stretches_meet_the_cross_job_batcher_and_go_straight_to_the_model() -> None:
    ready, blobs = job([3.0, 20.0])
    ready = with_whole(ready, {1})
    store, publisher = await stored_clips(blobs)
    model = TogetherModel()
    batcher = CrossJobBatcher(model, linger_s=0.0, max_chunks=8)
    await CorrectionHandler(publisher, store, batcher, batch_audio_s=60.0)(ready)
    # The stretch goes straight to the model's whole decode, the window through a shared call.
    assert model.whole == [1] and model.calls == [[1]]
    assert (await result(store, 1)).text == "whole" and (await result(store, 0)).text == "clip of 3.0"
