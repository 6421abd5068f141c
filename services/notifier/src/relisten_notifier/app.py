"""Wiring of the notifier: two durable consumers, on job.merged and on job.failed, one handler."""

from __future__ import annotations

from relisten_contracts import Subject
from relisten_runtime.worker import Worker

from relisten_notifier.handlers import NotifyHandler
from relisten_notifier.settings import NotifierSettings


def build_worker(settings: NotifierSettings | None = None) -> Worker:
    """The notifier's worker; start it with ``await worker.run_forever()``."""
    settings = settings or NotifierSettings()
    worker = Worker("notifier", settings, fails_jobs=False)
    handler = NotifyHandler.from_settings(worker, settings)
    worker.consume(Subject.JOB_MERGED, "notifier-merged", "notifying", handler)
    worker.consume(Subject.JOB_FAILED, "notifier-failed", "notifying", handler)
    return worker
