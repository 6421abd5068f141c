"""Prometheus metrics of the pipeline, served by ingest at ``/metrics``.

Ingest sees every event (its projector consumes them all), so the pipeline's metrics live here:

* ``relisten_jobs{status}`` — jobs in each status, counted from the job view at scrape time;
* ``relisten_job_transitions_total{status}`` — jobs that entered each status;
* ``relisten_stage_duration_seconds{stage}`` — time jobs spent in each stage, from the events'
  ``occurred_at`` (queued -> transcribing -> correcting -> merging -> completed/failed);
* ``relisten_audio_processed_seconds_total`` — audio of completed jobs;
* ``relisten_redecoded_fraction`` — share of a job's audio the second pass re-listened to;
* ``relisten_first_pass_seconds``, ``relisten_second_pass_seconds`` — compute per job;
* ``relisten_second_pass_clip_seconds`` — second-pass latency per clip;
* ``relisten_backlog_audio_seconds`` — audio of unfinished jobs (admission control's measure);
* ``relisten_queue_depth{consumer}`` — pending plus unacknowledged events of each durable consumer
  of the stream, asked of NATS at scrape time;
* ``relisten_live_sessions``, ``relisten_live_turns_total{outcome}``,
  ``relisten_live_turn_delay_seconds``, ``relisten_live_degraded_total{reason}`` — realtime sessions.

Event metrics are recorded only when an event changed the job view (the projector's compare-and-set
succeeded), so a redelivered or duplicate event is not counted twice. Counters are per process:
with several ingest replicas, sum them. Stage durations need the time the job entered the stage,
which this process remembers for the transitions it projected itself (the queued stage always
starts at the job's creation); a stage entered on another replica, or before a restart, is not
timed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter as Tally
from collections import OrderedDict
from typing import Final

from nats.js.api import ConsumerInfo
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from relisten_contracts import NOTIFY_BUCKET, STREAM_NAME, ClipCorrected, Event, JobMerged, JobView, Stage
from relisten_runtime.infra import Infra

from relisten_ingest.adapters import JobViews
from relisten_ingest.backlog import backlog_audio_s

log = logging.getLogger(__name__)

STATUSES: Final[tuple[Stage, ...]] = (
    "queued",
    "transcribing",
    "correcting",
    "merging",
    "completed",
    "failed",
)
REMEMBERED_JOBS: Final = 10_000
SECONDS_BUCKETS: Final = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600, float("inf"))
FRACTION_BUCKETS: Final = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, float("inf"))
REFRESH_TIMEOUT_S: Final = 5.0


class IngestMetrics:
    """The metrics of one ingest process, in their own registry (tests build several apps)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.jobs = Gauge(
            "relisten_jobs", "Jobs in each status (job view, at scrape).", ["status"], registry=r
        )
        self.transitions = Counter(
            "relisten_job_transitions", "Jobs that entered each status.", ["status"], registry=r
        )
        self.stage_seconds = Histogram(
            "relisten_stage_duration_seconds",
            "Time a job spent in a stage before the next one.",
            ["stage"],
            buckets=SECONDS_BUCKETS,
            registry=r,
        )
        self.audio_seconds = Counter(
            "relisten_audio_processed_seconds", "Seconds of audio in completed jobs.", registry=r
        )
        self.redecoded = Histogram(
            "relisten_redecoded_fraction",
            "Share of a completed job's audio that the second pass re-listened to.",
            buckets=FRACTION_BUCKETS,
            registry=r,
        )
        self.first_pass_seconds = Histogram(
            "relisten_first_pass_seconds", "First-pass compute per job.", buckets=SECONDS_BUCKETS, registry=r
        )
        self.second_pass_seconds = Histogram(
            "relisten_second_pass_seconds",
            "Second-pass compute per job.",
            buckets=SECONDS_BUCKETS,
            registry=r,
        )
        self.clip_seconds = Histogram(
            "relisten_second_pass_clip_seconds",
            "Second-pass latency of one clip.",
            buckets=SECONDS_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "relisten_queue_depth",
            "Events waiting for (pending) or held by (unacknowledged) each durable consumer.",
            ["consumer"],
            registry=r,
        )
        self.watchdog_failed = Counter(
            "relisten_watchdog_failed_jobs",
            "Jobs the watchdog failed, by code (stuck, deliveries_exhausted, terminated).",
            ["code"],
            registry=r,
        )
        self.disabled_destinations = Gauge(
            "relisten_notify_disabled_destinations",
            "Notification destinations disabled after a 401, 404 or 410 (discord, callback).",
            ["target"],
            registry=r,
        )
        self.deleted = Counter(
            "relisten_jobs_deleted",
            "Jobs deleted by this process, by reason (requested, retention).",
            ["reason"],
            registry=r,
        )
        self.refused = Counter(
            "relisten_requests_refused",
            "Requests refused by a limit (rate_limited, too_many_uploads, too_many_streams, ...).",
            ["code"],
            registry=r,
        )
        self.backlog = Gauge(
            "relisten_backlog_audio_seconds",
            "Audio of the jobs not yet completed or failed (what admission control compares).",
            registry=r,
        )
        # Live sessions (GET /v1/realtime), per process.
        self.live_sessions = Gauge(
            "relisten_live_sessions", "Realtime sessions open in this process.", registry=r
        )
        self.live_turns = Counter(
            "relisten_live_turns",
            "Finished turns of realtime sessions, by outcome (refined, first_pass, failed).",
            ["outcome"],
            registry=r,
        )
        self.live_turn_delay = Histogram(
            "relisten_live_turn_delay_seconds",
            "From the end of a turn to its completed event.",
            buckets=(0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0),
            registry=r,
        )
        self.live_degraded = Counter(
            "relisten_live_degraded",
            "Times a realtime session fell behind and dropped to first-pass text, by reason.",
            ["reason"],
            registry=r,
        )
        self._entered: OrderedDict[str, tuple[Stage, float]] = OrderedDict()

    def admitted(self, view: JobView) -> None:
        """A job was accepted. The API writes its view before publishing ``job.created``, so the
        projector never sees the job enter ``queued``: it is counted here."""
        self.transitions.labels(view.status).inc()
        self._remember(view.id, view.status, view.created_at)

    def observe(self, before: JobView | None, after: JobView, event: Event) -> None:
        """Record what ``event`` changed; call only when it changed the view (``before != after``)."""
        at = event.occurred_at or after.updated_at
        if before is None or before.status != after.status:
            self.transitions.labels(after.status).inc()
            self._time_stage(before, after, at)
        if isinstance(event, ClipCorrected) and (before is None or event.clip_index not in before.clips_done):
            self.clip_seconds.observe(max(event.seconds, 0.0))
        if isinstance(event, JobMerged) and after.status == "completed":
            self.audio_seconds.inc(max(event.duration_s, 0.0))
            self.first_pass_seconds.observe(max(event.first_pass_seconds, 0.0))
            self.second_pass_seconds.observe(max(event.second_pass_seconds, 0.0))
            if event.duration_s > 0:
                self.redecoded.observe(min(max(event.audio_redecoded_seconds / event.duration_s, 0.0), 1.0))

    def _time_stage(self, before: JobView | None, after: JobView, at: float) -> None:
        if before is not None:
            remembered = self._entered.pop(after.id, None)
            if remembered is not None and remembered[0] == before.status:
                entered = remembered[1]
            elif before.status == "queued":
                entered = before.created_at
            else:
                entered = None
            if entered is not None and at >= entered:
                self.stage_seconds.labels(before.status).observe(at - entered)
        if after.status in ("completed", "failed"):
            self._entered.pop(after.id, None)
            return
        self._remember(after.id, after.status, after.created_at if before is None else at)

    def _remember(self, job_id: str, stage: Stage, entered: float) -> None:
        self._entered[job_id] = (stage, entered)
        while len(self._entered) > REMEMBERED_JOBS:
            self._entered.popitem(last=False)

    def set_queue_depth(self, consumers: list[ConsumerInfo]) -> None:
        self.queue_depth.clear()
        for info in consumers:
            name = info.config.durable_name
            if name:
                self.queue_depth.labels(name).set((info.num_pending or 0) + (info.num_ack_pending or 0))

    def set_jobs(self, views: list[JobView]) -> None:
        counts = Tally(view.status for view in views)
        for status in STATUSES:
            self.jobs.labels(status).set(counts.get(status, 0))
        self.backlog.set(backlog_audio_s(views))

    async def refresh(self, infra: Infra) -> None:
        """Ask NATS for what is read at scrape time; on failure the previous values stay."""
        try:
            async with asyncio.timeout(REFRESH_TIMEOUT_S):
                self.set_queue_depth(await infra.js.consumers_info(STREAM_NAME))
                self.set_jobs(await JobViews.of(infra).recent(limit=1_000_000))
                await self._count_disabled(infra)
        except Exception as exc:
            log.warning("metrics: could not refresh from NATS: %r", exc)

    async def _count_disabled(self, infra: Infra) -> None:
        """The notifier's ``disabled.<target>[.<hash>]`` entries still in force."""
        prefix = f"$KV.{NOTIFY_BUCKET}."
        info = await infra.js.stream_info(f"KV_{NOTIFY_BUCKET}", subjects_filter=f"{prefix}disabled.>")
        now = time.time()
        counts = Tally[str]()
        for subject in info.state.subjects or {}:
            key = subject.removeprefix(prefix)
            try:
                entry = await infra.notify.get(key)
                until = float(json.loads(entry.value or b"{}").get("until", 0.0))
            except Exception:
                continue
            if until > now:
                counts[key.split(".")[1]] += 1
        for target in ("discord", "callback"):
            self.disabled_destinations.labels(target).set(counts.get(target, 0))

    def render(self) -> bytes:
        return generate_latest(self.registry)
