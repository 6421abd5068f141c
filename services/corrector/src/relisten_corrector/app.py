"""Wiring of the corrector: its one step, ``correcting`` (clips.ready -> clip.corrected per clip); the
only service that talks to the second-pass model (in process, vLLM or any OpenAI-compatible server)."""

from __future__ import annotations

from relisten_contracts import flow
from relisten_runtime.store import nats_store_of
from relisten_runtime.worker import Worker

from relisten_corrector.backends import FasterWhisperBackend, build_backend
from relisten_corrector.handlers import CorrectionHandler
from relisten_corrector.settings import CorrectorSettings


def build_worker(settings: CorrectorSettings | None = None) -> Worker:
    settings = settings or CorrectorSettings()
    worker = Worker("corrector", settings)
    backend = build_backend(settings)
    load = getattr(backend, "load", None)
    if load is not None:
        load()  # join and load the bundled model at start-up, not on the first job
    worker.on_stop(backend.aclose)
    in_process = isinstance(backend, FasterWhisperBackend)
    handler = CorrectionHandler(
        worker,
        nats_store_of(worker),
        backend,
        concurrency=1 if in_process else settings.max_concurrency,
        batch_audio_s=settings.batch_audio_s if in_process and settings.pack_clips else None,
    )
    worker.step(flow.CORRECTING, handler)
    return worker
