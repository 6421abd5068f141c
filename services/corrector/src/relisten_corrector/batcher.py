"""Clips of concurrent jobs decoded together: a bounded cross-job batcher in front of the in-process model.

The in-process model decodes one call at a time. Without this, jobs corrected at once each pay their
own batched call, one after the other. :class:`CrossJobBatcher` stands in front of the model as a
second-pass backend (``transcribe_many``) and decodes requests that meet in one call
(:meth:`FasterWhisperBackend.transcribe_together`), each requester getting exactly its own answers.

When requests meet:

* **while the model is busy**, every request that arrives waits; when the call ends, the waiting
  ones go together in the next (no linger is needed for those: they would have waited anyway);
* **when the model is free**, a request is decoded at once, unless another job is already in the
  corrector's hands and has not asked yet (it is still reading its clips): then the call waits for it,
  at most ``linger_s`` (``RELISTEN_CORRECTOR_BATCH_LINGER_S``). A lone job never lingers, and a live
  turn (not announced) lingers only if a file job is that close behind.

A call holds at most ``max_chunks`` chunks (``RELISTEN_CORRECTOR_BATCH_MAX_CHUNKS``), except that the
oldest request always goes, whole; requests that share a call share its prompt and language
(:func:`relisten_corrector.crossbatch.take_call`). If a call of several requests fails, each is
decoded again on its own, so that one requester's failure stays its own.

A job is announced with :meth:`CrossJobBatcher.requester` (the correcting handler does it as soon as
it takes an event) and asks through the :class:`Requester` it gets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from relisten_corrector.backends import SecondPassAnswer
from relisten_corrector.crossbatch import take_call

log = logging.getLogger(__name__)

__all__ = ["CrossJobBatcher", "Requester", "TogetherBackend"]


class TogetherBackend(Protocol):
    """A model that decodes several requesters' clips in one call (the in-process faster-whisper)."""

    name: str

    async def transcribe(
        self, audio: np.ndarray, *, prompt: str | None, language: str | None
    ) -> SecondPassAnswer: ...

    async def transcribe_together(
        self, requests: Sequence[Sequence[np.ndarray]], *, prompt: str | None, language: str | None
    ) -> list[list[SecondPassAnswer]]: ...

    async def transcribe_whole(
        self, clips: Sequence[np.ndarray], *, prompt: str | None, language: str | None
    ) -> tuple[list[SecondPassAnswer], float]: ...

    def chunk_count(self, clips: Sequence[np.ndarray]) -> int: ...

    async def aclose(self) -> None: ...


@dataclass(eq=False)
class _Waiting:
    clips: Sequence[np.ndarray]
    prompt: str | None
    language: str | None
    chunks: int
    answer: asyncio.Future[tuple[list[SecondPassAnswer], float]] = field(repr=False)
    """The answers, and this request's share of its call's model time (by chunks)."""

    @property
    def key(self) -> tuple[str | None, str | None]:
        return (self.prompt, self.language)


class CrossJobBatcher:
    """The second-pass backend the corrector's handler and live responder use when cross-job
    batching is on: ``transcribe_many`` through the shared calls, ``transcribe`` straight to the model."""

    def __init__(self, backend: TogetherBackend, *, linger_s: float, max_chunks: int) -> None:
        if linger_s < 0 or max_chunks < 1:
            raise ValueError("linger_s must be >= 0 and max_chunks >= 1")
        self.backend = backend
        self.name = backend.name
        self.linger_s = linger_s
        self.max_chunks = max_chunks
        self._waiting: list[_Waiting] = []
        self._announced = 0
        """Requesters that took a job and have not asked yet: worth lingering for."""
        self._changed = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self.calls = 0
        """Calls made to the model (for tests and logs)."""
        self.requests_decoded = 0

    async def transcribe(
        self, audio: np.ndarray, *, prompt: str | None, language: str | None
    ) -> SecondPassAnswer:
        return await self.backend.transcribe(audio, prompt=prompt, language=language)

    async def transcribe_whole(
        self, clips: Sequence[np.ndarray], *, prompt: str | None, language: str | None
    ) -> tuple[list[SecondPassAnswer], float]:
        """Stretches re-heard whole, straight to the model (they are not packed with other jobs' clips)."""
        return await self.backend.transcribe_whole(clips, prompt=prompt, language=language)

    async def transcribe_many(
        self, clips: Sequence[np.ndarray], *, prompt: str | None, language: str | None
    ) -> list[SecondPassAnswer]:
        """The clips' answers, decoded in a call shared with whoever else is waiting."""
        answers, _ = await self.ask(clips, prompt=prompt, language=language)
        return answers

    async def ask(
        self, clips: Sequence[np.ndarray], *, prompt: str | None, language: str | None
    ) -> tuple[list[SecondPassAnswer], float]:
        """The clips' answers and their share of the shared call's model seconds (the call's time
        split by chunks: the time spent waiting for the model, or decoding others' clips, is not theirs)."""
        loop = asyncio.get_running_loop()
        waiting = _Waiting(
            clips=clips,
            prompt=prompt,
            language=language,
            chunks=self.backend.chunk_count(clips),
            answer=loop.create_future(),
        )
        self._waiting.append(waiting)
        self._changed.set()
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run(), name="corrector-cross-job-batcher")
        try:
            return await waiting.answer
        except asyncio.CancelledError:
            # The asker is gone (shutdown hand-back, handling limit): it no longer needs a place.
            if waiting in self._waiting:
                self._waiting.remove(waiting)
            raise

    @contextlib.asynccontextmanager
    async def requester(self) -> AsyncIterator[Requester]:
        """Announce a job about to ask (calls that find the model free wait a little for it)."""
        requester = Requester(self)
        self._announced += 1
        try:
            yield requester
        finally:
            requester._done_announcing()

    def _unannounce(self) -> None:
        self._announced -= 1
        self._changed.set()

    async def aclose(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        for waiting in self._waiting:
            if not waiting.answer.done():
                waiting.answer.cancel()
        self._waiting.clear()
        await self.backend.aclose()

    async def _run(self) -> None:
        """Calls one after another while anyone waits."""
        try:
            while self._waiting:
                await self._linger()
                # Askers cancelled during the linger leave the queue: it may be empty now.
                picked = take_call([(w.key, w.chunks) for w in self._waiting], self.max_chunks)
                call = [self._waiting[position] for position in picked]
                for waiting in call:
                    self._waiting.remove(waiting)
                if call:
                    await self._decode(call)
        except BaseException as exc:
            # Never leave an asker waiting on a runner that has stopped.
            for waiting in self._waiting:
                if not waiting.answer.done():
                    waiting.answer.set_exception(RuntimeError(f"second-pass batcher stopped: {exc!r}"))
            self._waiting.clear()
            raise

    async def _linger(self) -> None:
        """While an announced job has not asked yet and the call has room, wait for it, at most
        ``linger_s`` in all."""
        if self.linger_s <= 0:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.linger_s
        while self._announced > 0 and self._room_left():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def _room_left(self) -> bool:
        picked = take_call([(w.key, w.chunks) for w in self._waiting], self.max_chunks)
        return sum(self._waiting[position].chunks for position in picked) < self.max_chunks

    async def _decode(self, call: list[_Waiting]) -> None:
        first = call[0]
        self.calls += 1
        started = time.perf_counter()
        try:
            answers = await self.backend.transcribe_together(
                [waiting.clips for waiting in call], prompt=first.prompt, language=first.language
            )
        except Exception as exc:
            if len(call) == 1:
                _settle(first, exc)
                return
            log.warning("a second-pass call of %d requests failed (%r): each again alone", len(call), exc)
            for waiting in call:
                await self._decode([waiting])
            return
        if len(call) > 1:
            log.info("%d requests (%d chunks) re-decoded in one call", len(call), sum(w.chunks for w in call))
        self.requests_decoded += len(call)
        seconds = time.perf_counter() - started
        chunks = sum(waiting.chunks for waiting in call) or 1
        for waiting, answer in zip(call, answers, strict=True):
            _settle(waiting, (answer, seconds * waiting.chunks / chunks))


def _settle(waiting: _Waiting, outcome: tuple[list[SecondPassAnswer], float] | Exception) -> None:
    if waiting.answer.done():  # its asker was cancelled
        return
    if isinstance(outcome, Exception):
        waiting.answer.set_exception(outcome)
    else:
        waiting.answer.set_result(outcome)


class Requester:
    """One announced job's way to ask the batcher (a ``BatchingBackend`` for the correcting handler).
    Announced from :meth:`CrossJobBatcher.requester` until its first question or its end."""

    def __init__(self, batcher: CrossJobBatcher) -> None:
        self._batcher = batcher
        self._announced = True
        self.name = batcher.name

    def _done_announcing(self) -> None:
        if self._announced:
            self._announced = False
            self._batcher._unannounce()

    async def transcribe(
        self, audio: np.ndarray, *, prompt: str | None, language: str | None
    ) -> SecondPassAnswer:
        return await self._batcher.transcribe(audio, prompt=prompt, language=language)

    async def transcribe_many(
        self, clips: Sequence[np.ndarray], *, prompt: str | None, language: str | None
    ) -> list[SecondPassAnswer]:
        answers, _ = await self.transcribe_many_timed(clips, prompt=prompt, language=language)
        return answers

    async def transcribe_many_timed(
        self, clips: Sequence[np.ndarray], *, prompt: str | None, language: str | None
    ) -> tuple[list[SecondPassAnswer], float]:
        """The answers and this job's share of the shared call's model seconds."""
        # Asking: a call no longer waits for this job (it is in the queue it would wait on).
        self._done_announcing()
        return await self._batcher.ask(clips, prompt=prompt, language=language)

    async def aclose(self) -> None:
        """The batcher and its model belong to the corrector, not to one job."""
