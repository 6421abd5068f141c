"""What the API process holds while it runs: settings, the worker (NATS handles plus the view
projector), the decode slots and the metrics.

The worker is started in the background and retried until NATS answers, so the HTTP server comes up
at once: ``/healthz`` answers immediately and ``/readyz`` says 503 until NATS is reachable, which is
what an orchestrator (or the supervisor starting NATS next to this process) expects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from relisten_runtime.addresses import without_credentials
from relisten_runtime.infra import Infra
from relisten_runtime.startup import until_nats_answers
from relisten_runtime.worker import Worker

from relisten_ingest.backlog import Backlog
from relisten_ingest.deletion import JobRunning, delete_job, expired_jobs, purge_orphan_keys
from relisten_ingest.handlers import register_projector
from relisten_ingest.languages import LanguageGate
from relisten_ingest.limits import RateLimiter, Slots
from relisten_ingest.metrics import IngestMetrics
from relisten_ingest.recovery import Watchdog
from relisten_ingest.settings import IngestSettings

log = logging.getLogger(__name__)

RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0
FIRST_SWEEP_S = 60.0


class NotReady(RuntimeError):
    """NATS is not (yet) connected."""


class IngestRuntime:
    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self.decode_slots = asyncio.Semaphore(settings.decode_concurrency)
        self.metrics = IngestMetrics()
        self.languages = LanguageGate()
        self.backlog = Backlog()
        self.upload_slots = Slots(settings.max_concurrent_uploads)
        self.stream_slots = Slots(settings.max_event_streams)
        self.wait_slots = Slots(settings.max_openai_waits)
        self.live_slots = Slots(settings.max_live_sessions)
        self.rate_limiter = RateLimiter(settings.rate_limit_per_min) if settings.rate_limit_per_min else None
        """Requests a minute per client, shared by the HTTP routes and the realtime route; None: no limit."""
        self.worker: Worker | None = None
        self.watchdog: Watchdog | None = None
        self.started = asyncio.Event()
        self._starting: asyncio.Task[None] | None = None
        self._sweeping: asyncio.Task[None] | None = None
        self._last_error = "starting"
        self._nats = without_credentials(settings.nats_url)
        """The NATS URL as it may be shown: no user, password or token."""

    @property
    def infra(self) -> Infra:
        """The NATS handles; :class:`NotReady` until the worker has started."""
        if self.worker is None:
            raise NotReady(f"NATS at {self._nats} is not connected yet ({self._last_error})")
        return self.worker.infra

    async def start(self) -> None:
        """Begin connecting in the background; returns at once."""
        if self.settings.tmp_dir is not None:
            self.settings.tmp_dir.mkdir(parents=True, exist_ok=True)
        self._starting = asyncio.create_task(self._start_worker(), name="ingest-start")

    async def wait_ready(self, timeout_s: float) -> None:
        async with asyncio.timeout(timeout_s):
            await self.started.wait()

    async def _start_worker(self) -> None:
        # The loop retries (and tells /readyz why), so each attempt starts with wait_for_nats=False.
        worker = await until_nats_answers(
            self._start_once,
            name="ingest",
            nats_url=self.settings.nats_url,
            first_s=RETRY_FIRST_S,
            max_s=RETRY_MAX_S,
            on_failure=self._failed_to_start,
        )
        self.worker = worker
        if self.settings.watchdog:
            self.watchdog = Watchdog(
                worker.infra,
                deadline_base_s=self.settings.job_deadline_base_s,
                deadline_per_audio_s=self.settings.job_deadline_per_audio_s,
                sweep_interval_s=self.settings.job_sweep_interval_s,
                on_failed=lambda code: self.metrics.watchdog_failed.labels(code).inc(),
            )
            await self.watchdog.start()
        self.started.set()
        self._sweeping = asyncio.create_task(self._sweep_forever(), name="ingest-sweep")
        log.info("ingest connected to NATS %s; job view projector running", self._nats)

    async def _start_once(self) -> Worker:
        worker = Worker("ingest", self.settings)
        register_projector(worker, self.metrics)
        try:
            await worker.start(wait_for_nats=False)
        except BaseException:
            # Failed, or shutting down while still connecting: close what the attempt opened.
            with contextlib.suppress(Exception):
                await worker.stop()
            raise
        return worker

    def _failed_to_start(self, reason: str) -> None:
        self._last_error = reason

    async def sweep_expired(self, now: float | None = None) -> list[str]:
        """Delete the finished jobs older than ``retention_days`` at ``now`` (default: the clock);
        the ids deleted.

        Every ingest replica sweeps: deleting is idempotent and ``job.deleted`` carries one message
        id per job, so two replicas meeting on one job record it once.
        """
        days = self.settings.retention_days
        if days is None:
            return []
        infra = self.infra
        deleted = []
        for job_id in await expired_jobs(infra, (now or time.time()) - days * 86400):
            try:
                if await delete_job(infra, job_id, "retention") is not None:
                    deleted.append(job_id)
                    self.metrics.deleted.labels("retention").inc()
            except JobRunning:
                continue
        if deleted:
            log.info("retention: deleted %d jobs older than %g days", len(deleted), days)
        return deleted

    async def _sweep_forever(self) -> None:
        """Every ``retention_sweep_interval_s`` (the first a minute after start at most): the
        retention sweep (when configured), then the keys services wrote for jobs already deleted."""
        interval = self.settings.retention_sweep_interval_s
        await asyncio.sleep(min(interval, FIRST_SWEEP_S))
        while True:
            try:
                await self.sweep_expired()
                await purge_orphan_keys(self.infra)
            except Exception:
                # nats-py can turn a cancelled request into its own TimeoutError: shutting down
                # must still end this task, not put it to sleep for an interval.
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError from None
                log.exception("sweep failed; trying again in %.0f s", interval)
            await asyncio.sleep(interval)

    async def stop(self) -> None:
        for task in (self._starting, self._sweeping):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        worker, self.worker = self.worker, None
        self.started.clear()
        watchdog, self.watchdog = self.watchdog, None
        if watchdog is not None:
            await watchdog.stop()
        if worker is not None:
            await worker.stop()
        log.info("ingest stopped")
