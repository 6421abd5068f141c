"""clips.ready -> second pass on every clip -> one clip.corrected per clip.

A clip whose backend finally fails is recorded as not ok (the merger marks it ``unresolved``) and the job
goes on. Results go to the clips KV before the event, so a redelivered clips.ready skips finished clips.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import msgspec
import numpy as np
from nats.js.errors import KeyNotFoundError, NotFoundError
from relisten_contracts import (
    ClipCorrected,
    ClipResult,
    ClipSpec,
    ClipsReady,
    ErrorInfo,
    JobProgress,
    Word,
    encode,
)
from relisten_runtime.audio import NotNormalisedAudio, pcm_from_wav
from relisten_runtime.infra import Infra
from relisten_runtime.worker import PermanentFailure, Worker

from relisten_corrector.backends import SecondPassBackend

log = logging.getLogger(__name__)


def result_key(job_id: str, clip_index: int) -> str:
    return f"{job_id}.{clip_index}"


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


@dataclass
class CorrectionHandler:
    worker: Worker
    backend: SecondPassBackend
    concurrency: int = 1
    """Clips of one job decoded at once: 1 for an in-process model (it decodes one clip at a time, and
    timing each clip alone keeps ``second_pass_seconds`` honest), more for a remote server."""

    @property
    def infra(self) -> Infra:
        return self.worker.infra

    async def __call__(self, event: ClipsReady) -> None:
        if not event.clips:
            return
        await self.infra.publish(JobProgress(job_id=event.job_id, stage="correcting", progress=0.0))
        gate = asyncio.Semaphore(self.concurrency)

        async def correct(clip: ClipSpec) -> None:
            async with gate:
                await self._correct(event, clip)

        await asyncio.gather(*(correct(clip) for clip in event.clips))

    async def _correct(self, event: ClipsReady, clip: ClipSpec) -> None:
        key = result_key(event.job_id, clip.index)
        result = await self._stored(key)
        if result is None:
            result = await self._run_second_pass(event, clip)
            await self.infra.clips.put(key, encode(result))
        await self.infra.publish(
            ClipCorrected(
                job_id=event.job_id,
                clip_index=clip.index,
                clip_count=len(event.clips),
                plan_ref=event.plan_ref,
                ok=result.ok,
                backend=result.backend,
                result_key=key,
                seconds=result.seconds,
                error=result.error,
                options=event.options,
            )
        )

    async def _stored(self, key: str) -> ClipResult | None:
        try:
            entry = await self.infra.clips.get(key)
        except KeyNotFoundError:
            return None
        return msgspec.json.decode(entry.value or b"", type=ClipResult)

    async def _run_second_pass(self, event: ClipsReady, clip: ClipSpec) -> ClipResult:
        try:
            pcm = pcm_from_wav(await self.infra.get_blob(self.infra.audio, clip.audio_ref))
        except NotFoundError as exc:
            raise PermanentFailure("clip_missing", f"clip {clip.audio_ref} is not stored") from exc
        except NotNormalisedAudio as exc:
            raise PermanentFailure("clip_invalid", f"clip {clip.audio_ref} is unusable: {exc}") from exc
        audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        clip_length_s = len(audio) / 16000
        started = time.perf_counter()
        try:
            answer = await self.backend.transcribe(
                audio,
                prompt=second_pass_prompt(event.options.prompt, clip.context_prompt),
                language=event.language or event.options.language,
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
        return ClipResult(
            clip_index=clip.index,
            ok=True,
            backend=self.backend.name,
            text=answer.text,
            words=shift_words(answer.words, clip.start_s, clip_length_s),
            seconds=seconds,
            audio_seconds=clip_length_s,
        )
