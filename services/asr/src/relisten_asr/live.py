"""Live first passes: answer ``relisten-live.first_pass`` requests (core NATS, queue group) with the
words of the turn audio they carry.

Stateless: every request holds the turn's audio from its start, so any asr replica can answer any
session. The model is the job pipeline's (one decode at a time per replica, queued with the jobs'
decodes); the first pass is the same as a file's, calibrated the same way, so a live turn's words
carry the probabilities the second pass is chosen by.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from relisten_contracts import ErrorInfo, FirstPass
from relisten_contracts.calibration import Calibration, calibrated
from relisten_contracts.live import (
    LIVE_ASR_QUEUE,
    LIVE_FIRST_PASS_SUBJECT,
    LiveFirstPassReply,
    LiveFirstPassRequest,
    decode_live,
    encode_live,
)
from relisten_runtime.audio import pcm16_to_float
from relisten_runtime.remote import RemoteCallError

from relisten_asr.engines import FirstPassEngine
from relisten_asr.language import LanguageRouter

log = logging.getLogger(__name__)


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
            result: FirstPass = await engine.transcribe(
                audio, language=request.language, prompt=request.prompt
            )
        except RemoteCallError as exc:
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

    async def on_message(self, msg: Msg) -> None:
        try:
            request = decode_live(msg.data, LiveFirstPassRequest)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            reply = LiveFirstPassReply(error=ErrorInfo(code="bad_request", message=str(exc)))
        else:
            reply = await self.answer(request)
        if msg.reply:
            await msg.respond(encode_live(reply))

    async def subscribe(self, nc: NATS) -> Subscription:
        """Join the asr queue group on the live subject. nats-py runs one subscription's callbacks one
        after another, which suits a replica that decodes one thing at a time anyway."""

        async def handle(msg: Msg) -> None:
            try:
                await self.on_message(msg)
            except Exception:
                log.exception("live first pass: could not answer")

        return await nc.subscribe(LIVE_FIRST_PASS_SUBJECT, queue=LIVE_ASR_QUEUE, cb=handle)
