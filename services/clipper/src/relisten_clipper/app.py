"""Wiring of the clipper: its one step, ``clipping`` (words.scored -> clips.ready)."""

from __future__ import annotations

from relisten_contracts import flow
from relisten_runtime.store import nats_store_of
from relisten_runtime.worker import Worker

from relisten_clipper.domain import ClipPolicy
from relisten_clipper.handlers import ClipHandler
from relisten_clipper.settings import ClipperSettings


def build_worker(settings: ClipperSettings | None = None) -> Worker:
    settings = settings or ClipperSettings()
    worker = Worker("clipper", settings)
    policy = ClipPolicy(**settings.policy_fields())  # type: ignore[arg-type]
    worker.step(flow.CLIPPING, ClipHandler(nats_store_of(worker), policy))
    return worker
