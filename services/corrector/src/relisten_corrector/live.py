"""Live refinement: answer ``relisten-live.refine`` requests (core NATS, queue group) for one finished
turn of a realtime session.

The file pipeline's three later stages, in one request and in memory: the clipper's pure domain flags
the turn's doubtful words and plans windows, this service's second-pass backend re-decodes each
window, and the merger's pure domain reconciles them under its guards. The policies are the shipped
defaults of those two services (``ClipPolicy()``, ``MergePolicy()``) with the session's confidence
threshold, so a live turn is refined the way a file is.

Stateless: the request carries the turn's audio and first pass, so any corrector replica can answer.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import cast

import msgspec
import numpy as np
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from relisten_clipper.domain import ClipPolicy, Window, context_prompt, find_windows, to_sample_range
from relisten_contracts import ClipResult, ErrorInfo, TranscriptWord, first_pass_words
from relisten_contracts.live import (
    LIVE_CORRECTOR_QUEUE,
    LIVE_REFINE_SUBJECT,
    LIVE_SAMPLE_RATE,
    LiveRefineReply,
    LiveRefineRequest,
    decode_live,
    encode_live,
)
from relisten_merger.domain import MergePolicy, MergeWindow, merge
from relisten_runtime.audio import pcm16_to_float

from relisten_corrector.backends import SecondPassBackend
from relisten_corrector.handlers import BatchingBackend, answered, second_pass_prompt

log = logging.getLogger(__name__)


def _unchanged(request: LiveRefineRequest) -> list[TranscriptWord]:
    return first_pass_words(request.first_pass)


@dataclass
class LiveRefineResponder:
    backend: SecondPassBackend
    clip_policy: ClipPolicy = field(default_factory=ClipPolicy)
    merge_policy: MergePolicy = field(default_factory=MergePolicy)
    pack: bool = False
    """Decode a turn's windows in one batched call when the backend can (the in-process model with
    ``RELISTEN_CORRECTOR_PACK_CLIPS``, as for a file's clips); otherwise one call per window, each
    prompted with the text before it (the turn's, then the session's earlier turns')."""

    async def answer(self, request: LiveRefineRequest) -> LiveRefineReply:
        first = request.first_pass
        if request.expires_at and time.time() > request.expires_at:
            return LiveRefineReply(
                words=_unchanged(request),
                error=ErrorInfo(code="expired", message="the asker stopped waiting"),
            )
        if len(request.audio) % 2:
            return LiveRefineReply(
                words=_unchanged(request),
                error=ErrorInfo(code="bad_audio", message="odd number of pcm16 bytes"),
            )
        policy = dataclasses.replace(self.clip_policy, threshold=request.confidence_threshold)
        windows = find_windows(
            first.words, first.segments, first.duration_s, policy, budget_s=self._budget_s(policy, request)
        )
        if not windows:
            return LiveRefineReply(words=_unchanged(request), backend=self.backend.name)
        audio = pcm16_to_float(request.audio)
        spans = [to_sample_range(w.start_s, w.end_s, LIVE_SAMPLE_RATE, len(audio)) for w in windows]
        clips = [audio[lo:hi] for lo, hi in spans]
        started = time.perf_counter()
        batching = self._batching()
        if batching is not None:
            results = await self._decode_packed(batching, request, clips, spans)
        else:
            results = {}
            for index, (window, clip, (lo, _)) in enumerate(zip(windows, clips, spans, strict=True)):
                prompt = second_pass_prompt(request.prompt, self._context(request, window, policy))
                results[index] = await self._decode_one(request, index, clip, lo, prompt)
        merge_windows = [
            MergeWindow(
                index=index,
                start_s=lo / LIVE_SAMPLE_RATE,
                end_s=hi / LIVE_SAMPLE_RATE,
                flagged=tuple(window.flagged),
                trigger_confidence=window.trigger_confidence,
                word_first=window.word_first,
                word_last=window.word_last,
            )
            for index, (window, (lo, hi)) in enumerate(zip(windows, spans, strict=True))
        ]
        redecoded = sum(hi - lo for lo, hi in spans) / LIVE_SAMPLE_RATE
        words, corrections = merge(first, merge_windows, results, self.merge_policy)
        return LiveRefineReply(
            words=words,
            corrections=corrections,
            words_flagged=sum(len(w.flagged) for w in windows),
            seconds=time.perf_counter() - started,
            audio_redecoded_seconds=redecoded,
            backend=self.backend.name,
        )

    @staticmethod
    def _budget_s(policy: ClipPolicy, request: LiveRefineRequest) -> float | None:
        """Seconds the turn's windows may take: what the session has left of its budget when the
        request says what it has spent (None: the policy's fraction of the turn)."""
        if request.session_audio_s <= 0:
            return None
        return max(policy.max_redecode_fraction * request.session_audio_s - request.session_redecoded_s, 0.0)

    def _batching(self) -> BatchingBackend | None:
        if not self.pack or not callable(getattr(self.backend, "transcribe_many", None)):
            return None
        return cast(BatchingBackend, self.backend)

    async def _decode_packed(
        self,
        backend: BatchingBackend,
        request: LiveRefineRequest,
        clips: list[np.ndarray],
        spans: list[tuple[int, int]],
    ) -> dict[int, ClipResult]:
        """Every window of the turn in one batched call, as the file pipeline decodes a job's clips
        (packed side by side, no per-clip prompt: only the session's glossary)."""
        lengths = [(hi - lo) / LIVE_SAMPLE_RATE for lo, hi in spans]
        started = time.perf_counter()
        try:
            answers = await backend.transcribe_many(
                clips, prompt=second_pass_prompt(request.prompt, ""), language=request.first_pass.language
            )
        except Exception as exc:
            log.warning("live turn %s: packed second pass failed: %r", request.turn_id, exc)
            error = ErrorInfo(code=str(getattr(exc, "code", "second_pass_failed")), message=str(exc))
            return {
                index: ClipResult(
                    clip_index=index,
                    ok=False,
                    backend=backend.name,
                    text="",
                    audio_seconds=length,
                    error=error,
                )
                for index, length in enumerate(lengths)
            }
        seconds = time.perf_counter() - started
        total = sum(lengths) or 1.0
        return {
            index: answered(
                index, backend.name, answer, lo / LIVE_SAMPLE_RATE, length, seconds * length / total
            )
            for index, (answer, (lo, _), length) in enumerate(zip(answers, spans, lengths, strict=True))
        }

    async def _decode_one(
        self, request: LiveRefineRequest, index: int, clip: np.ndarray, lo: int, prompt: str | None
    ) -> ClipResult:
        length = len(clip) / LIVE_SAMPLE_RATE
        started = time.perf_counter()
        try:
            reply = await self.backend.transcribe(clip, prompt=prompt, language=request.first_pass.language)
        except Exception as exc:
            log.warning("live turn %s window %d: second pass failed: %r", request.turn_id, index, exc)
            return ClipResult(
                clip_index=index,
                ok=False,
                backend=self.backend.name,
                text="",
                audio_seconds=length,
                error=ErrorInfo(code=str(getattr(exc, "code", "second_pass_failed")), message=str(exc)),
            )
        return answered(
            index, self.backend.name, reply, lo / LIVE_SAMPLE_RATE, length, time.perf_counter() - started
        )

    @staticmethod
    def _context(request: LiveRefineRequest, window: Window, policy: ClipPolicy) -> str:
        """The text before ``window``, at most ``context_chars`` as for a file's clip: the turn's own
        words first, then the session's earlier text when the turn has too few."""
        own = context_prompt(request.first_pass.words, window, policy.context_chars)
        room = policy.context_chars - len(own) - 1
        if room <= 0 or not request.previous_text.strip():
            return own
        earlier = request.previous_text.strip()[-room:]
        earlier = earlier[earlier.find(" ") + 1 :] if len(request.previous_text.strip()) > room else earlier
        return f"{earlier} {own}".strip()

    async def on_message(self, msg: Msg) -> None:
        try:
            request = decode_live(msg.data, LiveRefineRequest)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            reply = LiveRefineReply(error=ErrorInfo(code="bad_request", message=str(exc)))
        else:
            try:
                reply = await self.answer(request)
            except Exception as exc:
                log.exception("live refinement of turn %s failed", request.turn_id)
                reply = LiveRefineReply(
                    words=_unchanged(request),
                    error=ErrorInfo(code="refine_failed", message=f"{type(exc).__name__}: {exc}"),
                )
        if msg.reply:
            await msg.respond(encode_live(reply))

    async def subscribe(self, nc: NATS) -> Subscription:
        """Join the corrector queue group on the live subject (callbacks run one after another, as
        the in-process model decodes one thing at a time)."""

        async def handle(msg: Msg) -> None:
            try:
                await self.on_message(msg)
            except Exception:
                log.exception("live refinement: could not answer")

        return await nc.subscribe(LIVE_REFINE_SUBJECT, queue=LIVE_CORRECTOR_QUEUE, cb=handle)
