"""Wiring of the notifier: two durable consumers, on job.merged and on job.failed, one handler."""

from __future__ import annotations

from relisten_contracts import Subject
from relisten_runtime.worker import FOREVER, Worker

from relisten_notifier.handlers import NotifyHandler
from relisten_notifier.settings import NotifierSettings


def build_worker(settings: NotifierSettings | None = None) -> Worker:
    """The notifier's worker; start it with ``await worker.run_forever()``."""
    settings = settings or NotifierSettings()
    worker = Worker("notifier", settings, fails_jobs=False)
    handler = NotifyHandler.from_settings(worker, settings)
    # FOREVER: the delivery schedule (RELISTEN_NOTIFY_SCHEDULE) bounds the attempts, and the event
    # comes back from NATS for each one, however many hours apart.
    worker.consume(Subject.JOB_MERGED, "notifier-merged", "notifying", handler, max_deliver=FOREVER)
    worker.consume(Subject.JOB_FAILED, "notifier-failed", "notifying", handler, max_deliver=FOREVER)
    return worker
