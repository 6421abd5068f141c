"""Wiring of the clipper: one durable consumer on words.scored."""

from __future__ import annotations

from relisten_contracts import Subject
from relisten_runtime.worker import Worker

from relisten_clipper.domain import ClipPolicy
from relisten_clipper.handlers import ClipHandler
from relisten_clipper.settings import ClipperSettings


def build_worker(settings: ClipperSettings | None = None) -> Worker:
    settings = settings or ClipperSettings()
    worker = Worker("clipper", settings)
    policy = ClipPolicy(**settings.policy_fields())  # type: ignore[arg-type]
    worker.consume(Subject.WORDS_SCORED, "clipper", "clipping", ClipHandler(worker, policy))
    return worker
