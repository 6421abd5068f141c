"""``Idempotency-Key`` on the routes that create jobs: a client that sends the same request twice (an
SDK retrying after its own timeout, a user pressing the button again, two racing replicas of a
client) gets the one job the first request created.

* The key is scoped per API key (a hash of it; per client address when the API has no keys): two
  clients using the same key do not see each other's jobs.
* A claim is one entry in the ``relisten-idempotency`` KV bucket (24 h TTL) under a hash of scope
  and key, holding the request's fingerprint (route, form fields, file name and the SHA-256 of the
  file computed while it streamed in) and the id the job will have. Which of two racing requests
  runs is decided by the KV ``create()`` (the bucket is the latch; several ingest replicas share it),
  not by a lock in one process.
* The loser of a race, and any later retry, reads the claim: another fingerprint is 422
  ``idempotency_key_reused``; otherwise it waits until the winner's job view exists and answers
  with that job (the OpenAI route then follows the job like the first request did).
* A winner that fails (bad audio, storage down) removes its claim, so a retry runs afresh. A
  winner that died without doing either leaves a claim without a job; after
  :data:`CLAIM_LEASE_S` another request takes it over (compare-and-set on the entry's revision).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from relisten_contracts import JobView, encode

from relisten_ingest.adapters import JobViews

log = logging.getLogger(__name__)

HEADER: Final = "Idempotency-Key"
MAX_KEY_CHARS: Final = 255
CLAIM_LEASE_S: Final = 900.0
"""A claim whose job does not exist this long after it was made belongs to a request that died."""
WAIT_S: Final = 120.0
"""How long a repeated request waits for the first one's job to be stored before answering 409."""
POLL_FIRST_S: Final = 0.05
POLL_MAX_S: Final = 1.0


class IdempotencyError(Exception):
    """A request whose Idempotency-Key cannot be honoured; ``status`` and ``code`` for the answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class Claim(msgspec.Struct, frozen=True, kw_only=True):
    """What the bucket remembers of one key."""

    fingerprint: str
    job_id: str
    claimed_at: float
    state: Literal["pending", "admitted"] = "pending"


_claim_decoder = msgspec.json.Decoder(Claim)


def parse_key(raw: str | None) -> str | None:
    """The header's value, or None when absent; :class:`IdempotencyError` (400) when unusable."""
    if raw is None:
        return None
    key = raw.strip()
    if not key or len(key) > MAX_KEY_CHARS or not key.isascii() or not key.isprintable():
        raise IdempotencyError(
            400,
            "invalid_idempotency_key",
            f"{HEADER} must be 1 to {MAX_KEY_CHARS} printable ASCII characters",
        )
    return key


def scope_of(api_key: str | None, client: str | None) -> str:
    """Whose keys these are: the API key's hash, or the client's address on an open API."""
    if api_key:
        return "key:" + hashlib.sha256(api_key.encode()).hexdigest()
    return "client:" + (client or "unknown")


def entry_key(scope: str, key: str) -> str:
    """The KV key of a claim: a hash, so any header value is a valid key and none is stored as sent."""
    return hashlib.sha256(f"{scope}\n{key}".encode()).hexdigest()


def fingerprint(route: str, fields: Mapping[str, list[str]], filename: str, file_sha256: str) -> str:
    """What makes two requests "the same": route, every form field value in order, file name and bytes.

    Not the raw body: a client's retry uses a new multipart boundary."""
    canonical = json.dumps(
        {"route": route, "fields": sorted(fields.items()), "filename": filename, "file": file_sha256},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Claimed:
    """This request holds the key: it admits job ``job_id`` and then calls ``admitted`` or ``release``."""

    key: str
    job_id: str
    revision: int


@dataclass(frozen=True)
class Existing:
    """The key's job exists already: answer with it."""

    view: JobView


class IdempotencyStore:
    """Claims in the ``relisten-idempotency`` bucket (see the module docstring)."""

    def __init__(self, kv: KeyValue, views: JobViews, *, lease_s: float = CLAIM_LEASE_S) -> None:
        self.kv = kv
        self.views = views
        self.lease_s = lease_s

    async def _read(self, key: str) -> tuple[Claim, int] | None:
        try:
            entry = await self.kv.get(key)
        except KeyNotFoundError:  # deleted or expired included
            return None
        if not entry.value:
            return None
        return _claim_decoder.decode(entry.value), entry.revision or 0

    async def claim(
        self, key: str, fingerprint: str, job_id: str, *, wait_s: float = WAIT_S
    ) -> Claimed | Existing:
        """Take the key for a new job ``job_id``, or find the job the key already stands for."""
        mine = Claim(fingerprint=fingerprint, job_id=job_id, claimed_at=time.time())
        deadline = time.monotonic() + wait_s
        pause = POLL_FIRST_S
        while True:
            try:
                revision = await self.kv.create(key, encode(mine))
                return Claimed(key, job_id, revision)
            except KeyWrongLastSequenceError:
                pass  # someone holds it: see what for
            found = await self._read(key)
            if found is None:
                # Released or expired between the two calls: try again (after a breath, so that a
                # bucket that keeps refusing cannot spin this loop).
                await asyncio.sleep(POLL_FIRST_S)
                continue
            held, revision = found
            if held.fingerprint != fingerprint:
                raise IdempotencyError(
                    422,
                    "idempotency_key_reused",
                    f"this {HEADER} was used for a different request (another file or other fields); "
                    "use a new key for a new request",
                )
            view = await self.views.get(held.job_id)
            if view is not None:
                return Existing(view[0])
            if held.state == "admitted":
                raise IdempotencyError(
                    404, "job_not_found", f"job {held.job_id}, created under this {HEADER}, was deleted"
                )
            if time.time() - held.claimed_at > self.lease_s:
                # The holder died between its claim and its job: take the claim over, once.
                try:
                    revision = await self.kv.update(key, encode(mine), last=revision)
                except KeyWrongLastSequenceError:
                    continue
                log.warning("%s claim for job %s was abandoned; taken over", HEADER, held.job_id)
                return Claimed(key, job_id, revision)
            if time.monotonic() >= deadline:
                raise IdempotencyError(
                    409,
                    "idempotency_key_in_use",
                    f"a request with this {HEADER} is still being processed; retry later",
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, POLL_MAX_S)

    async def admitted(self, claimed: Claimed, fingerprint: str) -> None:
        """Mark the claim's job as stored (so that a retry after the job's deletion says so)."""
        done = Claim(fingerprint=fingerprint, job_id=claimed.job_id, claimed_at=time.time(), state="admitted")
        try:
            await self.kv.update(claimed.key, encode(done), last=claimed.revision)
        except Exception as exc:  # the job exists: retries find it by its view either way
            log.warning("could not mark the %s claim of job %s admitted: %r", HEADER, claimed.job_id, exc)

    async def release(self, claimed: Claimed) -> None:
        """Give the key back after a failed admission, unless someone took it over meanwhile."""
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(self._release(claimed))

    async def _release(self, claimed: Claimed) -> None:
        try:
            await self.kv.delete(claimed.key, last=claimed.revision)
        except KeyWrongLastSequenceError:
            pass
        except Exception as exc:
            log.warning("could not release the %s claim of job %s: %r", HEADER, claimed.job_id, exc)
