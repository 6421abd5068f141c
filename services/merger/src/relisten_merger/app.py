"""Wiring of the merger: its two steps, on clips.ready (jobs with nothing to correct) and on
clip.corrected (``merging``: -> job.merged)."""

from __future__ import annotations

from relisten_contracts import flow
from relisten_runtime.store import nats_store_of
from relisten_runtime.worker import Worker

from relisten_merger.domain import MergePolicy
from relisten_merger.handlers import MergeHandler
from relisten_merger.settings import MergerSettings


def build_worker(settings: MergerSettings | None = None) -> Worker:
    settings = settings or MergerSettings()
    worker = Worker("merger", settings)
    policy = MergePolicy(**settings.policy_fields())  # type: ignore[arg-type]
    handler = MergeHandler(worker, nats_store_of(worker), policy)
    worker.step(flow.MERGING_PLANS, handler.on_clips_ready)
    worker.step(flow.MERGING_CLIPS, handler.on_clip_corrected)
    return worker
