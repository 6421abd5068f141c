"""Wiring of the notifier: its two steps, on job.merged and on job.failed, one handler."""

from __future__ import annotations

from relisten_contracts import flow
from relisten_runtime.worker import Worker

from relisten_notifier.handlers import NotifyHandler
from relisten_notifier.settings import NotifierSettings


def build_worker(settings: NotifierSettings | None = None) -> Worker:
    """The notifier's worker; start it with ``await worker.run_forever()``."""
    settings = settings or NotifierSettings()
    worker = Worker("notifier", settings)
    handler = NotifyHandler.from_settings(worker, settings)
    # Both steps are FOREVER: the delivery schedule (RELISTEN_NOTIFY_SCHEDULE) bounds the attempts, and
    # the event comes back from NATS for each one, however many hours apart.
    worker.step(flow.NOTIFYING_MERGED, handler)
    worker.step(flow.NOTIFYING_FAILED, handler)
    return worker
