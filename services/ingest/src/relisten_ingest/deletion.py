"""Deleting a finished job: its audio, its artefacts, its KV entries and its view, leaving nothing.

What a job stores is named by the functions of :mod:`relisten_contracts.names` (the services write
under those names), so deletion walks the same list; everything but the ``Idempotency-Key`` claim is
removed through the job store (:meth:`relisten_runtime.store.JobStore.remove_job`), the same port the
handlers store through:

* ``relisten-audio``: the original, the normalised audio, every clip (``clip_count`` of the view,
  the plan's clip references, and any clip a plan no longer mentions: see below);
* ``relisten-data``: the first pass, the clip plan, the transcript;
* ``relisten-clips``: every second-pass answer (``<job>.<n>``), found by subject, not by count;
* ``relisten-notify``: every delivery latch (``<job token>.*``), found by subject as well;
* ``relisten-idempotency``: the claim of an ``Idempotency-Key`` that created the job (its key is a
  hash, so the few claims of the last 24 h are read to find it); a retry with that key afterwards
  starts a new job;
* ``relisten-jobs``: the view, last, so that a deletion cut short is finished by asking again.

Objects and keys are purged from their streams (chunks, metadata and markers), not just marked
deleted, so nothing that names the job remains. ``job.deleted`` is published first: the audit log
records the deletion even if it is cut short, and a second replica deleting the same job publishes a
duplicate that the stream drops (same ``Nats-Msg-Id``).

A job that has not ended is not deleted (409 ``job_running``): cancelling would need every worker to
notice, and a worker still running would write its artefact after the deletion and leave it
orphaned. Every job ends (failed at worst), and can be deleted then.
"""

from __future__ import annotations

import base64
import logging
import time
from typing import Final

import msgspec
from nats.js.errors import NotFoundError
from relisten_contracts import (
    AUDIO_BUCKET,
    CLIPS_BUCKET,
    DATA_BUCKET,
    IDEMPOTENCY_BUCKET,
    JOBS_BUCKET,
    NOTIFY_BUCKET,
    DeletionReason,
    JobDeleted,
    JobView,
    notify_key_prefix,
    plan_object,
)
from relisten_runtime.infra import Infra
from relisten_runtime.store import JobStore

from relisten_ingest.adapters import JobViews
from relisten_ingest.domain import TERMINAL
from relisten_ingest.idempotency import Claim

log = logging.getLogger(__name__)

_claim_decoder = msgspec.json.Decoder(Claim)
MAX_PROBED_CLIPS: Final = 10_000


class JobRunning(Exception):
    """The job has not ended; it cannot be deleted yet."""


async def _purge_claims(infra: Infra, job_id: str) -> None:
    stream = f"KV_{IDEMPOTENCY_BUCKET}"
    info = await infra.js.stream_info(stream, subjects_filter=f"$KV.{IDEMPOTENCY_BUCKET}.>")
    for subject in info.state.subjects or {}:
        try:
            message = await infra.js.get_last_msg(stream, subject)
        except NotFoundError:
            continue
        if message.data and _claim_job(message.data) == job_id:
            await infra.js.purge_stream(stream, subject=subject)


def _claim_job(data: bytes) -> str | None:
    try:
        return _claim_decoder.decode(data).job_id
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


async def _clip_count(store: JobStore, view: JobView) -> int:
    """Clips the job cut: the view's count, or the plan's when the view never heard of them."""
    count = view.clip_count or 0
    try:
        plan = await store.plan(plan_object(view.id))
    except (msgspec.DecodeError, msgspec.ValidationError):
        return count
    if plan is None or not plan.clips:
        return count
    return int(max(count, len(plan.clips), *(clip.index + 1 for clip in plan.clips)))


async def delete_job(infra: Infra, job_id: str, reason: DeletionReason) -> JobView | None:
    """Delete a finished job; the view it had, or None when there is no such job.

    Raises :class:`JobRunning` for a job that has not ended. Safe to repeat and to run on several
    replicas at once.
    """
    views = JobViews.of(infra)
    store = views.store
    found = await views.get(job_id)
    if found is None:
        return None
    view = found[0]
    if view.status not in TERMINAL:
        raise JobRunning(f"job {job_id} is {view.status}; delete it once it has completed or failed")
    await infra.publish(JobDeleted(job_id=job_id, occurred_at=time.time(), reason=reason, status=view.status))

    count = min(await _clip_count(store, view), MAX_PROBED_CLIPS)
    # The claim first: the job store removes the view last, so a deletion cut short is finished by
    # asking again (the view is still there to find).
    await _purge_claims(infra, job_id)
    extra = (view.transcript_ref,) if view.transcript_ref else ()
    removed = await store.remove_job(job_id, count, extra)
    log.info(
        "job %s deleted (%s): %d objects, %d clip answers, %d delivery latches, and the view",
        job_id,
        reason,
        removed.objects,
        removed.clip_answers,
        removed.latches,
    )
    return view


def _job_of_token(token: str) -> str | None:
    """The job id behind a KV key's first token (the inverse of ``job_token``)."""
    if not token.startswith("="):
        return token
    try:
        return base64.urlsafe_b64decode(token[1:] + "=" * (-len(token[1:]) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None


async def purge_orphan_keys(infra: Infra) -> int:
    """Purge second-pass answers and delivery latches of jobs that have no view; how many.

    A job's view exists from before its first event until its deletion, so such keys belong to a
    deleted job: written after the deletion by a service that was still finishing (a notifier
    delivering late writes its latch afterwards)."""
    views = JobViews.of(infra)
    known: dict[str, bool] = {}
    purged = 0
    for bucket in (CLIPS_BUCKET, NOTIFY_BUCKET):
        stream = f"KV_{bucket}"
        info = await infra.js.stream_info(stream, subjects_filter=f"$KV.{bucket}.>")
        for subject in info.state.subjects or {}:
            job_id = _job_of_token(subject.removeprefix(f"$KV.{bucket}.").split(".", 1)[0])
            if job_id is None:
                continue
            if job_id not in known:
                known[job_id] = await views.get(job_id) is not None
            if not known[job_id]:
                await infra.js.purge_stream(stream, subject=subject)
                purged += 1
    if purged:
        log.info("purged %d second-pass answers and delivery latches of deleted jobs", purged)
    return purged


async def expired_jobs(infra: Infra, older_than: float) -> list[str]:
    """Finished jobs whose last change is older than ``older_than`` (Unix time)."""
    views = JobViews.of(infra)
    expired = []
    for job_id in await views.ids():
        found = await views.get(job_id)
        if found is not None and found[0].status in TERMINAL and found[0].updated_at < older_than:
            expired.append(job_id)
    return expired


async def remnants(infra: Infra, job_id: str) -> list[str]:
    """Everything the buckets still hold for ``job_id`` (empty after :func:`delete_job`): objects
    named after it, chunks no object owns, KV keys of it, claims naming it. For tests and audits."""
    found: list[str] = []
    for bucket in (AUDIO_BUCKET, DATA_BUCKET):
        stream = f"OBJ_{bucket}"
        metas = await infra.js.stream_info(stream, subjects_filter=f"$O.{bucket}.M.>")
        owners: set[str] = set()
        for subject in metas.state.subjects or {}:
            encoded = subject.removeprefix(f"$O.{bucket}.M.")
            name = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode(errors="replace")
            message = await infra.js.get_last_msg(stream, subject)
            meta = msgspec.json.decode(message.data or b"{}")
            if name.startswith(f"{job_id}/"):
                found.append(f"{bucket}: {name}{' (deleted marker)' if meta.get('deleted') else ''}")
            if not meta.get("deleted") and meta.get("nuid"):
                owners.add(str(meta["nuid"]))
        chunks = await infra.js.stream_info(stream, subjects_filter=f"$O.{bucket}.C.>")
        for subject in chunks.state.subjects or {}:
            if subject.removeprefix(f"$O.{bucket}.C.") not in owners:
                found.append(f"{bucket}: chunks {subject} of no object")
    for bucket, prefix in (
        (JOBS_BUCKET, f"{job_id}"),
        (CLIPS_BUCKET, f"{job_id}."),
        (NOTIFY_BUCKET, notify_key_prefix(job_id)),
    ):
        info = await infra.js.stream_info(f"KV_{bucket}", subjects_filter=f"$KV.{bucket}.>")
        for subject in info.state.subjects or {}:
            key = subject.removeprefix(f"$KV.{bucket}.")
            if key == prefix or (prefix.endswith(".") and key.startswith(prefix)):
                found.append(f"{bucket}: key {key}")
    stream = f"KV_{IDEMPOTENCY_BUCKET}"
    info = await infra.js.stream_info(stream, subjects_filter=f"$KV.{IDEMPOTENCY_BUCKET}.>")
    for subject in info.state.subjects or {}:
        message = await infra.js.get_last_msg(stream, subject)
        if message.data and _claim_job(message.data) == job_id:
            found.append(f"{IDEMPOTENCY_BUCKET}: a claim naming the job")
    return found
