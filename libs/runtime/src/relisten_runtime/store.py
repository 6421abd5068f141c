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
second-pass answer        ``relisten-clips``  ``<job>.<n>`` (KV key)
========================  =================  ==================================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol, TypeVar

import msgspec
from nats.js.errors import KeyNotFoundError, NotFoundError
from relisten_contracts import ClipResult, ClipsReady, FirstPass, Transcript, encode

from relisten_runtime.audio import NotNormalisedAudio, pcm_from_wav
from relisten_runtime.infra import Infra
from relisten_runtime.worker import PermanentFailure

T = TypeVar("T")
AudioKind = Literal["audio", "clip"]


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

    async def put_first_pass(self, ref: str, first: FirstPass) -> None: ...

    async def plan(self, ref: str) -> ClipsReady | None: ...

    async def put_plan(self, plan: ClipsReady) -> None:
        """Store the plan under its own ``plan_ref``."""
        ...

    async def transcript(self, ref: str) -> Transcript | None: ...

    async def put_transcript(self, ref: str, transcript: Transcript) -> None: ...

    async def clip_result(self, key: str) -> ClipResult | None: ...

    async def put_clip_result(self, key: str, result: ClipResult) -> None: ...


def _pcm(data: bytes | None, ref: str, kind: AudioKind) -> bytes:
    if data is None:
        what = f"normalised audio {ref}" if kind == "audio" else f"clip {ref}"
        raise PermanentFailure(f"{kind}_missing", f"{what} is not stored")
    try:
        return pcm_from_wav(data)
    except NotNormalisedAudio as exc:
        what = "stored audio" if kind == "audio" else f"clip {ref}"
        raise PermanentFailure(f"{kind}_invalid", f"{what} is unusable: {exc}") from exc


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

    async def put_first_pass(self, ref: str, first: FirstPass) -> None:
        await self._put_object("data", ref, encode(first))

    async def plan(self, ref: str) -> ClipsReady | None:
        return _decoded(await self._get_object("data", ref), ClipsReady)

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


class NatsJobStore(_Documents):
    """The job store on NATS: Object Store ``relisten-audio`` / ``relisten-data``, KV ``relisten-clips``.

    ``handles`` gives the open :class:`Infra` when asked (a worker's handles exist only once it has
    started, after its handlers are built)."""

    def __init__(self, handles: Callable[[], Infra]) -> None:
        self._handles = handles

    async def _get_object(self, bucket: Literal["audio", "data"], name: str) -> bytes | None:
        infra = self._handles()
        try:
            return await infra.get_blob(infra.audio if bucket == "audio" else infra.data, name)
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


class MemoryJobStore(_Documents):
    """The job store in dictionaries: for handler tests, no server. ``objects`` and ``keys`` hold the
    encoded bytes, as NATS would."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.keys: dict[str, bytes] = {}

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
