"""job.created -> first pass -> words.scored. Thin: storage and events around the engine."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
from relisten_contracts import Event, FirstPass, JobCreated, JobProgress, names, words_scored
from relisten_contracts.calibration import Calibration, calibrated
from relisten_runtime.audio import pcm16_to_float
from relisten_runtime.steps import Publisher
from relisten_runtime.store import JobStore
from relisten_runtime.worker import PermanentFailure
from relisten_speech.errors import SpeechError as EngineError

from relisten_asr.engines import FirstPassEngine
from relisten_asr.hallucination import unsure_warning
from relisten_asr.language import LanguageRouter

log = logging.getLogger(__name__)

PROGRESS_STEP = 0.1
"""Publish transcription progress in steps of this fraction, not per segment."""


@dataclass
class FirstPassHandler:
    """The ``transcribing`` step (:data:`relisten_contracts.flow.TRANSCRIBING`)."""

    publisher: Publisher
    """For ``job.progress`` while the first pass runs."""
    store: JobStore
    engine: FirstPassEngine
    router: LanguageRouter | None = None
    """Language identification and routing (:mod:`relisten_asr.language`); None: ``engine`` alone."""
    calibration: Calibration | None = None
    """When set, words get calibrated probabilities (the model's own kept in ``raw_probability``)."""

    async def __call__(self, event: JobCreated) -> Sequence[Event]:
        if event.source == "live":
            # A finished realtime session: transcribed as it was spoken, merged by ingest already.
            log.info("job %s: a live session's job, nothing to transcribe", event.job_id)
            return []
        ref = names.first_pass_object(event.job_id)
        existing = await self.store.first_pass(ref)
        if existing is None:
            existing = await self._transcribe(event, ref)
        else:
            log.info("job %s: first pass already stored, re-announcing it", event.job_id)
        return [
            words_scored(
                event.job_id, existing, audio_ref=event.audio_ref, words_ref=ref, options=event.options
            )
        ]

    async def _transcribe(self, event: JobCreated, ref: str) -> FirstPass:
        await self.publisher.publish(JobProgress(job_id=event.job_id, stage="transcribing", progress=0.0))
        audio = pcm16_to_float(await self.store.audio_pcm(event.audio_ref))

        loop = asyncio.get_running_loop()
        reported = [0.0]
        pending: set[asyncio.Task[None]] = set()

        def on_progress(fraction: float) -> None:
            # Called from the engine's thread: hop back onto the loop to publish.
            step = int(fraction / PROGRESS_STEP) * PROGRESS_STEP
            if step > reported[0] and step < 1.0:
                reported[0] = step
                loop.call_soon_threadsafe(self._publish_progress, event.job_id, step, pending)

        started = time.perf_counter()
        try:
            if self.router is not None:
                result = await self.router.first_pass(audio, event.options, on_progress)
            else:
                result = await self.engine.transcribe(
                    audio,
                    language=event.options.language,
                    prompt=event.options.prompt,
                    on_progress=on_progress,
                )
        except EngineError as exc:
            if exc.retryable:
                raise
            raise PermanentFailure(exc.code, exc.message) from exc
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        if self.calibration is not None:
            result = calibrated(result, self.calibration)
        unsure = unsure_warning(result.words, event.options.confidence_threshold)
        if unsure is not None:
            result = msgspec.structs.replace(result, warnings=[*result.warnings, unsure])
        log.info(
            "job %s: first pass %d words in %.1f s (%.1f s of audio)",
            event.job_id,
            len(result.words),
            time.perf_counter() - started,
            result.duration_s,
        )
        await self.store.put_first_pass(ref, result)
        return result

    def _publish_progress(self, job_id: str, fraction: float, pending: set[asyncio.Task[None]]) -> None:
        task = asyncio.ensure_future(
            self.publisher.publish(
                JobProgress(job_id=job_id, stage="transcribing", progress=round(fraction, 2))
            )
        )
        pending.add(task)
        task.add_done_callback(pending.discard)
