"""job.created -> first pass -> words.scored. Thin: storage and events around the engine."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import msgspec
from nats.js.errors import NotFoundError
from relisten_contracts import FirstPass, JobCreated, JobProgress, encode, names, words_scored
from relisten_contracts.calibration import Calibration, calibrated
from relisten_runtime.audio import pcm16_to_float
from relisten_runtime.infra import Infra
from relisten_runtime.remote import RemoteCallError as EngineError
from relisten_runtime.stored_audio import load_pcm
from relisten_runtime.worker import PermanentFailure, Worker

from relisten_asr.engines import FirstPassEngine
from relisten_asr.hallucination import unsure_warning
from relisten_asr.language import LanguageRouter

log = logging.getLogger(__name__)

PROGRESS_STEP = 0.1
"""Publish transcription progress in steps of this fraction, not per segment."""


def first_pass_ref(job_id: str) -> str:
    return names.first_pass_object(job_id)


@dataclass
class FirstPassHandler:
    worker: Worker
    engine: FirstPassEngine
    router: LanguageRouter | None = None
    """Language identification and routing (:mod:`relisten_asr.language`); None: ``engine`` alone."""
    calibration: Calibration | None = None
    """When set, words get calibrated probabilities (the model's own kept in ``raw_probability``)."""

    @property
    def infra(self) -> Infra:
        return self.worker.infra

    async def __call__(self, event: JobCreated) -> None:
        if event.source == "live":
            # A finished realtime session: transcribed as it was spoken, merged by ingest already.
            log.info("job %s: a live session's job, nothing to transcribe", event.job_id)
            return
        ref = first_pass_ref(event.job_id)
        existing = await self._stored_first_pass(ref)
        if existing is None:
            existing = await self._transcribe(event, ref)
        else:
            log.info("job %s: first pass already stored, re-announcing it", event.job_id)
        await self.infra.publish(
            words_scored(
                event.job_id, existing, audio_ref=event.audio_ref, words_ref=ref, options=event.options
            )
        )

    async def _stored_first_pass(self, ref: str) -> FirstPass | None:
        try:
            data = await self.infra.get_blob(self.infra.data, ref)
        except NotFoundError:
            return None
        return msgspec.json.decode(data, type=FirstPass)

    async def _transcribe(self, event: JobCreated, ref: str) -> FirstPass:
        await self.infra.publish(JobProgress(job_id=event.job_id, stage="transcribing", progress=0.0))
        audio = pcm16_to_float(await load_pcm(self.infra, event.audio_ref))

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
        await self.infra.data.put(ref, encode(result))
        return result

    def _publish_progress(self, job_id: str, fraction: float, pending: set[asyncio.Task[None]]) -> None:
        task = asyncio.ensure_future(
            self.infra.publish(JobProgress(job_id=job_id, stage="transcribing", progress=round(fraction, 2)))
        )
        pending.add(task)
        task.add_done_callback(pending.discard)
