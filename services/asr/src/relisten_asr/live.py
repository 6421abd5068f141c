"""Live first passes: answer ``relisten-live.first_pass`` requests (core NATS, queue group) with the
words of the turn audio they carry.

Stateless: every request holds the turn's audio from its start, so any asr replica can answer any
session. A replica answers its final passes one at a time on the job pipeline's model (queued with the
jobs' decodes), and its partial passes one at a time on the partial lane (a second copy of the model,
``RELISTEN_ASR_LIVE_PARTIAL_LANE``), so a turn's first deltas never wait behind the previous turn's final
pass; without the lane both share one queue, finals first (the turn's completion waits on them; a late
partial only delays a delta). A request whose asker has stopped waiting is skipped. A turn's final
pass is the same as a file's, calibrated the same way, so a live turn's words
carry the probabilities the second pass is chosen by; a partial pass (``final`` False), which only
makes deltas, is the in-process model's cheap one (:meth:`FasterWhisperEngine.transcribe_partial`:
greedy, the encoder given the audio plus a few seconds instead of 30 s, no recovery or screening).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from relisten_contracts import ErrorInfo, FirstPass
from relisten_contracts.calibration import Calibration, calibrated, default_calibration
from relisten_contracts.live import (
    LIVE_ASR_QUEUE,
    LIVE_FIRST_PASS_SUBJECT,
    LiveFirstPassReply,
    LiveFirstPassRequest,
    decode_live,
    encode_live,
)
from relisten_runtime.audio import pcm16_to_float
from relisten_speech.errors import SpeechError

from relisten_asr.engines import FasterWhisperEngine, FirstPassEngine
from relisten_asr.language import LanguageRouter
from relisten_asr.settings import AsrSettings

log = logging.getLogger(__name__)

FINAL = 0
PARTIAL = 1
"""Queue priorities: lower goes first."""


def turn_only(first: FirstPass, context_s: float) -> FirstPass:
    """The words of a first pass decoded with ``context_s`` of audio before the turn that lie in the
    turn (midpoint at or after the context), times moved to the turn's start; segments cut to them."""
    if context_s <= 0:
        return first
    keep = [i for i, w in enumerate(first.words) if (w.start + w.end) / 2 >= context_s]
    first_kept = keep[0] if keep else len(first.words)
    words = [
        msgspec.structs.replace(w, start=max(w.start - context_s, 0.0), end=max(w.end - context_s, 0.0))
        for w in first.words[first_kept:]
    ]
    segments = []
    for segment in first.segments:
        low, high = max(segment.first_word, first_kept), segment.last_word
        if high <= first_kept and segment.end <= context_s:
            continue
        segments.append(
            msgspec.structs.replace(
                segment,
                start=max(segment.start - context_s, 0.0),
                end=max(segment.end - context_s, 0.0),
                first_word=low - first_kept,
                last_word=max(high, low) - first_kept,
            )
        )
    return msgspec.structs.replace(
        first, words=words, segments=segments, duration_s=max(first.duration_s - context_s, 0.0)
    )


@dataclass
class LiveFirstPassResponder:
    engine: FirstPassEngine
    calibration: Calibration | None = None
    router: LanguageRouter | None = None
    """When set, a session that names a language the first-pass model does not know (tiny.en: all
    but English) is decoded by the multilingual model, as a job in that language would be; a session
    that names none is decoded by the first-pass model (identifying the language of every turn would
    cost a decode each)."""
    partials_apart: bool = False
    """Partial passes have their own lane in the engine (``RELISTEN_ASR_LIVE_PARTIAL_LANE``): they are
    then answered by their own task, beside the final passes, instead of queuing behind them."""
    _waiting: asyncio.PriorityQueue[tuple[int, int, Msg, LiveFirstPassRequest]] = field(
        default_factory=asyncio.PriorityQueue, init=False, repr=False
    )
    _partials: asyncio.PriorityQueue[tuple[int, int, Msg, LiveFirstPassRequest]] = field(
        default_factory=asyncio.PriorityQueue, init=False, repr=False
    )
    _sequence: int = field(default=0, init=False, repr=False)
    _worker: asyncio.Task[None] | None = field(default=None, init=False, repr=False)
    _partial_worker: asyncio.Task[None] | None = field(default=None, init=False, repr=False)
    _replies: set[asyncio.Task[None]] = field(default_factory=set, init=False, repr=False)

    def _engine_for(self, language: str | None) -> FirstPassEngine | None:
        router = self.router
        if language is None or router is None:
            return self.engine
        caps = router.caps
        if language in caps.primary_languages:
            return self.engine
        if router.multilingual is not None and language in caps.multilingual_languages:
            return router.multilingual
        return None

    async def answer(self, request: LiveFirstPassRequest) -> LiveFirstPassReply:
        """The turn's first pass, or an error the asker reports as the turn's failure."""
        if request.expires_at and time.time() > request.expires_at:
            return LiveFirstPassReply(error=ErrorInfo(code="expired", message="the asker stopped waiting"))
        if len(request.audio) % 2:
            return LiveFirstPassReply(error=ErrorInfo(code="bad_audio", message="odd number of pcm16 bytes"))
        engine = self._engine_for(request.language)
        if engine is None:
            return LiveFirstPassReply(
                error=ErrorInfo(
                    code="unsupported_language",
                    message=f"no configured model transcribes {request.language!r}",
                )
            )
        audio = pcm16_to_float(request.audio)
        try:
            result: FirstPass
            if not request.final and isinstance(engine, FasterWhisperEngine):
                # a partial only makes deltas: the cheap pass (the final one stays the file's)
                result = await engine.transcribe_partial(
                    audio, language=request.language, prompt=request.prompt
                )
            else:
                result = await engine.transcribe(audio, language=request.language, prompt=request.prompt)
        except SpeechError as exc:
            return LiveFirstPassReply(error=ErrorInfo(code=exc.code, message=exc.message))
        except Exception as exc:
            log.exception("live first pass of turn %s failed", request.turn_id)
            return LiveFirstPassReply(
                error=ErrorInfo(code="first_pass_failed", message=f"{type(exc).__name__}: {exc}")
            )
        if self.calibration is not None:
            result = calibrated(result, self.calibration)
        result = turn_only(result, request.context_s)
        log.log(
            logging.INFO if request.final else logging.DEBUG,
            "live %s pass of %s: %.1f s of audio, %d words in %.2f s",
            "final" if request.final else "partial",
            request.turn_id,
            result.duration_s,
            len(result.words),
            result.seconds,
        )
        return LiveFirstPassReply(first_pass=result)

    async def _respond(self, msg: Msg, reply: LiveFirstPassReply) -> None:
        if msg.reply:
            await msg.respond(encode_live(reply))

    def _take(self, msg: Msg) -> LiveFirstPassRequest | None:
        """The request in ``msg``, queued by priority; None when it does not decode (answered at once)."""
        try:
            request = decode_live(msg.data, LiveFirstPassRequest)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self._spawn_reply(msg, LiveFirstPassReply(error=ErrorInfo(code="bad_request", message=str(exc))))
            return None
        self._sequence += 1
        # A turn's final pass goes before partial ones: the turn's completion waits on it, while a
        # late partial only makes the next delta later.
        queue = self._partials if self.partials_apart and not request.final else self._waiting
        queue.put_nowait((FINAL if request.final else PARTIAL, self._sequence, msg, request))
        return request

    def _spawn_reply(self, msg: Msg, reply: LiveFirstPassReply) -> None:
        task = asyncio.create_task(self._respond(msg, reply))
        self._replies.add(task)
        task.add_done_callback(self._replies.discard)

    async def _work(self, queue: asyncio.PriorityQueue[tuple[int, int, Msg, LiveFirstPassRequest]]) -> None:
        """Answer ``queue``'s requests one at a time (a lane's model decodes one thing at a time anyway)."""
        while True:
            _, _, msg, request = await queue.get()
            try:
                await self._respond(msg, await self.answer(request))
            except Exception:
                log.exception("live first pass: could not answer")

    async def subscribe(self, nc: NATS) -> Subscription:
        """Join the asr queue group on the live subject; requests wait in a priority queue (finals
        first) for the one decoding task."""
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work(self._waiting), name="live-first-pass")
        if self.partials_apart and (self._partial_worker is None or self._partial_worker.done()):
            self._partial_worker = asyncio.create_task(self._work(self._partials), name="live-partial-pass")

        async def handle(msg: Msg) -> None:
            self._take(msg)

        return await nc.subscribe(LIVE_FIRST_PASS_SUBJECT, queue=LIVE_ASR_QUEUE, cb=handle)

    async def aclose(self) -> None:
        """Stop answering (requests still queued get no answer: their askers time out)."""
        for worker in (self._worker, self._partial_worker):
            if worker is not None:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
        self._worker = self._partial_worker = None


def live_responder(
    settings: AsrSettings, engine: FirstPassEngine, router: LanguageRouter | None = None
) -> LiveFirstPassResponder:
    """The responder an asr replica answers live first passes with under ``settings`` (its words
    calibrated as a job's are, ``RELISTEN_ASR_CALIBRATE_PROBABILITY``): the service's and the replay
    tools' one construction."""
    return LiveFirstPassResponder(
        engine,
        default_calibration() if settings.calibrate_probability else None,
        router,
        partials_apart=settings.live_partial_lane and isinstance(engine, FasterWhisperEngine),
    )
