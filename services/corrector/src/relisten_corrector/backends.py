"""Second-pass backends: re-listen to one clip and say what was said.

Three adapters behind one protocol, chosen by ``RELISTEN_CORRECTOR_BACKEND``:

* :class:`FasterWhisperBackend` (default): a larger Whisper in this process, on CPU by default. Word
  times and probabilities come with the answer.
* :class:`VllmChatBackend`: Qwen2-Audio-7B-Instruct behind vLLM's OpenAI-compatible chat endpoint, the
  clip sent inline as a base64 WAV ``input_audio`` part. Text only; the answer is cleaned of chat talk.
* :class:`OpenAITranscriptionBackend`: any ``/v1/audio/transcriptions`` server (Qwen3-ASR on vLLM,
  speaches, OpenAI), asked for word timestamps when it can give them.

Audio is 16 kHz mono float32 in [-1, 1]. Word times in answers are relative to the clip's start; the
handler moves them onto the job's timeline. Every failure surfaces as :class:`BackendError` after the
retries that could help; the caller then leaves the clip as the first pass heard it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

import msgspec
import numpy as np
from relisten_contracts import Word
from relisten_runtime.audio import SAMPLE_RATE
from relisten_speech.chat import ChatTranscriptionClient, split_at_pauses, transcription_instruction
from relisten_speech.errors import SpeechError as BackendError
from relisten_speech.remote import SpeechServer, TranscriptionsClient
from relisten_speech.verbose_json import verbose_words
from relisten_speech.whisper import (
    MAX_CHUNK_S,
    WHISPER_FRAMES,
    InProcessWhisper,
    encoder_frames,
    mono_samples,
    supported_language,
    trimmed_pipeline,
)

from relisten_corrector.crossbatch import chunk_count, combine
from relisten_corrector.packing import assign_words, chunk_at, pack_audio
from relisten_corrector.settings import CorrectorSettings

__all__ = [
    "BackendError",
    "FasterWhisperBackend",
    "OpenAITranscriptionBackend",
    "SecondPassAnswer",
    "SecondPassBackend",
    "VllmChatBackend",
    "build_backend",
    "encoder_frames",
    "split_at_pauses",
    "transcription_instruction",
    "trimmed_pipeline",
    "words_from_verbose_json",
]

log = logging.getLogger(__name__)


PACK_GAP_S = 1.0
"""Silence between two clips packed into the same chunk (was the setting RELISTEN_CORRECTOR_PACK_GAP_S,
which nobody turned); a packed chunk is at most ``MAX_CHUNK_S``, Whisper's window."""

MISSING_WORD_PROBABILITY = 1.0
"""Probability given to a remote word that came without one (OpenAI's own API never sends it).

The second pass is the stronger model by construction; marking its words as confident lets the merger's
other guards (alignment, drift) decide, exactly as for the text-only chat backend.
"""


class SecondPassAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """What a backend heard in one clip; word times relative to the clip, None without timestamps."""

    text: str
    words: list[Word] | None


class SecondPassBackend(Protocol):
    name: str

    async def transcribe(
        self, audio: np.ndarray, *, prompt: str | None, language: str | None
    ) -> SecondPassAnswer: ...

    async def aclose(self) -> None: ...


# --- faster-whisper in process ---------------------------------------------------------------------


class FasterWhisperBackend(InProcessWhisper):
    """Whisper (CTranslate2) in this process (:class:`relisten_speech.whisper.InProcessWhisper`: one
    model, loaded once, one decode at a time), one clip at a time or a job's clips packed together."""

    def __init__(self, settings: CorrectorSettings) -> None:
        super().__init__(settings.second_pass_model, settings)
        self._settings = settings

    async def transcribe(
        self, audio: np.ndarray, *, prompt: str | None, language: str | None
    ) -> SecondPassAnswer:
        samples = mono_samples(audio)
        if samples.size == 0:
            return SecondPassAnswer(text="", words=[])
        async with self._queue:
            return await asyncio.to_thread(self._transcribe_blocking, samples, prompt, language)

    def _transcribe_blocking(
        self, audio: np.ndarray, prompt: str | None, language: str | None
    ) -> SecondPassAnswer:
        model = self.load()
        with self._decode_lock:
            segments, _info = model.transcribe(
                audio,
                language=supported_language(model, language),
                beam_size=self._settings.beam_size,
                word_timestamps=True,
                condition_on_previous_text=False,
                initial_prompt=prompt or None,
                vad_filter=False,
            )
            # The generator decodes lazily: consume it while holding the lock.
            decoded = list(segments)
        words = [
            Word(
                word=w.word.strip(), start=float(w.start), end=float(w.end), probability=float(w.probability)
            )
            for segment in decoded
            for w in segment.words or ()
            if w.word.strip()
        ]
        text = " ".join(segment.text.strip() for segment in decoded if segment.text.strip())
        return SecondPassAnswer(text=text, words=words)

    async def transcribe_whole(
        self, clips: Sequence[np.ndarray], *, prompt: str | None, language: str | None
    ) -> tuple[list[SecondPassAnswer], float]:
        """Doubtful stretches (first-pass segments) re-heard whole, the way the first pass heard them:
        each clip its own chunk, the encoder given Whisper's full 30 s window, all in one batched call.
        No voice activity detection: the first pass already found speech there, and Silero misses
        much of band-limited speech. Measured: base then writes the words it writes decoding the
        whole recording (docs/yardstick.md). The answers, and the seconds the model worked on them."""
        answers, seconds = await self._together_timed([clips], prompt, language, apart=True)
        return answers[0], seconds

    async def transcribe_many(
        self, clips: Sequence[np.ndarray], *, prompt: str | None, language: str | None
    ) -> list[SecondPassAnswer]:
        """Every clip in one batched decode: the clips are packed side by side into <= 30 s chunks
        (silence between them), the chunks decoded together by faster-whisper's batched pipeline, and
        the words handed back to the clip they were heard in (times relative to that clip).

        ``prompt`` is shared by every chunk (the job's glossary): a chunk holds several clips from
        different places, so no one clip's preceding text belongs in front of it.
        """
        return (await self.transcribe_many_timed(clips, prompt=prompt, language=language))[0]

    async def transcribe_many_timed(
        self, clips: Sequence[np.ndarray], *, prompt: str | None, language: str | None
    ) -> tuple[list[SecondPassAnswer], float]:
        """:meth:`transcribe_many`, and the seconds the model worked on it: the time spent waiting for
        the model (another job's decode, a live turn's) is not counted."""
        answers, seconds = await self._together_timed([clips], prompt, language)
        return answers[0], seconds

    async def transcribe_together(
        self, requests: Sequence[Sequence[np.ndarray]], *, prompt: str | None, language: str | None
    ) -> list[list[SecondPassAnswer]]:
        """Several requesters' clips (several jobs', or a job's and a live turn's) in one batched
        decode: each requester's clips are packed on their own, as :meth:`transcribe_many` packs
        them, and all the chunks decoded in one call (:mod:`relisten_corrector.crossbatch`). Each
        requester gets its own answers, one per clip, in order."""
        return (await self._together_timed(requests, prompt, language))[0]

    async def _together_timed(
        self,
        requests: Sequence[Sequence[np.ndarray]],
        prompt: str | None,
        language: str | None,
        *,
        apart: bool = False,
    ) -> tuple[list[list[SecondPassAnswer]], float]:
        """The batched decode and the seconds it held the model (counted once it had the model)."""
        checked = [[mono_samples(clip) for clip in clips] for clips in requests]
        async with self._queue:
            started = time.perf_counter()
            answers = await asyncio.to_thread(
                self._transcribe_together_blocking, checked, prompt, language, apart
            )
            return answers, time.perf_counter() - started

    @staticmethod
    def chunk_count(clips: Sequence[np.ndarray]) -> int:
        """Encoder inputs these clips need when packed (a requester's size in a shared call)."""
        return chunk_count(
            [len(clip) for clip in clips], int(MAX_CHUNK_S * SAMPLE_RATE), int(PACK_GAP_S * SAMPLE_RATE)
        )

    def _transcribe_together_blocking(
        self,
        requests: list[list[np.ndarray]],
        prompt: str | None,
        language: str | None,
        apart: bool = False,
    ) -> list[list[SecondPassAnswer]]:
        """Each requester's clips packed into chunks (with ``apart``, a chunk per clip and the encoder's
        full 30 s input), all chunks decoded in one batched call."""
        model = self.load()
        max_chunk = int(MAX_CHUNK_S * SAMPLE_RATE)
        answers: list[list[SecondPassAnswer | None]] = [[None] * len(clips) for clips in requests]
        # (requester, clip) of every packable clip, per requester in clip order.
        packable = [
            [(owner, index) for index, clip in enumerate(clips) if 0 < clip.size <= max_chunk]
            for owner, clips in enumerate(requests)
        ]
        for owner, clips in enumerate(requests):
            for index, clip in enumerate(clips):
                if clip.size == 0:
                    answers[owner][index] = SecondPassAnswer(text="", words=[])
                elif clip.size > max_chunk:
                    # Longer than one chunk (the clipper keeps windows shorter): decode it on its own.
                    answers[owner][index] = self._transcribe_blocking(clip, prompt, language)
        places = [place for owned in packable for place in owned]
        if places:
            gap = int(PACK_GAP_S * SAMPLE_RATE)
            packed, _ = combine(
                [
                    pack_audio(
                        [requests[owner][index] for owner, index in owned], max_chunk, gap, apart=apart
                    )
                    for owned in packable
                    if owned
                ]
            )
            longest = max(end - start for start, end in packed.chunks)
            frames = WHISPER_FRAMES if apart else encoder_frames(longest, self._settings.encoder_padding_s)
            with self._decode_lock:
                segments, _info = trimmed_pipeline(model, frames).transcribe(
                    packed.audio,
                    language=supported_language(model, language),
                    beam_size=self._settings.beam_size,
                    word_timestamps=True,
                    initial_prompt=prompt or None,
                    clip_timestamps=[
                        {"start": start / SAMPLE_RATE, "end": end / SAMPLE_RATE}
                        for start, end in packed.chunks
                    ],
                    batch_size=self._settings.batch_size,
                )
                # Each segment's ``seek`` is its chunk's start, in frames of 10 ms.
                heard = [
                    (w, chunk_at(packed, segment.seek / 100, SAMPLE_RATE))
                    for segment in segments
                    for w in segment.words or ()
                    if w.word.strip()
                ]
            spans = [(float(w.start), float(w.end)) for w, _ in heard]
            chunks = [chunk for _, chunk in heard]
            # The combined clips are numbered requester by requester, each in clip order: ``places``.
            for (owner, index), placed in zip(
                places, assign_words(spans, packed, SAMPLE_RATE, chunks), strict=True
            ):
                words = [
                    Word(
                        word=heard[i][0].word.strip(),
                        start=start,
                        end=end,
                        probability=float(heard[i][0].probability),
                    )
                    for i, start, end in placed
                ]
                answers[owner][index] = SecondPassAnswer(
                    text=" ".join(word.word for word in words), words=words
                )
        return [[answer or SecondPassAnswer(text="", words=[]) for answer in owned] for owned in answers]


# --- vLLM chat (Qwen2-Audio) -------------------------------------------------------------------------


class VllmChatBackend:
    """Qwen2-Audio-7B-Instruct (or another audio chat model) behind vLLM's ``/v1/chat/completions``
    (:class:`relisten_speech.chat.ChatTranscriptionClient`: long clips go in pieces cut at pauses,
    answers are cleaned of chat talk). Text only: the answer has no word times."""

    def __init__(self, settings: CorrectorSettings) -> None:
        self._chat = ChatTranscriptionClient(
            SpeechServer.of(settings),
            model=settings.remote_model(),
            max_tokens=settings.max_tokens,
            max_concurrency=settings.max_concurrency,
        )
        self.name = f"vllm:{self._chat.model}"

    async def transcribe(
        self, audio: np.ndarray, *, prompt: str | None, language: str | None
    ) -> SecondPassAnswer:
        text = await self._chat.transcribe(mono_samples(audio), prompt=prompt, language=language)
        return SecondPassAnswer(text=text, words=None)

    async def aclose(self) -> None:
        await self._chat.aclose()


# --- OpenAI-compatible transcription -----------------------------------------------------------------


def words_from_verbose_json(body: dict[str, Any]) -> list[Word] | None:
    """``words`` of a verbose_json answer (or those inside its segments); None when it has none."""
    words = [
        Word(
            word=heard.text,
            start=heard.start,
            end=max(heard.end, heard.start),
            probability=MISSING_WORD_PROBABILITY if heard.probability is None else heard.probability,
        )
        for heard in verbose_words(body)
    ]
    return words or None


class OpenAITranscriptionBackend:
    """Any OpenAI-compatible ``/v1/audio/transcriptions``: multipart WAV, ``verbose_json``, word times."""

    def __init__(self, settings: CorrectorSettings) -> None:
        self.name = f"openai:{settings.remote_model()}"
        self._server = TranscriptionsClient(
            SpeechServer.of(settings),
            model=settings.remote_model(),
            granularities=("word",),
            max_concurrency=settings.max_concurrency,
        )

    async def transcribe(
        self, audio: np.ndarray, *, prompt: str | None, language: str | None
    ) -> SecondPassAnswer:
        body = await self._server.transcribe(
            mono_samples(audio), language=language, prompt=prompt, filename="clip.wav"
        )
        text = body.get("text")
        if not isinstance(text, str):
            raise BackendError("bad_response", f"no text in {str(body)[:200]}")
        return SecondPassAnswer(text=text.strip(), words=words_from_verbose_json(body))

    async def aclose(self) -> None:
        await self._server.aclose()


def build_backend(settings: CorrectorSettings) -> SecondPassBackend:
    """The backend the settings ask for. Nothing is loaded or contacted yet."""
    if settings.backend == "faster-whisper":
        return FasterWhisperBackend(settings)
    if settings.backend == "vllm":
        return VllmChatBackend(settings)
    if settings.backend == "openai":
        return OpenAITranscriptionBackend(settings)
    raise ValueError(f"unknown second-pass backend {settings.backend!r}")
