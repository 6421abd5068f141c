"""Following one job live: the pipeline events read from the stream, turned into the frames of
:mod:`relisten_ingest.live`.

Each follower reads the stream through its own ordered, ephemeral consumer that starts a little
before the job was created (``events_replay_margin_s``). The stream is the audit log, so one
mechanism serves a client that connects before the first event and one that connects an hour
later: the snapshot from the job view is sent first, then the replayed events fill in what the
view cannot hold (the first pass, each clip's outcome) while events the snapshot already covers are
dropped (:func:`relisten_ingest.live.follow`). Replaying costs reading every event published since
the job was created; for the jobs a person watches, that is small.

If a terminal job's final event is no longer in the stream (it was purged or aged out), the end is
taken from the job view once the replay has caught up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Final, TypeVar

import anyio
import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from relisten_contracts import STREAM_NAME, STREAM_SUBJECTS, FirstPass, JobView, Transcript, decode_event
from relisten_contracts.events import AnyEvent
from relisten_runtime.infra import Infra
from relisten_runtime.store import NatsJobStore

from relisten_ingest.adapters import JobViews, TranscriptMissing, load_transcript
from relisten_ingest.domain import TERMINAL, present_view
from relisten_ingest.live import (
    Action,
    FeedState,
    Frame,
    LoadFirstPass,
    ending_frames,
    failed_frame,
    finish_from_view,
    first_pass_data,
    follow,
)

log = logging.getLogger(__name__)

CATCH_UP_IDLE_S: Final = 2.0
"""For a job that was already over: no message for this long means the replay has caught up."""


class JobFeed:
    """The frames of one job for one client; iterate :meth:`frames` (and close it when done)."""

    def __init__(
        self,
        infra: Infra,
        view: JobView,
        *,
        heartbeat_s: float = 15.0,
        replay_margin_s: float = 60.0,
        jobs_path: str = "/v1/jobs",
    ) -> None:
        self.infra = infra
        self.store = NatsJobStore(lambda: infra)
        self.snapshot = view
        self.heartbeat_s = heartbeat_s
        self.replay_margin_s = replay_margin_s
        self.jobs_path = jobs_path
        self.first_pass: FirstPass | None = None
        """The first pass, once it was read (the OpenAI route uses its segment signals)."""
        self.transcript: Transcript | None = None
        """The final transcript, once the job completed and it was read."""

    async def frames(self) -> AsyncGenerator[Frame, None]:
        """``state``, then everything up to ``completed``/``failed``, with keep-alive comments between."""
        state = FeedState(view=self.snapshot)
        job_key = self.snapshot.id.encode()
        yield Frame("state", present_view(self.snapshot, self.jobs_path))
        subscription = await _subscribe(
            self.infra.js, self.snapshot.created_at - self.replay_margin_s, self.snapshot.id
        )
        try:
            caught_up = False
            last_sent = time.monotonic()
            while not state.finished:
                wait_s = self.heartbeat_s - (time.monotonic() - last_sent)
                if state.view.status in TERMINAL:
                    wait_s = min(wait_s, CATCH_UP_IDLE_S)
                actions: list[Action] = []
                try:
                    msg = await subscription.next_msg(timeout=max(wait_s, 0.01))
                except nats.errors.TimeoutError:
                    caught_up = True
                else:
                    caught_up = msg.metadata.num_pending == 0
                    event = _event_of(msg, job_key)
                    if event is not None:
                        actions = follow(state, event)
                if caught_up:
                    actions += finish_from_view(state, state.view)
                if not actions and time.monotonic() - last_sent >= self.heartbeat_s:
                    yield Frame("", comment="keep-alive")
                    last_sent = time.monotonic()
                    if caught_up:
                        # A safety net: if the final event went by unseen, the view still says so.
                        actions = finish_from_view(state, await self._fresh_view())
                for action in actions:
                    async for frame in self._perform(action):
                        yield frame
                        last_sent = time.monotonic()
        finally:
            # Shielded: a client that went away cancels this generator, and the subscription must
            # still be removed (an ordered consumer left behind would go on receiving).
            with anyio.CancelScope(shield=True):
                await _release(self.infra.js, subscription)

    async def _fresh_view(self) -> JobView:
        found = await JobViews.of(self.infra).get(self.snapshot.id)
        return found[0] if found else self.snapshot

    async def _perform(self, action: Action) -> AsyncIterator[Frame]:
        if isinstance(action, Frame):
            yield action
        elif isinstance(action, LoadFirstPass):
            first_pass = await self._load_first_pass(action.words_ref)
            if first_pass is not None:
                self.first_pass = first_pass
                yield Frame("first_pass", first_pass_data(first_pass))
        elif action.error is not None:
            yield failed_frame(action.error)
        else:
            self.transcript = await self._load_transcript(action.transcript_ref)
            for frame in ending_frames(self.snapshot.id, self.transcript, jobs_path=self.jobs_path):
                yield frame

    async def _load_first_pass(self, ref: str) -> FirstPass | None:
        try:
            found = await _bounded(lambda: self.store.first_pass(ref))
        except (TimeoutError, msgspec.DecodeError) as exc:
            log.warning("job %s: first pass %s unreadable: %r", self.snapshot.id, ref, exc)
            return None
        if found is None:
            log.warning("job %s: first pass %s is not stored", self.snapshot.id, ref)
        return found

    async def _load_transcript(self, ref: str | None) -> Transcript | None:
        if not ref:
            log.error("job %s completed without naming its transcript", self.snapshot.id)
            return None
        try:
            return await _bounded(lambda: load_transcript(self.store, ref))
        except (TranscriptMissing, TimeoutError, msgspec.DecodeError) as exc:
            log.error("job %s: transcript %s unreadable: %r", self.snapshot.id, ref, exc)
            return None


T = TypeVar("T")
LOAD_TIMEOUT_S = 10.0
LOAD_ATTEMPTS = 3


async def _bounded(load: Callable[[], Awaitable[T]]) -> T:
    """An Object Store read with a deadline, tried a few times: a read that hangs (seen once in a
    dozen runs) must not freeze the stream, whose heartbeats share this task."""
    for attempt in range(1, LOAD_ATTEMPTS + 1):
        try:
            return await asyncio.wait_for(load(), LOAD_TIMEOUT_S)
        except TimeoutError:
            log.warning("object store read timed out (attempt %d of %d)", attempt, LOAD_ATTEMPTS)
    raise TimeoutError(f"object store read did not finish in {LOAD_ATTEMPTS} x {LOAD_TIMEOUT_S} s")


def _event_of(msg: Msg, job_key: bytes) -> AnyEvent | None:
    """The event in ``msg`` if it may concern the job (a cheap byte search spares decoding the rest)."""
    if job_key not in msg.data:
        return None
    try:
        return decode_event(msg.data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        log.warning("skipping an undecodable message on %s", msg.subject)
        return None


async def _release(js: JetStreamContext, subscription: JetStreamContext.PushSubscription) -> None:
    """Unsubscribe and delete the consumer now rather than when the server notices it idle."""
    name = None
    with contextlib.suppress(Exception):
        name = (await subscription.consumer_info()).name
    with contextlib.suppress(Exception):
        await subscription.unsubscribe()
    if name:
        with contextlib.suppress(Exception):
            await js.delete_consumer(STREAM_NAME, name)


async def _subscribe(js: JetStreamContext, since: float, job_id: str) -> JetStreamContext.PushSubscription:
    start = datetime.fromtimestamp(max(since, 0.0), tz=UTC)
    log.debug("job %s: following the stream from %s", job_id, start.isoformat())
    return await js.subscribe(
        STREAM_SUBJECTS[0],
        stream=STREAM_NAME,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.BY_START_TIME,
        config=ConsumerConfig(opt_start_time=start),
    )
