"""Wiring of the asr service: one durable consumer on job.created."""

from __future__ import annotations

from relisten_contracts import Subject
from relisten_contracts.calibration import default_calibration
from relisten_runtime.worker import Worker

from relisten_asr.engines import build_engine
from relisten_asr.handlers import FirstPassHandler
from relisten_asr.settings import AsrSettings


def build_worker(settings: AsrSettings | None = None) -> Worker:
    settings = settings or AsrSettings()
    worker = Worker("asr", settings)
    engine = build_engine(settings)
    load = getattr(engine, "load", None)
    if load is not None:
        load()  # fail at start-up on a model that cannot load, not on the first job
    worker.on_stop(engine.aclose)
    calibration = default_calibration() if settings.calibrate_probability else None
    handler = FirstPassHandler(worker, engine, calibration)
    worker.consume(Subject.JOB_CREATED, "asr", "transcribing", handler)
    return worker
