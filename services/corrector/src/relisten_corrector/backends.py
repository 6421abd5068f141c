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
import base64
import functools
import logging
import math
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

import msgspec
import numpy as np
from relisten_contracts import Word
from relisten_runtime.audio import SAMPLE_RATE
from relisten_runtime.models import display_name
from relisten_runtime.remote import (
    RemoteCallError as BackendError,
)
from relisten_runtime.remote import (
    RetryPolicy,
    TranscriptionsClient,
    api_root,
    json_body,
    json_number,
    new_client,
    post_with_retries,
    wav_from_float,
)
from relisten_runtime.whisper import load_whisper_model, mono_samples, supported_language

from relisten_corrector.cleaning import clean_answer
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
    "split_at_pauses",
    "transcription_instruction",
    "words_from_verbose_json",
]

log = logging.getLogger(__name__)


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


class FasterWhisperBackend:
    """Whisper (CTranslate2) in this process: one model, loaded once, one decode at a time.

    Decoding runs in a worker thread so the event loop keeps serving NATS heartbeats. An ``asyncio.Lock``
    queues callers without tying up executor threads; a ``threading.Lock`` inside keeps one decode at a
    time even if a cancelled caller's thread is still running.
    """

    def __init__(self, settings: CorrectorSettings) -> None:
        self._settings = settings
        self.name = f"faster-whisper:{display_name(settings.second_pass_model)}"
        self._model: Any = None
        self._load_lock = threading.Lock()
        self._decode_lock = threading.Lock()
        self._queue = asyncio.Lock()
        self.load_seconds: float | None = None

    def load(self) -> Any:
        """Load the model (joining the bundled one first if needed); idempotent and thread-safe.

        Blocking: call it through ``asyncio.to_thread`` at start-up to fail fast on a bad model setting.
        """
        with self._load_lock:
            if self._model is None:
                started = time.perf_counter()
                self._model = load_whisper_model(self._settings.second_pass_model, self._settings)
                self.load_seconds = time.perf_counter() - started
                log.info("loaded %s in %.1f s", self.name, self.load_seconds)
            return self._model

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

    async def transcribe_many(
        self, clips: Sequence[np.ndarray], *, prompt: str | None, language: str | None
    ) -> list[SecondPassAnswer]:
        """Every clip in one batched decode: the clips are packed side by side into <= 30 s chunks
        (silence between them), the chunks decoded together by faster-whisper's batched pipeline, and
        the words handed back to the clip they were heard in (times relative to that clip).

        ``prompt`` is shared by every chunk (the job's glossary): a chunk holds several clips from
        different places, so no one clip's preceding text belongs in front of it.
        """
        checked = [mono_samples(clip) for clip in clips]
        async with self._queue:
            return await asyncio.to_thread(self._transcribe_many_blocking, checked, prompt, language)

    def _transcribe_many_blocking(
        self, clips: list[np.ndarray], prompt: str | None, language: str | None
    ) -> list[SecondPassAnswer]:
        model = self.load()
        max_chunk = int(self._settings.chunk_s * SAMPLE_RATE)
        answers: list[SecondPassAnswer | None] = [None] * len(clips)
        packable = [index for index, clip in enumerate(clips) if 0 < clip.size <= max_chunk]
        for index, clip in enumerate(clips):
            if clip.size == 0:
                answers[index] = SecondPassAnswer(text="", words=[])
            elif clip.size > max_chunk:
                # Longer than one chunk (the clipper keeps windows shorter): decode it on its own.
                answers[index] = self._transcribe_blocking(clip, prompt, language)
        if packable:
            packed = pack_audio(
                [clips[index] for index in packable], max_chunk, int(self._settings.pack_gap_s * SAMPLE_RATE)
            )
            longest = max(end - start for start, end in packed.chunks)
            frames = encoder_frames(longest, self._settings.encoder_padding_s)
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
            for position, placed in enumerate(assign_words(spans, packed, SAMPLE_RATE, chunks)):
                words = [
                    Word(
                        word=heard[i][0].word.strip(),
                        start=start,
                        end=end,
                        probability=float(heard[i][0].probability),
                    )
                    for i, start, end in placed
                ]
                answers[packable[position]] = SecondPassAnswer(
                    text=" ".join(word.word for word in words), words=words
                )
        return [answer or SecondPassAnswer(text="", words=[]) for answer in answers]

    async def aclose(self) -> None:
        self._model = None


WHISPER_FRAMES = 3000
"""Log-mel frames of Whisper's fixed 30 s input (10 ms each)."""


def encoder_frames(longest_chunk: int, padding_s: float) -> int:
    """Frames the encoder is given for chunks of at most ``longest_chunk`` samples: the chunk plus
    ``padding_s`` of silence, even (the encoder's first convolution has stride 2), at most 30 s."""
    frames = math.ceil(longest_chunk / (SAMPLE_RATE // 100) + padding_s * 100)
    frames += frames % 2
    return min(frames, WHISPER_FRAMES)


def trimmed_pipeline(model: Any, frames: int) -> Any:
    """faster-whisper's batched pipeline with the encoder input cut to ``frames`` log-mel frames (see
    :func:`encoder_frames`; more than 30 s cuts nothing).

    The pipeline pads every chunk's features to 30 s; what lies past the chunk's audio is that padding,
    so cutting it changes only the encoder's work (which grows faster than linearly with its input) and
    what the decoder attends to. Measured here, a job's half-filled chunk decoded 30 % faster with the
    same words in 97 % of places; with much less than 5 s of padding left, Whisper starts to loop
    (docs/benchmark.md). Word alignment stays within the chunk's own frames.
    """
    return _trimmed_pipeline_class()(model, frames)


@functools.cache
def _trimmed_pipeline_class() -> type:
    from faster_whisper import BatchedInferencePipeline

    class TrimmedPipeline(BatchedInferencePipeline):  # type: ignore[misc]
        def __init__(self, model: Any, frames: int) -> None:
            super().__init__(model)
            self.frames = frames

        def generate_segment_batched(self, features: np.ndarray, tokenizer: Any, options: Any) -> Any:
            return super().generate_segment_batched(features[..., : self.frames], tokenizer, options)

    return TrimmedPipeline


# --- vLLM chat (Qwen2-Audio) -------------------------------------------------------------------------

SYSTEM_INSTRUCTION = (
    "You are a speech transcription engine. Transcribe the speech in the audio exactly as it is spoken, "
    "word for word, in the language it is spoken in. Output only the spoken words with ordinary "
    "punctuation. Do not add a preamble, labels, quotation marks, notes, explanations or commentary. "
    "Do not translate, summarise, answer or correct the speaker. If nothing intelligible is said, "
    "output nothing."
)


def transcription_instruction(prompt: str | None, language: str | None) -> str:
    """The user turn's text: the task again, with the job's glossary and the preceding context."""
    parts = ["Transcribe this audio exactly. Output only the words that are spoken."]
    if language:
        parts.append(f"The speech is in the language with code '{language}'.")
    if prompt and prompt.strip():
        parts.append(
            "For spelling only (names, terms, and the speech just before this clip, which is NOT part of "
            f"this audio and must not be repeated): {prompt.strip()}"
        )
    return " ".join(parts)


def split_at_pauses(
    audio: np.ndarray, max_samples: int, frame: int = SAMPLE_RATE // 10
) -> list[tuple[int, int]]:
    """Cut ``audio`` into contiguous ``[start, end)`` pieces of at most ``max_samples``, each cut at the
    quietest ``frame`` the length limit allows (words are least likely to be cut in half there)."""
    pieces: list[tuple[int, int]] = []
    start, total = 0, len(audio)
    while total - start > max_samples:
        hi = start + max_samples
        # With at most two pieces left, the cut must also leave the last one short enough.
        lo = start + max_samples // 2
        if total - start <= 2 * max_samples:
            lo = max(lo, total - max_samples)
        cut = _quietest(audio, lo, hi, frame)
        pieces.append((start, cut))
        start = cut
    pieces.append((start, total))
    return pieces


def _quietest(audio: np.ndarray, lo: int, hi: int, frame: int) -> int:
    """The middle of the lowest-energy frame inside ``[lo, hi]`` (``hi`` when the range is too short)."""
    if hi - lo < frame:
        return hi
    step = max(frame // 2, 1)
    starts = np.arange(lo, hi - frame + 1, step)
    energy = [float(np.mean(np.square(audio[s : s + frame], dtype=np.float64))) for s in starts]
    return int(starts[int(np.argmin(energy))]) + frame // 2


class VllmChatBackend:
    """Qwen2-Audio-7B-Instruct (or another audio chat model) behind vLLM's ``/v1/chat/completions``.

    Qwen2-Audio hears at most 30 s (its feature extractor truncates the rest, silently), while merged
    windows can be longer: such a clip is sent in pieces cut at pauses, and the answers are joined.
    """

    def __init__(self, settings: CorrectorSettings) -> None:
        self._model = settings.remote_model()
        self.name = f"vllm:{self._model}"
        self._url = f"{api_root(settings.base_url)}/v1/chat/completions"
        self._max_tokens = settings.max_tokens
        self._max_samples = int(settings.chat_max_audio_s * SAMPLE_RATE)
        self._policy = RetryPolicy(max_attempts=settings.max_attempts, backoff_s=settings.backoff_s)
        self._gate = asyncio.Semaphore(settings.max_concurrency)
        self._client = new_client(
            settings.timeout_s, settings.api_key.get_secret_value() if settings.api_key else None
        )

    def request_body(self, audio: np.ndarray, *, prompt: str | None, language: str | None) -> dict[str, Any]:
        encoded = base64.b64encode(wav_from_float(audio)).decode("ascii")
        return {
            "model": self._model,
            "messages": [
                {"role": "system", "content": SYSTEM_INSTRUCTION},
                {
                    "role": "user",
                    "content": [
                        {"type": "input_audio", "input_audio": {"data": encoded, "format": "wav"}},
                        {"type": "text", "text": transcription_instruction(prompt, language)},
                    ],
                },
            ],
            "temperature": 0,
            "max_tokens": self._max_tokens,
        }

    async def transcribe(
        self, audio: np.ndarray, *, prompt: str | None, language: str | None
    ) -> SecondPassAnswer:
        samples = mono_samples(audio)
        pieces = split_at_pauses(samples, self._max_samples)
        texts = await asyncio.gather(
            *(self._ask(samples[start:end], prompt=prompt, language=language) for start, end in pieces)
        )
        return SecondPassAnswer(text=" ".join(text for text in texts if text), words=None)

    async def _ask(self, audio: np.ndarray, *, prompt: str | None, language: str | None) -> str:
        body = self.request_body(audio, prompt=prompt, language=language)
        response = await post_with_retries(
            self._client, self._url, policy=self._policy, gate=self._gate, json=body
        )
        answer = json_body(response)
        try:
            choice = answer["choices"][0]
            content = choice["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise BackendError(
                "bad_response", f"no choices[0].message.content in {str(answer)[:200]}"
            ) from exc
        if isinstance(content, list):
            content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
        if content is not None and not isinstance(content, str):
            raise BackendError("bad_response", f"message content is {type(content).__name__}, not text")
        if choice.get("finish_reason") == "length":
            log.warning(
                "%s stopped at max_tokens=%d; the answer may be cut short", self.name, self._max_tokens
            )
        return clean_answer(content)

    async def aclose(self) -> None:
        await self._client.aclose()


# --- OpenAI-compatible transcription -----------------------------------------------------------------


def words_from_verbose_json(body: dict[str, Any]) -> list[Word] | None:
    """``words`` of a verbose_json answer (or those inside its segments); None when it has none."""
    raw: Any = body.get("words")
    if not raw:
        segments = body.get("segments") or []
        raw = [w for s in segments if isinstance(s, dict) for w in (s.get("words") or [])]
    if not raw:
        return None
    if not isinstance(raw, Sequence):
        raise BackendError("bad_response", "words is not a list")
    words: list[Word] = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("word"), str):
            raise BackendError("bad_response", f"malformed word {item!r}")
        text = item["word"].strip()
        if not text:
            continue
        start = json_number(item.get("start"), "word start")
        end = max(json_number(item.get("end"), "word end"), start)
        probability = item.get("probability")
        words.append(
            Word(
                word=text,
                start=start,
                end=end,
                probability=MISSING_WORD_PROBABILITY
                if probability is None
                else json_number(probability, "probability"),
            )
        )
    return words or None


class OpenAITranscriptionBackend:
    """Any OpenAI-compatible ``/v1/audio/transcriptions``: multipart WAV, ``verbose_json``, word times."""

    def __init__(self, settings: CorrectorSettings) -> None:
        self.name = f"openai:{settings.remote_model()}"
        self._server = TranscriptionsClient(
            base_url=settings.base_url,
            model=settings.remote_model(),
            api_key=settings.api_key.get_secret_value() if settings.api_key else None,
            timeout_s=settings.timeout_s,
            max_attempts=settings.max_attempts,
            backoff_s=settings.backoff_s,
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
