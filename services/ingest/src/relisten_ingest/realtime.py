"""``GET /v1/realtime?intent=transcription``: live transcription over a WebSocket, in OpenAI's realtime
transcription protocol, refined turn by turn; the session ends as an ordinary job.

One session is one WebSocket in one ingest process; the decoding is not here. While a turn is being
spoken, its audio so far goes to ``relisten-live.first_pass`` (any asr replica) every
``RELISTEN_LIVE_PARTIAL_INTERVAL_S`` of new audio (a cheap decode: only deltas are made of it), and
the words two answers in a row agree on, or one answer heard surely, are sent as
``conversation.item.input_audio_transcription.delta``. When the turn ends (server VAD, a manual
commit, or the length cap) it gets a final first pass, then ``relisten-live.refine`` (any corrector
replica) re-listens to its doubtful stretches; ``...completed`` carries the refined text and
``relisten.turn.refined`` the words, sources and corrections. Finished turns are handled one at a
time, in order.

Keeping up: a session that falls behind (a finished turn waited longer than
``RELISTEN_LIVE_MAX_DELAY_S``, or turns queue behind one another) says so (``relisten.session.degraded``)
and completes turns with their first-pass text, without refinement, until it has caught up
(``relisten.session.recovered``); at most one partial pass per session is in flight (an asr replica
decodes them on a lane of their own, beside the final passes, or after them). A request that times
out or finds no replica fails its turn (``...failed``), never the session.

When the socket closes, the audio and the transcript are stored under the job id announced in
``session.created`` (``session.relisten.job_id``), and ``job.created`` (``source: live``, which the asr
skips) and ``job.merged`` are published, so the job is in ``/v1/jobs`` like any other.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import tempfile
import time
import uuid
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import msgspec
import nats.errors
import numpy as np
from fastapi import APIRouter, WebSocket
from relisten_contracts import (
    ErrorInfo,
    FirstPass,
    JobCreated,
    JobMerged,
    JobOptions,
    encode,
    first_pass_words,
    names,
    stats_fields,
)
from relisten_contracts.live import (
    LIVE_FIRST_PASS_SUBJECT,
    LIVE_REFINE_SUBJECT,
    LiveFirstPassReply,
    LiveFirstPassRequest,
    LiveRefineReply,
    LiveRefineRequest,
    decode_live,
    encode_live,
)
from relisten_runtime.infra import Infra
from relisten_runtime.store import NatsJobStore
from starlette.websockets import WebSocketDisconnect, WebSocketState

from relisten_ingest.access import bearer_token, key_matches
from relisten_ingest.adapters import admit_job
from relisten_ingest.domain import apply_event
from relisten_ingest.limits import client_identity
from relisten_ingest.realtime_audio import (
    SAMPLE_RATE,
    EnergyVad,
    Resampler,
    SpeechStarted,
    quietest_cut,
)
from relisten_ingest.realtime_protocol import (
    ConfigError,
    SessionConfig,
    apply_update,
    beta_session_object,
    error_event,
    session_object,
)
from relisten_ingest.realtime_turns import (
    DeltaTracker,
    FinishedTurn,
    join_delta,
    logprobs,
    partial_delta,
    plain_text,
    session_first_pass,
    session_transcript,
    shifted_corrections,
    shifted_words,
)
from relisten_ingest.runtime import IngestRuntime, NotReady
from relisten_ingest.settings import IngestSettings

log = logging.getLogger(__name__)

Reply = TypeVar("Reply", LiveFirstPassReply, LiveRefineReply)

router = APIRouter()

REALTIME_PATH: Final = "/v1/realtime"
SUBPROTOCOL: Final = "realtime"
KEY_SUBPROTOCOL: Final = "openai-insecure-api-key."
"""Browsers cannot set headers on a WebSocket: OpenAI's browser clients offer the key as a subprotocol."""
MIN_COMMIT_S: Final = 0.1
MAX_REQUEST_AUDIO_S: Final = 24.0
"""Context and turn together: 768 kB of pcm16, within NATS's default 1 MiB payload limit."""
PREVIOUS_TURNS: Final = 3
"""Turns whose text goes with a refinement request as the text before it."""
CUT_SEARCH_S: Final = 2.0
"""A turn at its length limit is cut at the quietest point of its last two seconds."""
DRAIN_S_PER_TURN: Final = 2.0
MAX_QUEUED_TURNS: Final = 2
"""A session with this many ended turns waiting behind the one being finished is behind."""
PREVIEW_CHARS: Final = 500

# WebSocket close codes (RFC 6455)
NORMAL: Final = 1000
POLICY: Final = 1008
TRY_LATER: Final = 1013
TOO_BIG: Final = 1009


def _key_from_subprotocols(offered: list[str]) -> str | None:
    for protocol in offered:
        if protocol.startswith(KEY_SUBPROTOCOL):
            return protocol[len(KEY_SUBPROTOCOL) :]
    return None


def presented_key(websocket: WebSocket) -> str | None:
    """The API key: ``Authorization: Bearer``, ``?access_token=`` or the browser subprotocol."""
    header = websocket.headers.get("authorization")
    if header:
        token = bearer_token(header)
        if token:
            return token
    query = websocket.query_params.get("access_token")
    if query:
        return query
    return _key_from_subprotocols(list(websocket.scope.get("subprotocols", [])))


def context_start(turn_start: int, turn_samples: int, wanted_s: float) -> int:
    """Where the session audio a turn is decoded with begins (a sample): up to ``wanted_s`` before
    the turn, and no more than keeps a request within ``MAX_REQUEST_AUDIO_S``."""
    room = MAX_REQUEST_AUDIO_S - turn_samples / SAMPLE_RATE
    seconds = max(0.0, min(wanted_s, room))
    return max(0, turn_start - int(seconds * SAMPLE_RATE))


def partial_context_s(settings: IngestSettings, deltas: DeltaTracker) -> float:
    """Seconds of the session audio before a turn that its next partial pass is decoded with: none
    until the turn's first delta went out (``RELISTEN_INGEST_LIVE_FIRST_PARTIAL_CONTEXT_S``), then
    ``RELISTEN_INGEST_LIVE_PARTIAL_CONTEXT_S``."""
    return settings.live_partial_context_s if deltas.sent else settings.live_first_partial_context_s


def session_budget(turn_end: int | None, redecoded_s: float, shared: bool) -> tuple[float, float]:
    """A refinement request's ``session_audio_s`` and ``session_redecoded_s``, which share the
    session's re-decode budget: the session's audio up to the end of the turn and what earlier turns
    re-listened to (zeros when not ``shared``: the turn's own fraction)."""
    if not shared or turn_end is None:
        return 0.0, 0.0
    return turn_end / SAMPLE_RATE, redecoded_s


def user_item(item_id: str, transcript: str | None) -> dict[str, Any]:
    """The user message a committed turn becomes in OpenAI's conversation (``conversation.item.added``
    when committed, ``conversation.item.done`` with its transcript when completed)."""
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "role": "user",
        "status": "completed",
        "content": [{"type": "input_audio", "transcript": transcript}],
    }


@dataclass
class Turn:
    """One item: the audio between its start and its end on the session timeline."""

    item_id: str
    start: int
    """Session sample where the turn's audio begins."""
    previous_item_id: str | None
    end: int | None = None
    deltas: DeltaTracker = field(default_factory=DeltaTracker)
    partial_at: int = 0
    """Turn length (samples) when the last partial pass was asked for."""
    ended_at: float = 0.0
    """Monotonic time the turn ended (its delay is measured from here)."""
    cancelled: bool = False


class RealtimeSession:
    """The state of one WebSocket session and its three activities: receiving client events,
    partial passes of the turn being spoken, and the finishing of ended turns (one at a time)."""

    def __init__(self, websocket: WebSocket, runtime: IngestRuntime, infra: Infra) -> None:
        self.ws = websocket
        self.runtime = runtime
        self.settings = runtime.settings
        self.infra = infra
        self.job_id = uuid.uuid4().hex
        self.session_id = f"sess_{self.job_id}"
        self.config = SessionConfig()
        self.beta = False
        self.resampler = Resampler(self.config.format.rate)
        self.vad = EnergyVad(self.config.vad) if self.config.vad else None
        self.recording = bytearray()
        """The whole session at 16 kHz pcm16 (turns are slices of it)."""
        self.turn: Turn | None = None
        self.last_item_id: str | None = None
        self.ending: asyncio.Queue[Turn | None] = asyncio.Queue()
        """Ended turns in order, then ``None`` once the input is closed."""
        self.input_closed = False
        self.finished: list[FinishedTurn] = []
        self.partial_task: asyncio.Task[None] | None = None
        self.degraded = False
        self.engine = ""
        self.created_at = time.time()
        self._events = 0
        self._send_lock = asyncio.Lock()
        self._open = True
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- sending ---------------------------------------------------------------------------------

    def _event_id(self) -> str:
        self._events += 1
        return f"event_{self._events:06d}"

    async def send(self, event_type: str, **fields: Any) -> None:
        if not self._open:
            return
        event = {"event_id": self._event_id(), "type": event_type, **fields}
        async with self._send_lock:
            try:
                await self.ws.send_text(json.dumps(event, ensure_ascii=False))
            except (WebSocketDisconnect, RuntimeError, OSError):
                self._open = False

    async def send_error(
        self,
        code: str,
        message: str,
        *,
        kind: str = "invalid_request_error",
        param: str | None = None,
        client_event_id: str | None = None,
    ) -> None:
        if not self._open:
            return
        event = error_event(
            self._event_id(), code, message, kind=kind, param=param, client_event_id=client_event_id
        )
        async with self._send_lock:
            try:
                await self.ws.send_text(json.dumps(event))
            except (WebSocketDisconnect, RuntimeError, OSError):
                self._open = False

    def relisten_facts(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "job_url": f"/v1/jobs/{self.job_id}",
            "refine": self.settings.live_refine,
            "max_turn_s": self.settings.live_max_turn_s,
            "sample_rate": SAMPLE_RATE,
        }

    async def send_session(self, event_type: str) -> None:
        if self.beta:
            body = beta_session_object(self.config, self.session_id, self.relisten_facts())
            await self.send(event_type.replace("session.", "transcription_session."), session=body)
        else:
            await self.send(
                event_type, session=session_object(self.config, self.session_id, self.relisten_facts())
            )

    @property
    def turns_waiting(self) -> int:
        """Ended turns queued behind the one being finished."""
        return self.ending.qsize() - (1 if self.input_closed else 0)

    # --- the timeline ------------------------------------------------------------------------------

    @property
    def samples(self) -> int:
        return len(self.recording) // 2

    def audio_of(self, start: int, end: int) -> bytes:
        return bytes(self.recording[start * 2 : end * 2])

    def _new_turn(self, start: int) -> Turn:
        self.turn = Turn(
            item_id=f"item_{uuid.uuid4().hex[:20]}", start=start, previous_item_id=self.last_item_id
        )
        return self.turn

    async def _end_turn(self, end: int) -> None:
        """Close the open turn at ``end`` and queue it for finishing."""
        turn = self.turn
        if turn is None:
            return
        self.turn = None
        turn.end = end
        turn.ended_at = time.monotonic()
        self.last_item_id = turn.item_id
        await self.send(
            "input_audio_buffer.committed", item_id=turn.item_id, previous_item_id=turn.previous_item_id
        )
        await self.send(
            "conversation.item.added",
            previous_item_id=turn.previous_item_id,
            item=user_item(turn.item_id, None),
        )
        self.ending.put_nowait(turn)

    # --- client events ------------------------------------------------------------------------------

    async def handle(self, raw: str) -> None:
        try:
            event = json.loads(raw)
        except ValueError:
            await self.send_error("invalid_json", "the message is not JSON")
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            await self.send_error("invalid_json", "a client event is a JSON object with a string 'type'")
            return
        kind: str = event["type"]
        client_event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        if kind in ("session.update", "transcription_session.update"):
            await self._update(
                event, beta=kind == "transcription_session.update", client_event_id=client_event_id
            )
        elif kind == "input_audio_buffer.append":
            await self._append(event, client_event_id)
        elif kind == "input_audio_buffer.commit":
            await self._commit(client_event_id)
        elif kind == "input_audio_buffer.clear":
            await self._clear()
        else:
            await self.send_error(
                "unknown_event_type",
                f"unsupported client event {kind[:80]!r}: a transcription session takes session.update, "
                "input_audio_buffer.append, input_audio_buffer.commit and input_audio_buffer.clear",
                param="type",
                client_event_id=client_event_id,
            )

    async def _update(self, event: dict[str, Any], *, beta: bool, client_event_id: str | None) -> None:
        try:
            config = apply_update(
                self.config, event.get("session"), beta=beta, max_prompt=self.settings.max_prompt_chars
            )
        except ConfigError as exc:
            await self.send_error(exc.code, str(exc), param=exc.param, client_event_id=client_event_id)
            return
        if config.language is not None and config.language != self.config.language:
            # the same check as an upload's: a language no configured model transcribes is refused
            infra = self.infra
            refused = await self.runtime.languages.refusal(
                NatsJobStore(lambda: infra), JobOptions(language=config.language)
            )
            if refused is not None:
                await self.send_error(
                    "unsupported_language",
                    refused,
                    param="session.audio.input.transcription.language",
                    client_event_id=client_event_id,
                )
                return
        self.beta = beta
        if config.format != self.config.format:
            self.resampler = Resampler(config.format.rate)
        if config.vad != self.config.vad:
            self.vad = EnergyVad(config.vad) if config.vad else None
            if self.vad is not None:
                self.vad.position = self.samples
                if self.turn is not None:
                    self.vad.in_speech = True
        self.config = config
        await self.send_session("session.updated")

    async def _append(self, event: dict[str, Any], client_event_id: str | None) -> None:
        audio = event.get("audio")
        if not isinstance(audio, str):
            await self.send_error(
                "invalid_audio", "'audio' must be base64 text", param="audio", client_event_id=client_event_id
            )
            return
        try:
            data = base64.b64decode(audio, validate=True)
            samples = self.config.format.decode(data)
        except (binascii.Error, ValueError) as exc:
            await self.send_error(
                "invalid_audio",
                f"'audio' is not valid base64 {self.config.format.type}: {exc}",
                param="audio",
                client_event_id=client_event_id,
            )
            return
        if len(samples) == 0:
            return
        converted = self.resampler(samples)
        if (self.samples + len(converted)) / SAMPLE_RATE > self.settings.max_duration_s:
            await self.send_error(
                "session_too_long",
                f"a session holds at most {self.settings.max_duration_s:g} s of audio; open a new one",
                kind="invalid_request_error",
            )
            raise SessionOver(TOO_BIG)
        before = self.samples
        self.recording += converted.astype("<i2").tobytes()
        if self.vad is None:
            if self.turn is None:
                self._new_turn(before)
        else:
            for change in self.vad.feed(converted):
                if isinstance(change, SpeechStarted):
                    if self.turn is None:
                        turn = self._new_turn(change.sample)
                        await self.send(
                            "input_audio_buffer.speech_started",
                            audio_start_ms=round(change.sample * 1000 / SAMPLE_RATE),
                            item_id=turn.item_id,
                        )
                elif self.turn is not None:
                    await self.send(
                        "input_audio_buffer.speech_stopped",
                        audio_end_ms=round(change.sample * 1000 / SAMPLE_RATE),
                        item_id=self.turn.item_id,
                    )
                    await self._end_turn(change.sample)
        await self._cap_turn()
        self._maybe_partial()

    async def _cap_turn(self) -> None:
        """Commit the open turn at its length limit, cut at its quietest point; the audio after the
        cut starts the next turn (speech goes on, or the client has not committed yet)."""
        limit = int(self.settings.live_max_turn_s * SAMPLE_RATE)
        while self.turn is not None and self.samples - self.turn.start >= limit:
            turn = self.turn
            audio = np.frombuffer(self.audio_of(turn.start, turn.start + limit), dtype="<i2")
            cut = turn.start + max(quietest_cut(audio, int(CUT_SEARCH_S * SAMPLE_RATE)), SAMPLE_RATE)
            await self._end_turn(cut)
            following = self._new_turn(cut)
            if self.vad is not None:
                await self.send(
                    "input_audio_buffer.speech_started",
                    audio_start_ms=round(cut * 1000 / SAMPLE_RATE),
                    item_id=following.item_id,
                )

    async def _commit(self, client_event_id: str | None) -> None:
        turn = self.turn
        if turn is None or (self.samples - turn.start) / SAMPLE_RATE < MIN_COMMIT_S:
            await self.send_error(
                "input_audio_buffer_commit_empty",
                f"the input audio buffer holds less than {MIN_COMMIT_S * 1000:.0f} ms of audio",
                client_event_id=client_event_id,
            )
            return
        if self.vad is not None:
            self.vad.reset()
        await self._end_turn(self.samples)

    async def _clear(self) -> None:
        if self.turn is not None:
            self.turn.cancelled = True
            self.turn = None
        if self.vad is not None:
            self.vad.reset()
        await self.send("input_audio_buffer.cleared")

    # --- partial passes ------------------------------------------------------------------------------

    @property
    def _padding_s(self) -> float:
        """Audio a turn begins with before its speech (the server VAD's prefix padding)."""
        return self.vad.settings.prefix_padding_ms / 1000 if self.vad is not None else 0.0

    def _maybe_partial(self) -> None:
        turn = self.turn
        if turn is None or self.degraded:
            return
        if self.partial_task is not None and not self.partial_task.done():
            return  # coalesced: the next one will carry all the audio that came meanwhile
        length = self.samples - turn.start
        if length < (self._padding_s + self.settings.live_first_partial_s) * SAMPLE_RATE:
            return  # too little speech yet to hear a word in
        if length - turn.partial_at < self.settings.live_partial_interval_s * SAMPLE_RATE:
            return
        turn.partial_at = length
        self.partial_task = self._spawn(self._partial(turn, self.audio_of(turn.start, turn.start + length)))

    def _spawn(self, work: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _partial(self, turn: Turn, audio: bytes) -> None:
        reply, _ = await self._first_pass(
            turn,
            audio,
            final=False,
            context=self.context_before(turn, len(audio), partial_context_s(self.settings, turn.deltas)),
        )
        if reply is None or reply.first_pass is None or turn.end is not None or turn.cancelled:
            return  # a late or failed partial is simply dropped: the turn's final pass covers it
        _, new = partial_delta(
            turn.deltas,
            reply.first_pass.words,
            len(audio) / 2 / SAMPLE_RATE,
            len(audio) / 2 / SAMPLE_RATE - self._padding_s,
            settle_s=self.settings.live_settle_s,
            sure_probability=self.settings.live_sure_probability,
            first_delta_s=self.settings.live_first_delta_s,
        )
        if new:
            await self._send_delta(turn, new, reply.first_pass)

    async def _send_delta(self, turn: Turn, new: list[str], first: FirstPass) -> None:
        fields: dict[str, Any] = {
            "item_id": turn.item_id,
            "content_index": 0,
            "delta": join_delta(new, len(turn.deltas.sent) - len(new)),
        }
        if self.config.logprobs:
            start = turn.deltas.resumed_at
            fields["logprobs"] = logprobs(first.words[start : start + len(new)])
        await self.send("conversation.item.input_audio_transcription.delta", **fields)

    # --- NATS requests ---------------------------------------------------------------------------------

    def context_before(self, turn: Turn, turn_bytes: int, wanted_s: float | None = None) -> bytes:
        """The session audio just before ``turn`` that its first passes are decoded with (see
        :func:`context_start`; ``RELISTEN_LIVE_CONTEXT_S`` by default)."""
        wanted = self.settings.live_context_s if wanted_s is None else wanted_s
        return self.audio_of(context_start(turn.start, turn_bytes // 2, wanted), turn.start)

    async def _first_pass(
        self, turn: Turn, audio: bytes, *, final: bool, context: bytes = b""
    ) -> tuple[LiveFirstPassReply | None, ErrorInfo | None]:
        request = LiveFirstPassRequest(
            session_id=self.session_id,
            turn_id=turn.item_id,
            audio=context + audio,
            context_s=len(context) / 2 / SAMPLE_RATE,
            language=self.config.language,
            prompt=self.config.prompt,
            final=final,
            expires_at=time.time() + self.settings.live_request_timeout_s,
        )
        return await self._ask(
            LIVE_FIRST_PASS_SUBJECT,
            request,
            LiveFirstPassReply,
            replica="asr",
            timeout_code="asr_timeout",
            waited_for="first pass",
        )

    async def _refine(
        self, turn: Turn, audio: bytes, first: FirstPass
    ) -> tuple[LiveRefineReply | None, ErrorInfo | None]:
        session_audio_s, session_redecoded_s = session_budget(
            turn.end, sum(t.audio_redecoded_seconds for t in self.finished), self.settings.live_session_budget
        )
        request = LiveRefineRequest(
            session_id=self.session_id,
            turn_id=turn.item_id,
            audio=audio,
            first_pass=first,
            prompt=self.config.prompt,
            expires_at=time.time() + self.settings.live_request_timeout_s,
            previous_text=" ".join(plain_text(t.words) for t in self.finished[-PREVIOUS_TURNS:]),
            session_audio_s=session_audio_s,
            session_redecoded_s=session_redecoded_s,
        )
        return await self._ask(
            LIVE_REFINE_SUBJECT,
            request,
            LiveRefineReply,
            replica="corrector",
            timeout_code="refine_timeout",
            waited_for="refinement",
        )

    async def _ask(
        self,
        subject: str,
        request: msgspec.Struct,
        reply_type: type[Reply],
        *,
        replica: str,
        timeout_code: str,
        waited_for: str,
    ) -> tuple[Reply | None, ErrorInfo | None]:
        """One live request to any ``replica`` (core NATS request/reply): its reply and the reply's own
        error, or None and why nothing usable came back."""
        timeout = self.settings.live_request_timeout_s
        try:
            msg = await self.infra.nc.request(subject, encode_live(request), timeout=timeout)
        except nats.errors.NoRespondersError:
            return None, ErrorInfo(
                code=f"{replica}_unavailable", message=f"no {replica} replica answers live requests"
            )
        except nats.errors.TimeoutError:
            return None, ErrorInfo(code=timeout_code, message=f"no {waited_for} within {timeout:g} s")
        except nats.errors.Error as exc:
            return None, ErrorInfo(code=f"{replica}_unavailable", message=f"{type(exc).__name__}: {exc}")
        try:
            reply = decode_live(msg.data, reply_type)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return None, ErrorInfo(code="bad_reply", message=str(exc))
        return reply, reply.error

    # --- finishing turns ----------------------------------------------------------------------------

    async def finish_turns(self) -> None:
        """Finish ended turns one at a time, in order, until the ``None`` that closes the session."""
        while True:
            turn = await self.ending.get()
            if turn is None:
                return
            try:
                await self._finish(turn)
            except Exception:
                log.exception("session %s: finishing turn %s failed", self.session_id, turn.item_id)
                await self._fail(
                    turn, ErrorInfo(code="internal_error", message="the turn could not be finished")
                )

    async def _fail(self, turn: Turn, error: ErrorInfo) -> None:
        self.runtime.metrics.live_turns.labels("failed").inc()
        await self.send(
            "conversation.item.input_audio_transcription.failed",
            item_id=turn.item_id,
            content_index=0,
            error={"type": "server_error", "code": error.code, "message": error.message, "param": None},
        )

    async def _set_degraded(self, degraded: bool, reason: str, delay_s: float) -> None:
        if degraded == self.degraded:
            return
        self.degraded = degraded
        if degraded:
            self.runtime.metrics.live_degraded.labels(reason).inc()
            log.warning(
                "session %s falls behind (%s, %.1f s): completing turns without refinement",
                self.session_id,
                reason,
                delay_s,
            )
            await self.send(
                "relisten.session.degraded",
                reason=reason,
                delay_s=round(delay_s, 3),
                pending_turns=self.turns_waiting,
                message="the server is behind: turns complete with first-pass text, without refinement",
            )
        else:
            await self.send("relisten.session.recovered", delay_s=round(delay_s, 3))

    async def _finish(self, turn: Turn) -> None:
        assert turn.end is not None
        audio = self.audio_of(turn.start, turn.end)
        offset = turn.start / SAMPLE_RATE
        reply, error = await self._first_pass(
            turn, audio, final=True, context=self.context_before(turn, len(audio))
        )
        if reply is None or reply.first_pass is None:
            await self._fail(turn, error or ErrorInfo(code="first_pass_failed", message="no first pass"))
            if error is not None and error.code.endswith("timeout"):
                await self._set_degraded(True, error.code, time.monotonic() - turn.ended_at)
            return
        first = reply.first_pass
        self.engine = first.engine
        new = turn.deltas.final([w.word for w in first.words])
        if new:
            await self._send_delta(turn, new, first)

        delay = time.monotonic() - turn.ended_at
        # One turn waiting behind this one is normal (a turn cut at the length limit is followed at
        # once by its tail); two mean turns end faster than they are finished.
        queued = self.turns_waiting >= MAX_QUEUED_TURNS
        if delay > self.settings.live_max_delay_s or queued:
            await self._set_degraded(True, "turns_queued" if queued else "delay", delay)
        elif self.degraded and delay < self.settings.live_max_delay_s / 2:
            await self._set_degraded(False, "", delay)

        words = first_pass_words(first)
        finished = FinishedTurn(item_id=turn.item_id, offset_s=offset, first_pass=first, words=words)
        refined, skipped = False, "off"
        if self.settings.live_refine and not self.degraded and first.words:
            answer, refine_error = await self._refine(turn, audio, first)
            if answer is not None and answer.error is None:
                refined, skipped = True, ""
                finished = FinishedTurn(
                    item_id=turn.item_id,
                    offset_s=offset,
                    first_pass=first,
                    words=answer.words,
                    corrections=answer.corrections,
                    words_flagged=answer.words_flagged,
                    second_pass_seconds=answer.seconds,
                    audio_redecoded_seconds=answer.audio_redecoded_seconds,
                )
            else:
                skipped = refine_error.code if refine_error else "refine_failed"
                if skipped.endswith("timeout"):
                    await self._set_degraded(True, skipped, time.monotonic() - turn.ended_at)
        elif self.settings.live_refine and self.degraded:
            skipped = "degraded"
        elif not first.words:
            skipped = "no_words"
        self.finished.append(finished)

        completed: dict[str, Any] = {
            "item_id": turn.item_id,
            "content_index": 0,
            "transcript": plain_text(finished.words),
            "usage": {"type": "duration", "seconds": round((turn.end - turn.start) / SAMPLE_RATE, 3)},
        }
        if self.config.logprobs:
            completed["logprobs"] = logprobs(finished.words)
        await self.send("conversation.item.input_audio_transcription.completed", **completed)
        await self.send(
            "conversation.item.done",
            previous_item_id=turn.previous_item_id,
            item=user_item(turn.item_id, completed["transcript"]),
        )
        self.runtime.metrics.live_turns.labels("refined" if refined else "first_pass").inc()
        self.runtime.metrics.live_turn_delay.observe(time.monotonic() - turn.ended_at)
        await self.send(
            "relisten.turn.refined",
            item_id=turn.item_id,
            start=round(offset, 3),
            end=round(turn.end / SAMPLE_RATE, 3),
            refined=refined,
            skipped=skipped or None,
            first_pass_text=plain_text(first.words),
            transcript=plain_text(finished.words),
            words=[
                {
                    "word": w.word,
                    "start": round(w.start, 3),
                    "end": round(w.end, 3),
                    "probability": round(w.probability, 4),
                    "source": w.source,
                }
                for w in shifted_words(finished.words, offset)
            ],
            corrections=[msgspec.to_builtins(c) for c in shifted_corrections(finished.corrections, offset)],
            delay_s=round(time.monotonic() - turn.ended_at, 3),
        )

    # --- the end: the session as a job -------------------------------------------------------------

    async def close_input(self) -> None:
        """No more client events: end the turn being spoken (it is part of the job) and let the
        finisher stop after the turns already queued."""
        if self.turn is not None and (self.samples - self.turn.start) / SAMPLE_RATE >= MIN_COMMIT_S:
            await self._end_turn(self.samples)
        if self.partial_task is not None:
            self.partial_task.cancel()
        self.input_closed = True
        self.ending.put_nowait(None)

    async def store_job(self) -> None:
        if not self.samples:
            log.info("session %s ended without audio: no job", self.session_id)
            return
        duration = self.samples / SAMPLE_RATE
        options = JobOptions(
            language=self.config.language,
            prompt=self.config.prompt,
            correction="auto" if self.settings.live_refine else "off",
        )
        event = JobCreated(
            job_id=self.job_id,
            occurred_at=self.created_at,
            filename=f"live-{self.session_id}.wav",
            original_ref=names.original_object(self.job_id),
            audio_ref=names.audio_object(self.job_id),
            duration_s=duration,
            sample_rate=SAMPLE_RATE,
            options=options,
            created_at=self.created_at,
            source="live",
        )
        view = apply_event(None, event)
        assert view is not None
        first = session_first_pass(self.finished, duration, self.engine)
        transcript = session_transcript(self.job_id, self.finished, duration)
        with tempfile.TemporaryDirectory(dir=self.settings.tmp_dir) as scratch:
            wav = Path(scratch) / "audio.wav"
            await asyncio.to_thread(_write_wav, wav, bytes(self.recording))
            # The original is the same 16 kHz WAV: what arrived was raw samples, not a file.
            await admit_job(self.infra, view, event, original=wav, normalised=wav)
        await self.infra.data.put(names.first_pass_object(self.job_id), encode(first))
        await self.infra.data.put(names.transcript_object(self.job_id), encode(transcript))
        stats = transcript.stats
        await self.infra.publish(
            JobMerged(
                job_id=self.job_id,
                transcript_ref=names.transcript_object(self.job_id),
                language=transcript.language,
                duration_s=duration,
                text_preview=transcript.text[:PREVIEW_CHARS],
                **stats_fields(stats),
                options=options,
                warnings=transcript.warnings,
            )
        )
        self.runtime.metrics.admitted(view)
        log.info(
            "session %s stored as job %s: %.1f s, %d turns, %d words",
            self.session_id,
            self.job_id,
            duration,
            len(self.finished),
            len(transcript.words),
        )


class SessionOver(Exception):
    """End the session: close the socket with ``code``."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _write_wav(path: Path, pcm: bytes) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm)


async def _refuse(websocket: WebSocket, code: str, message: str, close_code: int, kind: str) -> None:
    event = error_event("event_000000", code, message, kind=kind)
    with contextlib.suppress(Exception):
        await websocket.send_text(json.dumps(event))
        await websocket.close(close_code, reason=code)


def _admission(websocket: WebSocket, runtime: IngestRuntime) -> tuple[str, str, int, str] | None:
    """Why this connection may not open a session: (code, message, close code, error type), or None."""
    settings = runtime.settings
    keys = [key.get_secret_value().encode() for key in settings.api_keys if key.get_secret_value()]
    token = presented_key(websocket)
    if keys:
        if token is None:
            return (
                "missing_api_key",
                "this server needs an API key: 'Authorization: Bearer <key>', "
                "'?access_token=<key>' or the subprotocol 'openai-insecure-api-key.<key>'",
                POLICY,
                "invalid_request_error",
            )
        if not key_matches(token, keys):
            return ("invalid_api_key", "the API key is not valid", POLICY, "invalid_request_error")
        websocket.scope["relisten.api_key"] = token
    intent = websocket.query_params.get("intent", "transcription")
    if intent != "transcription":
        return (
            "unsupported_intent",
            f"this server runs transcription sessions only (?intent=transcription), not {intent[:40]!r}",
            POLICY,
            "invalid_request_error",
        )
    limiter = runtime.rate_limiter
    if limiter is not None:
        wait = limiter.take(client_identity(websocket.scope))
        if wait is not None:
            return (
                "rate_limited",
                f"too many requests; retry after {max(1, round(wait))} s",
                TRY_LATER,
                "invalid_request_error",
            )
    return None


@router.websocket(REALTIME_PATH)
async def realtime(websocket: WebSocket) -> None:
    runtime: IngestRuntime = websocket.app.state.ingest
    offered = list(websocket.scope.get("subprotocols", []))
    await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    refusal = _admission(websocket, runtime)
    if refusal is not None:
        code, message, close_code, kind = refusal
        if code == "rate_limited":
            runtime.metrics.refused.labels(code).inc()
        await _refuse(websocket, code, message, close_code, kind)
        return
    try:
        infra = runtime.infra
    except NotReady as exc:
        await _refuse(websocket, "service_unavailable", str(exc), TRY_LATER, "server_error")
        return
    if not runtime.live_slots.try_take():
        runtime.metrics.refused.labels("too_many_sessions").inc()
        await _refuse(
            websocket,
            "too_many_sessions",
            f"this server holds {runtime.settings.max_live_sessions} live sessions at once; retry later",
            TRY_LATER,
            "server_error",
        )
        return
    runtime.metrics.live_sessions.inc()
    try:
        await _run(websocket, runtime, infra)
    finally:
        runtime.live_slots.give_back()
        runtime.metrics.live_sessions.dec()


async def _run(websocket: WebSocket, runtime: IngestRuntime, infra: Infra) -> None:
    session = RealtimeSession(websocket, runtime, infra)
    finisher = asyncio.create_task(session.finish_turns(), name=f"finish-{session.session_id}")
    log.info("session %s opened (job %s)", session.session_id, session.job_id)
    close_code = NORMAL
    try:
        await session.send_session("session.created")
        while True:
            try:
                async with asyncio.timeout(runtime.settings.live_session_idle_s):
                    message = await websocket.receive()
            except TimeoutError:
                await session.send_error("session_idle", "nothing received for too long; closing")
                break
            if message["type"] == "websocket.disconnect":
                break
            text = message.get("text")
            if text is None:
                await session.send_error("invalid_json", "send client events as JSON text frames")
                continue
            try:
                await session.handle(text)
            except SessionOver as over:
                close_code = over.code
                break
    except WebSocketDisconnect:
        pass
    finally:
        # Let the turns already spoken finish (their events still go out while the socket is open).
        await session.close_input()
        budget = DRAIN_S_PER_TURN * (session.ending.qsize() + 1) + runtime.settings.live_request_timeout_s * 2
        try:
            async with asyncio.timeout(budget):
                await asyncio.shield(finisher)
        except TimeoutError:
            finisher.cancel()
            log.warning(
                "session %s: turns still unfinished after %.0f s, dropped", session.session_id, budget
            )
        if websocket.client_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await websocket.close(close_code)
        try:
            await session.store_job()
        except Exception:
            log.exception("session %s: could not store its job %s", session.session_id, session.job_id)
