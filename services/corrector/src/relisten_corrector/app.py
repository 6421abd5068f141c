"""Wiring of the corrector: its one step, ``correcting`` (clips.ready -> clip.corrected per clip); the
only service that talks to the second-pass model (in process, vLLM or any OpenAI-compatible server)."""

from __future__ import annotations

from typing import cast

from relisten_contracts import flow
from relisten_runtime.store import nats_store_of
from relisten_runtime.worker import Worker

from relisten_corrector.backends import FasterWhisperBackend, SecondPassBackend, build_backend
from relisten_corrector.batcher import CrossJobBatcher
from relisten_corrector.handlers import CorrectionHandler
from relisten_corrector.live import LiveRefineResponder
from relisten_corrector.settings import CorrectorSettings


class CorrectorWorker(Worker):
    """The worker, plus live refinement requests (core NATS request/reply) once NATS is open."""

    def __init__(self, settings: CorrectorSettings) -> None:
        super().__init__("corrector", settings)
        self.live: LiveRefineResponder | None = None

    async def start(self, *, wait_for_nats: bool = True) -> None:
        await super().start(wait_for_nats=wait_for_nats)
        if self.live is not None:
            await self.live.subscribe(self.infra.nc)


def build_worker(settings: CorrectorSettings | None = None) -> Worker:
    settings = settings or CorrectorSettings()
    worker = CorrectorWorker(settings)
    backend: SecondPassBackend = build_backend(settings)
    load = getattr(backend, "load", None)
    if load is not None:
        load()  # join and load the bundled model at start-up, not on the first job
    in_process = isinstance(backend, FasterWhisperBackend)
    packing = in_process and settings.pack_clips
    if packing and settings.batch_linger_s > 0:
        # Jobs' (and live turns') packed clips meet in shared calls; see relisten_corrector.batcher.
        backend = CrossJobBatcher(
            cast(FasterWhisperBackend, backend),
            linger_s=settings.batch_linger_s,
            max_chunks=settings.batch_max_chunks,
        )
    worker.on_stop(backend.aclose)
    worker.live = LiveRefineResponder(backend, pack=packing)
    handler = CorrectionHandler(
        worker,
        nats_store_of(worker),
        backend,
        concurrency=1 if in_process else settings.max_concurrency,
        batch_audio_s=settings.batch_audio_s if packing else None,
    )
    worker.step(flow.CORRECTING, handler, concurrency=settings.concurrent_jobs)
    return worker
