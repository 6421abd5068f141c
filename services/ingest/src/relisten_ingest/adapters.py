"""Side effects of ingest: the job view in KV (compare-and-set), blobs in the Object Store, and the
all-or-nothing admission of a new job."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from nats.js.object_store import ObjectStore
from relisten_contracts import AUDIO_BUCKET, JOBS_BUCKET, Event, JobCreated, JobView, Transcript, names
from relisten_runtime.infra import Infra
from relisten_runtime.store import JobStore, NatsJobStore, StaleRevision

from relisten_ingest.domain import apply_event

log = logging.getLogger(__name__)

CAS_ATTEMPTS: Final = 50


original_name = names.original_object
audio_name = names.audio_object


class ViewConflict(RuntimeError):
    """Compare-and-set kept losing to other writers; the event is retried later."""


class AdmissionFailed(RuntimeError):
    """Storing a new job failed; everything that had been stored was removed again."""


class TranscriptMissing(RuntimeError):
    """A completed job's transcript is not in the data store."""


class JobViews:
    """The job views (one JobView per job id, written only by ingest) in a job store: the ``jobs`` KV
    bucket on NATS, dictionaries in tests."""

    def __init__(self, store: JobStore, js: JetStreamContext | None = None) -> None:
        self.store = store
        self.js = js
        """For :meth:`ids` (a subject listing of the bucket's stream) only."""

    @classmethod
    def of(cls, infra: Infra) -> JobViews:
        return cls(NatsJobStore(lambda: infra), infra.js)

    async def get(self, job_id: str) -> tuple[JobView, int] | None:
        """The view and its revision, or None when there is no such job."""
        return await self.store.view(job_id)

    async def create(self, view: JobView) -> int:
        return await self.store.put_view(view, 0)

    async def ids(self) -> list[str]:
        """Every key with a message in the bucket's stream (deleted ones included; ``get`` skips them).

        Not ``KeyValue.keys()``: nats-py's watcher can signal "no more keys" before the first
        delivered key reaches it, and then reports an empty bucket.
        """
        if self.js is None:
            raise RuntimeError("listing jobs needs the JetStream context")
        prefix = f"$KV.{JOBS_BUCKET}."
        info = await self.js.stream_info(f"KV_{JOBS_BUCKET}", subjects_filter=f"{prefix}>")
        return [subject.removeprefix(prefix) for subject in info.state.subjects or {}]

    async def recent(self, limit: int) -> list[JobView]:
        """Views newest first. Reads every key: fine for the web page, not a reporting API."""
        gate = asyncio.Semaphore(16)

        async def one(key: str) -> JobView | None:
            async with gate:
                found = await self.get(key)
            return found[0] if found else None

        views = [v for v in await asyncio.gather(*(one(k) for k in await self.ids())) if v is not None]
        views.sort(key=lambda v: (v.created_at, v.id), reverse=True)
        return views[:limit]

    async def apply(self, event: Event) -> JobView | None:
        """Project ``event`` onto the stored view with compare-and-set, retrying lost races."""
        return (await self.apply_change(event))[1]

    async def apply_change(self, event: Event) -> tuple[JobView | None, JobView | None]:
        """Like :meth:`apply`, returning the view before and after; they are equal when ``event``
        changed nothing (a duplicate, a late event), and then nothing was written."""
        for attempt in range(CAS_ATTEMPTS):
            found = await self.get(event.job_id)
            current, revision = found if found else (None, 0)
            updated = apply_event(current, event)
            if updated is None or updated == current:
                return current, updated
            try:
                await self.store.put_view(updated, revision)
                return current, updated
            except StaleRevision:
                # Another replica wrote first; re-read and re-apply. Jitter keeps replicas apart.
                await asyncio.sleep(random.uniform(0, 0.01 * (attempt + 1)))
        raise ViewConflict(f"job {event.job_id}: view changed under {CAS_ATTEMPTS} attempts to update it")


async def put_file(store: ObjectStore, name: str, path: Path) -> None:
    """Stream a file into the Object Store chunk by chunk (nats-py reads it in a thread)."""
    with open(path, "rb") as source:  # noqa: ASYNC230 -- opening is instant; reads go to a thread
        await store.put(name, source)


async def get_to_file(infra: Infra, name: str, path: Path) -> bool:
    """Copy an audio object into ``path`` chunk by chunk (:meth:`Infra.read`); False when there is
    no such object."""
    with open(path, "wb") as sink:  # noqa: ASYNC230 -- opening is instant; writes go to a thread
        try:
            async with contextlib.aclosing(infra.read(AUDIO_BUCKET, name)) as chunks:
                async for chunk in chunks:
                    await asyncio.to_thread(sink.write, chunk)
        except NotFoundError:  # ObjectNotFoundError is a subclass
            return False
    return True


async def load_transcript(store: JobStore, name: str) -> Transcript:
    transcript = await store.transcript(name)
    if transcript is None:
        raise TranscriptMissing(f"transcript {name} is not in the data store")
    return transcript


async def _quietly(what: str, action: Callable[[], Awaitable[object]]) -> None:
    try:
        await action()
    except Exception:
        log.exception("rollback: could not %s", what)


async def admit_job(
    infra: Infra, view: JobView, event: JobCreated, *, original: Path, normalised: Path
) -> None:
    """Store both audio objects, write the view, then publish ``job.created``: all or nothing.

    The view is written before the event so that the job can be read as soon as the client has its
    id, and so that the projector never meets an event of a job it cannot show. If any step fails
    (or the request is cancelled), what was stored is removed and :class:`AdmissionFailed` raised.
    """
    stored: list[str] = []
    view_written = False
    jobs = JobViews.of(infra)
    try:
        for name, path in ((event.original_ref, original), (event.audio_ref, normalised)):
            stored.append(name)
            await put_file(infra.audio, name, path)
        await jobs.create(view)
        view_written = True
        await infra.publish(event)
    except BaseException as exc:
        log.warning("job %s: admission failed, removing what was stored: %r", view.id, exc)
        rollback = [*(_quietly(f"delete {n}", _deleter(infra.audio, n)) for n in stored)]
        if view_written:
            rollback.append(_quietly(f"purge view {view.id}", lambda: infra.jobs.purge(view.id)))
        # Shielded so that a cancelled request still cleans up after itself.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(asyncio.gather(*rollback))
        if isinstance(exc, Exception):
            raise AdmissionFailed(f"could not store the job: {type(exc).__name__}: {exc}") from exc
        raise


def _deleter(store: ObjectStore, name: str) -> Callable[[], Awaitable[object]]:
    async def delete() -> None:
        with contextlib.suppress(NotFoundError):
            await store.delete(name)

    return delete
