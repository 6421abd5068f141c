"""The job view projector: every pipeline event, one durable consumer, one compare-and-set per event.

The consumer has no delivery limit: an event that cannot be applied now (NATS unavailable, lost
compare-and-set races) is retried with backoff until it lands, so a terminal event always reaches the view.

Ingest is the only writer of the ``jobs`` KV bucket. Replicas of ingest share the durable consumer,
and compare-and-set keeps two of them from overwriting each other's update of one job. The metrics
of the pipeline are recorded here too, once per change of a view, so a redelivered event does not
count twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from relisten_contracts import Event, JobCreated, flow
from relisten_runtime.logs import job_context
from relisten_runtime.steps import NOTHING
from relisten_runtime.store import JobStore, nats_store_of
from relisten_runtime.worker import Worker

from relisten_ingest.adapters import JobViews
from relisten_ingest.metrics import IngestMetrics

log = logging.getLogger(__name__)


class JobViewProjector:
    """Applies each event to the job's view (see :func:`relisten_ingest.domain.apply_event`): the
    ``viewing`` step (:data:`relisten_contracts.flow.VIEWING`), which publishes nothing."""

    def __init__(self, store: JobStore, metrics: IngestMetrics | None = None) -> None:
        self.store = store
        self.metrics = metrics

    async def _deleted(self, event: JobCreated) -> bool:
        """Whether ``event`` is a replayed ``job.created`` of a job deleted since.

        JetStream delivers at least once: after a crash a consumer may see events it had acknowledged
        (its acknowledgement floor is not written with every ack); the deletion's marker keeps such a
        replay from bringing the view back. Job ids are never reused, so a marked job has no view."""
        return await self.store.is_deleted(event.job_id)

    async def __call__(self, event: Event) -> Sequence[Event]:
        with job_context(event.job_id):
            if isinstance(event, JobCreated) and await self._deleted(event):
                log.info("job %s was deleted; its replayed job.created makes no view", event.job_id)
                return NOTHING
            before, view = await JobViews(self.store).apply_change(event)
            if view is None:
                log.info("no view for job %s: %s ignored", event.job_id, type(event).__name__)
                return NOTHING
            if view != before:
                log.debug("job %s is %s (%.0f %%)", view.id, view.status, view.progress * 100)
                if self.metrics is not None:
                    self.metrics.observe(before, view, event)
            return NOTHING


def register_projector(worker: Worker, metrics: IngestMetrics | None = None) -> None:
    """Bind the projector to its step; call before ``worker.start()``."""
    # FOREVER (flow.VIEWING): the projector never gives up on an event (a lost job.merged or job.failed
    # would leave the view running while the notice already went out); a failing write is retried.
    worker.step(flow.VIEWING, JobViewProjector(nats_store_of(worker), metrics))
