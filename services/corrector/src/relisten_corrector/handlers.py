"""clips.ready -> second pass on every clip -> one clip.corrected per clip.

A clip whose backend finally fails is recorded as not ok (the merger marks it ``unresolved``) and the job
goes on. Results go to the clips KV before the event, so a redelivered clips.ready skips finished clips.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, cast

import numpy as np
from relisten_contracts import (
    ClipCorrected,
    ClipResult,
    ClipSpec,
    ClipsReady,
    ErrorInfo,
    Event,
    JobProgress,
    Word,
    names,
)
from relisten_runtime.audio import SAMPLE_RATE, pcm16_to_float
from relisten_runtime.steps import NOTHING, Publisher
from relisten_runtime.store import JobStore

from relisten_corrector.backends import SecondPassAnswer, SecondPassBackend
from relisten_corrector.batcher import CrossJobBatcher

log = logging.getLogger(__name__)


PROMPT_CONTEXT_CHARS = 400
"""Whisper keeps only the last ~223 prompt tokens, so the context is trimmed and the glossary goes last."""


def second_pass_prompt(glossary: str | None, context: str) -> str | None:
    """The first-pass text before the clip, then the job's glossary (last, so truncation never drops it)."""
    context = context.strip()[-PROMPT_CONTEXT_CHARS:]
    parts = [part.strip() for part in (context, glossary) if part and part.strip()]
    return " ".join(parts) or None


def shift_words(words: list[Word] | None, offset_s: float, clip_length_s: float) -> list[Word] | None:
    """Clip-relative word times to job times, clamped to the clip."""
    if words is None:
        return None
    return [
        Word(
            word=w.word,
            start=offset_s + min(max(w.start, 0.0), clip_length_s),
            end=offset_s + min(max(w.end, w.start, 0.0), clip_length_s),
            probability=w.probability,
        )
        for w in words
    ]


def answered(
    clip_index: int, backend: str, answer: SecondPassAnswer, start_s: float, length_s: float, seconds: float
) -> ClipResult:
    """What is stored for a clip the backend answered: its words moved onto the job's timeline."""
    return ClipResult(
        clip_index=clip_index,
        ok=True,
        backend=backend,
        text=answer.text,
        words=shift_words(answer.words, start_s, length_s),
        seconds=seconds,
        audio_seconds=length_s,
    )


class BatchingBackend(SecondPassBackend, Protocol):
    """A backend that decodes many clips in one call (faster-whisper in process, packed)."""

    async def transcribe_many(
        self, clips: Sequence[np.ndarray], *, prompt: str | None, language: str | None
    ) -> list[SecondPassAnswer]: ...


class BatchDecoder(Protocol):
    """Decodes a batch of clips: their answers, and the model's own seconds when the backend knows them
    (``transcribe_many_timed``; ``transcribe_whole`` for stretches re-heard whole)."""

    async def __call__(
        self, clips: Sequence[np.ndarray], *, prompt: str | None, language: str | None
    ) -> tuple[list[SecondPassAnswer], float | None]: ...


@dataclass
class CorrectionHandler:
    """The ``correcting`` step (:data:`relisten_contracts.flow.CORRECTING`). Each clip's answer is
    announced through the publisher as soon as it is stored, so the handler returns nothing itself."""

    publisher: Publisher
    store: JobStore
    backend: SecondPassBackend
    concurrency: int = 1
    """Clips of one job decoded at once, one call each, when the backend does not batch: 1 for an
    in-process model, more for a remote server."""
    batch_audio_s: float | None = None
    """When set and the backend can batch, the job's clips are decoded in batches of about this much
    audio, each batch in one call; results are stored and announced batch by batch."""

    async def __call__(self, event: ClipsReady) -> Sequence[Event]:
        if not event.clips:
            return NOTHING
        batching = self._batching_backend()
        if batching is None:
            await self._progress(event)
            gate = asyncio.Semaphore(self.concurrency)

            async def correct(clip: ClipSpec) -> None:
                async with gate:
                    await self._correct(event, clip)

            await asyncio.gather(*(correct(clip) for clip in event.clips))
            return NOTHING
        if isinstance(batching, CrossJobBatcher):
            # Announced at once, so that a call finding the model free waits a little for this job.
            async with batching.requester() as requester:
                await self._correct_in_batches(event, requester)
        else:
            await self._correct_in_batches(event, batching)
        return NOTHING

    async def _progress(self, event: ClipsReady) -> None:
        await self.publisher.publish(JobProgress(job_id=event.job_id, stage="correcting", progress=0.0))

    async def _correct_in_batches(self, event: ClipsReady, batching: BatchingBackend) -> None:
        await self._progress(event)
        missing: list[ClipSpec] = []
        for clip in event.clips:
            stored = await self.store.clip_result(names.clip_result_key(event.job_id, clip.index))
            if stored is None:
                missing.append(clip)
            else:
                await self._announce(event, clip, stored)
        whole = self._whole_decoder()
        if whole is not None:
            # Stretches re-heard whole go apart from the windows: each is decoded as the first pass decodes.
            for batch in self._batches([clip for clip in missing if clip.whole]):
                await self._store_batch(event, batch, await self._run_batch(whole, event, batch))
            missing = [clip for clip in missing if not clip.whole]
        for batch in self._batches(missing):
            await self._store_batch(
                event, batch, await self._run_batch(self._decoder(batching), event, batch)
            )

    async def _store_batch(self, event: ClipsReady, batch: list[ClipSpec], results: list[ClipResult]) -> None:
        for clip, result in zip(batch, results, strict=True):
            await self.store.put_clip_result(names.clip_result_key(event.job_id, clip.index), result)
            await self._announce(event, clip, result)

    @staticmethod
    def _decoder(backend: BatchingBackend) -> BatchDecoder:
        timed = getattr(backend, "transcribe_many_timed", None)
        if callable(timed):
            # The model's own time: not the wait for it (other jobs first) nor other jobs' share.
            return cast(BatchDecoder, timed)

        async def untimed(
            clips: Sequence[np.ndarray], *, prompt: str | None, language: str | None
        ) -> tuple[list[SecondPassAnswer], float | None]:
            return await backend.transcribe_many(clips, prompt=prompt, language=language), None

        return untimed

    def _batching_backend(self) -> BatchingBackend | None:
        if self.batch_audio_s is None or not callable(getattr(self.backend, "transcribe_many", None)):
            return None
        return cast(BatchingBackend, self.backend)

    def _whole_decoder(self) -> BatchDecoder | None:
        whole = getattr(self.backend, "transcribe_whole", None)
        return cast(BatchDecoder, whole) if callable(whole) else None

    def _batches(self, clips: list[ClipSpec]) -> list[list[ClipSpec]]:
        limit = self.batch_audio_s or float("inf")
        batches: list[list[ClipSpec]] = []
        total = 0.0
        for clip in clips:
            length = clip.end_s - clip.start_s
            if batches and total + length <= limit:
                batches[-1].append(clip)
                total += length
            else:
                batches.append([clip])
                total = length
        return batches

    async def _correct(self, event: ClipsReady, clip: ClipSpec) -> None:
        key = names.clip_result_key(event.job_id, clip.index)
        result = await self.store.clip_result(key)
        if result is None:
            result = await self._run_second_pass(event, clip)
            await self.store.put_clip_result(key, result)
        await self._announce(event, clip, result)

    async def _announce(self, event: ClipsReady, clip: ClipSpec, result: ClipResult) -> None:
        await self.publisher.publish(
            ClipCorrected(
                job_id=event.job_id,
                clip_index=clip.index,
                clip_count=len(event.clips),
                plan_ref=event.plan_ref,
                ok=result.ok,
                backend=result.backend,
                result_key=names.clip_result_key(event.job_id, clip.index),
                seconds=result.seconds,
                error=result.error,
                options=event.options,
            )
        )

    async def _load_clip(self, clip: ClipSpec) -> np.ndarray:
        return pcm16_to_float(await self.store.audio_pcm(clip.audio_ref, "clip"))

    async def _run_batch(
        self, decode: BatchDecoder, event: ClipsReady, clips: list[ClipSpec]
    ) -> list[ClipResult]:
        audios = [await self._load_clip(clip) for clip in clips]
        lengths = [len(audio) / SAMPLE_RATE for audio in audios]
        started = time.perf_counter()
        prompt = second_pass_prompt(event.options.prompt, "")
        language = event.language or event.options.language
        try:
            answers, model_seconds = await decode(audios, prompt=prompt, language=language)
        except Exception as exc:
            log.warning("job %s: batched second pass of %d clips failed: %r", event.job_id, len(clips), exc)
            seconds = time.perf_counter() - started
            code = getattr(exc, "code", "second_pass_failed")
            error = ErrorInfo(code=str(code), message=str(exc) or type(exc).__name__)
            return [
                ClipResult(
                    clip_index=clip.index,
                    ok=False,
                    backend=self.backend.name,
                    text="",
                    seconds=seconds / len(clips),
                    audio_seconds=length,
                    error=error,
                )
                for clip, length in zip(clips, lengths, strict=True)
            ]
        seconds = time.perf_counter() - started if model_seconds is None else model_seconds
        total = sum(lengths) or 1.0
        log.info(
            "job %s: %d clips, %.1f s of audio, re-decoded in one batch in %.1f s",
            event.job_id,
            len(clips),
            sum(lengths),
            seconds,
        )
        # The batch's time is shared among its clips by length, so the clips' seconds add up to it.
        return [
            answered(clip.index, self.backend.name, answer, clip.start_s, length, seconds * length / total)
            for clip, answer, length in zip(clips, answers, lengths, strict=True)
        ]

    async def _run_second_pass(self, event: ClipsReady, clip: ClipSpec) -> ClipResult:
        audio = await self._load_clip(clip)
        clip_length_s = len(audio) / SAMPLE_RATE
        started = time.perf_counter()
        language = event.language or event.options.language
        whole = self._whole_decoder() if clip.whole else None
        try:
            if whole is not None:
                # Heard as the first pass hears a recording: no preceding text, only the glossary.
                (answer,), _ = await whole(
                    [audio], prompt=second_pass_prompt(event.options.prompt, ""), language=language
                )
            else:
                answer = await self.backend.transcribe(
                    audio,
                    prompt=second_pass_prompt(event.options.prompt, clip.context_prompt),
                    language=language,
                )
        except Exception as exc:
            # The backend already retried what was worth retrying: this clip stays as the first pass heard it.
            log.warning("job %s clip %d: second pass failed: %r", event.job_id, clip.index, exc)
            code = getattr(exc, "code", "second_pass_failed")
            return ClipResult(
                clip_index=clip.index,
                ok=False,
                backend=self.backend.name,
                text="",
                seconds=time.perf_counter() - started,
                audio_seconds=clip_length_s,
                error=ErrorInfo(code=str(code), message=str(exc) or type(exc).__name__),
            )
        seconds = time.perf_counter() - started
        log.info(
            "job %s clip %d: %.1f s of audio re-decoded in %.1f s",
            event.job_id,
            clip.index,
            clip_length_s,
            seconds,
        )
        return answered(clip.index, self.backend.name, answer, clip.start_s, clip_length_s, seconds)
