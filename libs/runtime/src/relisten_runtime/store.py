"""The job store: what a step reads and writes for a job, typed, without NATS in the handler.

Handlers name what they store with :mod:`relisten_contracts.names` (or the reference an event carries)
and hand typed documents to a :class:`JobStore`; which bucket holds what, and how it is encoded, is the
store's. Two implementations: :class:`NatsJobStore` (the KV and Object Store buckets of
:class:`~relisten_runtime.infra.Infra`) and :class:`MemoryJobStore` (dictionaries, for handler tests
without a server). Both encode documents with the wire codec, so a test reads back exactly what a
service would.

========================  =================  ==================================================
document                  bucket             name
========================  =================  ==================================================
normalised audio, clips   ``relisten-audio``  ``<job>/audio.wav``, ``<job>/clips/<n>.wav``
first pass                ``relisten-data``   ``<job>/first_pass.json``
clip plan (clips.ready)   ``relisten-data``   ``<job>/plan.json``
transcript                ``relisten-data``   ``<job>/transcript.json``
asr capabilities          ``relisten-data``   ``service/asr-capabilities.json`` (one a deployment)
second-pass answer        ``relisten-clips``  ``<job>.<n>`` (KV key)
job view                  ``relisten-jobs``   ``<job>`` (KV key, compare-and-set; ingest only)
deletion marker           ``relisten-runtime`` ``deleted.<job token>`` (KV key, a week)
notifier's records        ``relisten-notify`` ``<job token>.<event>.<target>``, ``disabled.<...>``
========================  =================  ==================================================

Deleting a job (:meth:`NatsJobStore.remove_job`) purges its objects and keys from their streams, so
nothing that names the job remains.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from relisten_contracts import (
    ASR_CAPABILITIES_REF,
    AUDIO_BUCKET,
    CLIPS_BUCKET,
    DATA_BUCKET,
    JOBS_BUCKET,
    NOTIFY_BUCKET,
    AsrCapabilities,
    ClipResult,
    ClipsReady,
    FirstPass,
    JobView,
    Transcript,
    audio_object,
    clip_object,
    deleted_marker_key,
    encode,
    first_pass_object,
    notify_key_prefix,
    original_object,
    plan_object,
    transcript_object,
)

from relisten_runtime.audio import NotNormalisedAudio, pcm_from_wav
from relisten_runtime.infra import Infra
from relisten_runtime.worker import PermanentFailure

T = TypeVar("T")
AudioKind = Literal["audio", "clip"]


class StaleRevision(Exception):
    """The job view changed since it was read (another writer won the compare-and-set)."""


@dataclass(frozen=True)
class Removed:
    """What :meth:`JobStore.remove_job` found and removed."""

    objects: int
    clip_answers: int
    latches: int


def job_objects(job_id: str, clip_count: int) -> list[tuple[Literal["audio", "data"], str]]:
    """Every object a job stores: audio (original, normalised, ``clip_count`` clips), then data."""
    audio = [
        original_object(job_id),
        audio_object(job_id),
        *(clip_object(job_id, i) for i in range(clip_count)),
    ]
    data = [first_pass_object(job_id), plan_object(job_id), transcript_object(job_id)]
    return [*(("audio", name) for name in audio), *(("data", name) for name in data)]


class JobStore(Protocol):
    """Typed access to a job's stored audio and documents (the port every handler is given)."""

    async def audio_pcm(self, ref: str, kind: AudioKind = "audio") -> bytes:
        """The 16 kHz mono 16-bit PCM of the WAV under ``ref``. Missing or malformed audio will not
        get better on redelivery: :class:`PermanentFailure` ``<kind>_missing`` / ``<kind>_invalid``."""
        ...

    async def put_audio(self, ref: str, wav: bytes) -> None:
        """Store a WAV (a clip cut for the second pass)."""
        ...

    async def first_pass(self, ref: str) -> FirstPass | None: ...

    async def required_first_pass(self, ref: str) -> FirstPass:
        """The first pass under ``ref``; missing, it will not appear on redelivery:
        :class:`PermanentFailure` ``words_missing``."""
        ...

    async def put_first_pass(self, ref: str, first: FirstPass) -> None: ...

    async def plan(self, ref: str) -> ClipsReady | None: ...

    async def required_plan(self, ref: str) -> ClipsReady:
        """The clip plan under ``ref``, or :class:`PermanentFailure` ``plan_missing``."""
        ...

    async def put_plan(self, plan: ClipsReady) -> None:
        """Store the plan under its own ``plan_ref``."""
        ...

    async def transcript(self, ref: str) -> Transcript | None: ...

    async def put_transcript(self, ref: str, transcript: Transcript) -> None: ...

    async def clip_result(self, key: str) -> ClipResult | None: ...

    async def put_clip_result(self, key: str, result: ClipResult) -> None: ...

    async def asr_capabilities(self) -> AsrCapabilities | None:
        """What the asr's configuration can transcribe (written by the asr at start, read by ingest)."""
        ...

    async def put_asr_capabilities(self, capabilities: AsrCapabilities) -> None: ...

    async def view(self, job_id: str) -> tuple[JobView, int] | None:
        """The job's view and its revision, or None when there is none."""
        ...

    async def put_view(self, view: JobView, revision: int) -> int:
        """Write ``view`` if the stored revision is still ``revision`` (0: only if there is none); the
        new revision. :class:`StaleRevision` when another writer came first."""
        ...

    async def is_deleted(self, job_id: str) -> bool:
        """Whether the job was deleted lately (its marker is kept a week)."""
        ...

    async def notice_record(self, key: str) -> bytes | None:
        """The notifier's record under ``key`` (a delivery latch or a disabled destination; the
        notifier owns their format), or None."""
        ...

    async def put_notice_record(self, key: str, data: bytes) -> None: ...

    async def remove_job(self, job_id: str, clip_count: int, extra_data: tuple[str, ...] = ()) -> Removed:
        """Remove the job's objects (:func:`job_objects`, plus ``extra_data`` in the data store), its
        second-pass answers and its delivery latches; leave a deletion marker; then remove its view."""
        ...


def _pcm(data: bytes | None, ref: str, kind: AudioKind) -> bytes:
    if data is None:
        what = f"normalised audio {ref}" if kind == "audio" else f"clip {ref}"
        raise PermanentFailure(f"{kind}_missing", f"{what} is not stored")
    try:
        return pcm_from_wav(data)
    except NotNormalisedAudio as exc:
        what = "stored audio" if kind == "audio" else f"clip {ref}"
        raise PermanentFailure(f"{kind}_invalid", f"{what} is unusable: {exc}") from exc


def _required(document: T | None, code: str, message: str) -> T:
    if document is None:
        raise PermanentFailure(code, message)
    return document


_view_decoder = msgspec.json.Decoder(JobView)


def _decoded(data: bytes | None, kind: type[T]) -> T | None:
    return None if data is None else msgspec.json.decode(data, type=kind)


class _Documents:
    """The typed methods, over four raw operations an implementation provides."""

    async def _get_object(self, bucket: Literal["audio", "data"], name: str) -> bytes | None:
        raise NotImplementedError

    async def _put_object(self, bucket: Literal["audio", "data"], name: str, data: bytes) -> None:
        raise NotImplementedError

    async def _get_key(self, key: str) -> bytes | None:
        raise NotImplementedError

    async def _put_key(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    async def audio_pcm(self, ref: str, kind: AudioKind = "audio") -> bytes:
        return _pcm(await self._get_object("audio", ref), ref, kind)

    async def put_audio(self, ref: str, wav: bytes) -> None:
        await self._put_object("audio", ref, wav)

    async def first_pass(self, ref: str) -> FirstPass | None:
        return _decoded(await self._get_object("data", ref), FirstPass)

    async def required_first_pass(self, ref: str) -> FirstPass:
        return _required(
            await self.first_pass(ref), "words_missing", f"first-pass words {ref} are not stored"
        )

    async def put_first_pass(self, ref: str, first: FirstPass) -> None:
        await self._put_object("data", ref, encode(first))

    async def plan(self, ref: str) -> ClipsReady | None:
        return _decoded(await self._get_object("data", ref), ClipsReady)

    async def required_plan(self, ref: str) -> ClipsReady:
        return _required(await self.plan(ref), "plan_missing", f"clip plan {ref} is not stored")

    async def put_plan(self, plan: ClipsReady) -> None:
        await self._put_object("data", plan.plan_ref, encode(plan))

    async def transcript(self, ref: str) -> Transcript | None:
        return _decoded(await self._get_object("data", ref), Transcript)

    async def put_transcript(self, ref: str, transcript: Transcript) -> None:
        await self._put_object("data", ref, encode(transcript))

    async def clip_result(self, key: str) -> ClipResult | None:
        return _decoded(await self._get_key(key), ClipResult)

    async def put_clip_result(self, key: str, result: ClipResult) -> None:
        await self._put_key(key, encode(result))

    async def asr_capabilities(self) -> AsrCapabilities | None:
        return _decoded(await self._get_object("data", ASR_CAPABILITIES_REF), AsrCapabilities)

    async def put_asr_capabilities(self, capabilities: AsrCapabilities) -> None:
        await self._put_object("data", ASR_CAPABILITIES_REF, encode(capabilities))

    async def view(self, job_id: str) -> tuple[JobView, int] | None:
        raise NotImplementedError

    async def put_view(self, view: JobView, revision: int) -> int:
        raise NotImplementedError

    async def is_deleted(self, job_id: str) -> bool:
        raise NotImplementedError

    async def notice_record(self, key: str) -> bytes | None:
        raise NotImplementedError

    async def put_notice_record(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    async def remove_job(self, job_id: str, clip_count: int, extra_data: tuple[str, ...] = ()) -> Removed:
        raise NotImplementedError


class NatsJobStore(_Documents):
    """The job store on NATS: Object Store ``relisten-audio`` / ``relisten-data``, KV ``relisten-clips``.

    ``handles`` gives the open :class:`Infra` when asked (a worker's handles exist only once it has
    started, after its handlers are built)."""

    def __init__(self, handles: Callable[[], Infra]) -> None:
        self._handles = handles

    async def _get_object(self, bucket: Literal["audio", "data"], name: str) -> bytes | None:
        infra = self._handles()
        try:
            return await infra.get_blob(AUDIO_BUCKET if bucket == "audio" else DATA_BUCKET, name)
        except NotFoundError:
            return None

    async def _put_object(self, bucket: Literal["audio", "data"], name: str, data: bytes) -> None:
        infra = self._handles()
        await (infra.audio if bucket == "audio" else infra.data).put(name, data)

    async def _get_key(self, key: str) -> bytes | None:
        try:
            entry = await self._handles().clips.get(key)
        except KeyNotFoundError:
            return None
        return entry.value or b""

    async def _put_key(self, key: str, data: bytes) -> None:
        await self._handles().clips.put(key, data)

    async def view(self, job_id: str) -> tuple[JobView, int] | None:
        try:
            entry = await self._handles().jobs.get(job_id)
        except KeyNotFoundError:  # KeyDeletedError is a subclass
            return None
        if not entry.value:
            return None
        return _view_decoder.decode(entry.value), entry.revision or 0

    async def put_view(self, view: JobView, revision: int) -> int:
        jobs = self._handles().jobs
        try:
            if revision == 0:
                return await jobs.create(view.id, encode(view))
            return await jobs.update(view.id, encode(view), last=revision)
        except KeyWrongLastSequenceError as exc:
            raise StaleRevision(f"job {view.id}: view changed since revision {revision}") from exc

    async def is_deleted(self, job_id: str) -> bool:
        try:
            await self._handles().runtime.get(deleted_marker_key(job_id))
        except KeyNotFoundError:
            return False
        return True

    async def notice_record(self, key: str) -> bytes | None:
        try:
            entry = await self._handles().notify.get(key)
        except KeyNotFoundError:
            return None
        return entry.value or b""

    async def put_notice_record(self, key: str, data: bytes) -> None:
        await self._handles().notify.put(key, data)

    async def remove_job(self, job_id: str, clip_count: int, extra_data: tuple[str, ...] = ()) -> Removed:
        infra = self._handles()
        objects = 0
        named = job_objects(job_id, clip_count)
        named += [("data", name) for name in extra_data if ("data", name) not in named]
        for bucket, name in named:
            objects += await self._purge_object(AUDIO_BUCKET if bucket == "audio" else DATA_BUCKET, name)
        answers = await self._purge_keys(CLIPS_BUCKET, f"{job_id}.>")
        latches = await self._purge_keys(NOTIFY_BUCKET, f"{notify_key_prefix(job_id)}>")
        await infra.runtime.put(deleted_marker_key(job_id), b"")
        await self._purge_keys(JOBS_BUCKET, job_id)
        return Removed(objects=objects, clip_answers=answers, latches=latches)

    async def _purge_object(self, bucket: str, name: str) -> bool:
        """Remove an object's chunks and metadata from its stream; True when there was one."""
        infra = self._handles()
        store = infra.audio if bucket == AUDIO_BUCKET else infra.data
        stream = f"OBJ_{bucket}"
        try:
            info = await store.get_info(name, show_deleted=True)
        except NotFoundError:
            info = None
        if info is not None and info.nuid:
            await infra.js.purge_stream(stream, subject=f"$O.{bucket}.C.{info.nuid}")
        await infra.js.purge_stream(stream, subject=object_meta_subject(bucket, name))
        return info is not None and not info.deleted

    async def _purge_keys(self, bucket: str, key_filter: str) -> int:
        """Purge every KV key matching ``key_filter`` (a subject listing, exact, unlike key watchers)."""
        js = self._handles().js
        stream = f"KV_{bucket}"
        info = await js.stream_info(stream, subjects_filter=f"$KV.{bucket}.{key_filter}")
        subjects = list(info.state.subjects or {})
        for subject in subjects:
            await js.purge_stream(stream, subject=subject)
        return len(subjects)


def object_meta_subject(bucket: str, name: str) -> str:
    """The Object Store's own subject for an object's metadata (padded URL-safe base64 of the name)."""
    return f"$O.{bucket}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"


class MemoryJobStore(_Documents):
    """The job store in dictionaries: for handler tests, no server. ``objects`` and ``keys`` hold the
    encoded bytes, as NATS would."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.keys: dict[str, bytes] = {}
        self.views: dict[str, tuple[bytes, int]] = {}
        self.notices: dict[str, bytes] = {}
        self.deleted: set[str] = set()
        self._revision = 0

    async def view(self, job_id: str) -> tuple[JobView, int] | None:
        found = self.views.get(job_id)
        return None if found is None else (_view_decoder.decode(found[0]), found[1])

    async def put_view(self, view: JobView, revision: int) -> int:
        current = self.views.get(view.id)
        if (current[1] if current else 0) != revision:
            raise StaleRevision(f"job {view.id}: view changed since revision {revision}")
        self._revision += 1  # like a stream sequence: revisions only grow, across keys
        self.views[view.id] = (encode(view), self._revision)
        return self._revision

    async def is_deleted(self, job_id: str) -> bool:
        return job_id in self.deleted

    async def notice_record(self, key: str) -> bytes | None:
        return self.notices.get(key)

    async def put_notice_record(self, key: str, data: bytes) -> None:
        self.notices[key] = data

    async def remove_job(self, job_id: str, clip_count: int, extra_data: tuple[str, ...] = ()) -> Removed:
        named = [*job_objects(job_id, clip_count), *(("data", name) for name in extra_data)]
        objects = sum(self.objects.pop(key, None) is not None for key in dict.fromkeys(named))
        answers = [key for key in self.keys if key.startswith(f"{job_id}.")]
        latches = [key for key in self.notices if key.startswith(notify_key_prefix(job_id))]
        for key in answers:
            del self.keys[key]
        for key in latches:
            del self.notices[key]
        self.deleted.add(job_id)
        self.views.pop(job_id, None)
        return Removed(objects=objects, clip_answers=len(answers), latches=len(latches))

    async def _get_object(self, bucket: Literal["audio", "data"], name: str) -> bytes | None:
        return self.objects.get((bucket, name))

    async def _put_object(self, bucket: Literal["audio", "data"], name: str, data: bytes) -> None:
        self.objects[(bucket, name)] = data

    async def _get_key(self, key: str) -> bytes | None:
        return self.keys.get(key)

    async def _put_key(self, key: str, data: bytes) -> None:
        self.keys[key] = data


class _HasInfra(Protocol):
    @property
    def infra(self) -> Infra: ...


def nats_store_of(worker: _HasInfra) -> NatsJobStore:
    """The NATS job store on ``worker``'s handles (opened when the worker starts)."""
    return NatsJobStore(lambda: worker.infra)
