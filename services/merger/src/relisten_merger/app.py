"""Wiring of the merger: consumers on clips.ready (jobs with nothing to correct) and clip.corrected."""

from __future__ import annotations

from relisten_contracts import Subject
from relisten_runtime.worker import Worker

from relisten_merger.domain import MergePolicy
from relisten_merger.handlers import MergeHandler
from relisten_merger.settings import MergerSettings


def build_worker(settings: MergerSettings | None = None) -> Worker:
    settings = settings or MergerSettings()
    worker = Worker("merger", settings)
    handler = MergeHandler(worker, MergePolicy(**settings.policy_fields()))  # type: ignore[arg-type]
    worker.consume(Subject.CLIPS_READY, "merger-plans", "merging", handler.on_clips_ready)
    worker.consume(Subject.CLIP_CORRECTED, "merger-clips", "merging", handler.on_clip_corrected)
    return worker
