"""NATS connection, idempotent creation of the stream and buckets, and event publishing."""

from __future__ import annotations

import base64
import contextlib
import contextvars
import hashlib
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

import msgspec
import nats
import nats.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    KeyValueConfig,
    ObjectInfo,
    ObjectStoreConfig,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, BucketNotFoundError, DigestMismatchError, NotFoundError
from nats.js.kv import KeyValue
from nats.js.object_store import (
    OBJ_CHUNKS_PRE_TEMPLATE,
    OBJ_DIGEST_TYPE,
    OBJ_STREAM_TEMPLATE,
    ObjectStore,
)
from relisten_contracts import (
    AUDIO_BUCKET,
    CLIPS_BUCKET,
    DATA_BUCKET,
    IDEMPOTENCY_BUCKET,
    IDEMPOTENCY_TTL_S,
    JOBS_BUCKET,
    NOTIFY_BUCKET,
    RUNTIME_BUCKET,
    STREAM_NAME,
    STREAM_SUBJECTS,
    Event,
    encode,
    message_id,
    subject_for,
)

log = logging.getLogger(__name__)

DUPLICATE_WINDOW_S = 24 * 3600
"""Long enough that a job redelivered hours later still publishes each event once."""

RUNTIME_TTL_S = 7 * 24 * 3600
"""Worker bookkeeping (deliveries handed back on shutdown) outlives any event's redeliveries."""

CHUNKS_PER_PULL: Final = 64
"""Object chunks asked for at a time (128 KiB each by default): at most 8 MiB waits in the client."""
CHUNK_PULL_TIMEOUT_S: Final = 10.0

_attempt: contextvars.ContextVar[int] = contextvars.ContextVar("relisten_attempt", default=0)


@contextmanager
def attempt_context(attempt: int) -> Iterator[None]:
    """Events published inside carry ``attempt`` (the run of the job being handled), so that every
    handler passes a retried job's run number on without knowing about it."""
    token = _attempt.set(attempt)
    try:
        yield
    finally:
        _attempt.reset(token)


@dataclass
class Infra:
    """Open handles on everything a service touches in NATS."""

    nc: NATS
    js: JetStreamContext
    jobs: KeyValue
    clips: KeyValue
    notify: KeyValue
    runtime: KeyValue
    audio: ObjectStore
    data: ObjectStore
    idempotency: KeyValue

    async def publish(self, event: Event) -> None:
        """Publish with a deterministic ``Nats-Msg-Id`` and wait for the stream's acknowledgement."""
        if not event.occurred_at:
            event = msgspec.structs.replace(event, occurred_at=time.time())
        if event.attempt < (attempt := _attempt.get()):
            event = msgspec.structs.replace(event, attempt=attempt)
        subject = subject_for(type(event).__struct_config__.tag)  # type: ignore[arg-type]
        ack = await self.js.publish(
            subject, encode(event), stream=STREAM_NAME, headers={"Nats-Msg-Id": message_id(event)}
        )
        if ack.duplicate:
            log.info("duplicate %s for job %s dropped by the stream", subject, event.job_id)

    def read(self, bucket: str, name: str) -> AsyncGenerator[bytes, None]:
        """Object ``name`` of ``bucket`` (:data:`AUDIO_BUCKET` or :data:`DATA_BUCKET`) chunk by chunk,
        as :func:`read_object` reads it; ``NotFoundError`` when there is none."""
        store = {AUDIO_BUCKET: self.audio, DATA_BUCKET: self.data}[bucket]
        return read_object(self.js, store, bucket, name)

    async def get_blob(self, bucket: str, name: str) -> bytes:
        """The bytes of object ``name`` in ``bucket`` (:meth:`read`; the asr and then the clipper read
        each job's audio: with nats-py's own ``get``, half a second per 88 s job)."""
        return b"".join([chunk async for chunk in self.read(bucket, name)])

    async def close(self) -> None:
        """Drain if the server is still there; a connection already lost has nothing left to flush."""
        try:
            await self.nc.drain()
        except (ConnectionError, nats.errors.Error) as exc:
            log.info("NATS connection closed without draining: %r", exc)
            await self.nc.close()


async def read_object(
    js: JetStreamContext, store: ObjectStore, bucket: str, name: str
) -> AsyncGenerator[bytes, None]:
    """Object ``name``'s bytes, chunk by chunk (``NotFoundError`` when there is none): pulled as
    :func:`object_chunks` pulls them; a link object (relisten makes none) through nats-py's ``get``."""
    info = await store.get_info(name)
    if info.is_link():
        yield (await store.get(name)).data or b""
    elif info.size:
        async for chunk in object_chunks(js, bucket, info):
            yield chunk


async def object_chunks(js: JetStreamContext, bucket: str, info: ObjectInfo) -> AsyncGenerator[bytes, None]:
    """An object's chunks, in order, through an ephemeral pull consumer (deleted afterwards); raises
    ``DigestMismatchError`` after the last chunk when they are not what the object's digest says.

    nats-py's ``ObjectStore.get`` reads the chunks through an ordered push consumer, about 12 ms
    a chunk on a 2-core machine, and joins them by repeated concatenation (nats-io/nats.py#703):
    0.26 s for the 2.8 MB WAV of an 88 s recording, 26 s for an hour's 115 MB. Pulled in batches,
    they arrive in 0.012 s and 0.32 s."""
    stream = OBJ_STREAM_TEMPLATE.format(bucket=bucket)
    consumer = await js.add_consumer(
        stream,
        ConsumerConfig(
            name=uuid.uuid4().hex,
            filter_subject=OBJ_CHUNKS_PRE_TEMPLATE.format(bucket=bucket, obj=info.nuid),
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.ALL,
            mem_storage=True,
            inactive_threshold=5 * CHUNK_PULL_TIMEOUT_S,
        ),
    )
    subscription = await js.pull_subscribe_bind(consumer=consumer.name, stream=stream)
    digest = hashlib.sha256()
    try:
        left = info.chunks or 0
        while left > 0:
            for msg in await subscription.fetch(
                batch=min(CHUNKS_PER_PULL, left), timeout=CHUNK_PULL_TIMEOUT_S
            ):
                digest.update(msg.data)
                left -= 1
                yield msg.data
    finally:
        with contextlib.suppress(nats.errors.Error, ConnectionError):
            await js.delete_consumer(stream, consumer.name)
        with contextlib.suppress(nats.errors.Error, ConnectionError):
            await subscription.unsubscribe()
    stated = (info.digest or "").replace(OBJ_DIGEST_TYPE, "").replace(OBJ_DIGEST_TYPE.upper(), "")
    if digest.digest() != base64.urlsafe_b64decode(stated):
        raise DigestMismatchError


async def connect(url: str, name: str) -> NATS:
    """Connect with unlimited reconnects: a broker restart is a passing failure, not a crash."""
    servers = [u.strip() for u in url.split(",") if u.strip()]
    return await nats.connect(
        servers=servers,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        connect_timeout=5,
    )


async def ensure_stream(js: JetStreamContext, replicas: int = 1) -> None:
    config = StreamConfig(
        name=STREAM_NAME,
        subjects=STREAM_SUBJECTS,
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_S,
        num_replicas=replicas,
        max_age=30 * 24 * 3600,
    )
    try:
        await js.stream_info(STREAM_NAME)
    except NotFoundError:
        try:
            await js.add_stream(config)
            return
        except BadRequestError:
            log.debug("stream created concurrently by another service")
    await js.update_stream(config)


async def ensure_kv(js: JetStreamContext, bucket: str, replicas: int, ttl_s: float | None = None) -> KeyValue:
    """Open ``bucket``, creating it first when missing; ``ttl_s``: entries expire after that long."""
    try:
        return await js.key_value(bucket)
    except BucketNotFoundError:
        return await js.create_key_value(
            KeyValueConfig(bucket=bucket, history=1, storage=StorageType.FILE, replicas=replicas, ttl=ttl_s)
        )


async def ensure_object_store(js: JetStreamContext, bucket: str, replicas: int) -> ObjectStore:
    try:
        return await js.object_store(bucket)
    except (BucketNotFoundError, NotFoundError):
        return await js.create_object_store(
            bucket, ObjectStoreConfig(bucket=bucket, storage=StorageType.FILE, replicas=replicas)
        )


async def open_infra(url: str, name: str, replicas: int = 1) -> Infra:
    """Connect and create (idempotently) the stream, KV and Object Store buckets."""
    nc = await connect(url, name)
    try:
        js = nc.jetstream(timeout=30)
        await ensure_stream(js, replicas)
        return Infra(
            nc=nc,
            js=js,
            jobs=await ensure_kv(js, JOBS_BUCKET, replicas),
            clips=await ensure_kv(js, CLIPS_BUCKET, replicas),
            notify=await ensure_kv(js, NOTIFY_BUCKET, replicas),
            runtime=await ensure_kv(js, RUNTIME_BUCKET, replicas, RUNTIME_TTL_S),
            audio=await ensure_object_store(js, AUDIO_BUCKET, replicas),
            data=await ensure_object_store(js, DATA_BUCKET, replicas),
            idempotency=await ensure_kv(js, IDEMPOTENCY_BUCKET, replicas, ttl_s=IDEMPOTENCY_TTL_S),
        )
    except BaseException:
        # A half-opened connection would keep reconnecting in the background forever.
        await nc.close()
        raise
