"""NATS connection, idempotent creation of the stream and buckets, and event publishing."""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import msgspec
import nats
import nats.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, ObjectStoreConfig, StorageType, StreamConfig
from nats.js.errors import BadRequestError, BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore
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

    async def get_blob(self, store: ObjectStore, name: str) -> bytes:
        result = await store.get(name)
        return result.data or b""

    async def close(self) -> None:
        """Drain if the server is still there; a connection already lost has nothing left to flush."""
        try:
            await self.nc.drain()
        except (ConnectionError, nats.errors.Error) as exc:
            log.info("NATS connection closed without draining: %r", exc)
            await self.nc.close()


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
