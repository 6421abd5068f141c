"""An audio chat model asked to transcribe: Qwen2-Audio-7B-Instruct (or a kin) behind vLLM's
OpenAI-compatible ``/v1/chat/completions``, the audio sent inline as a base64 WAV ``input_audio`` part.

Text only: the answer has no word times, and it is cleaned of chat talk (:mod:`relisten_speech.cleaning`).
Qwen2-Audio hears at most 30 s (its feature extractor truncates the rest, silently): longer audio is
sent in pieces cut at pauses, and the answers are joined.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any

import numpy as np
from relisten_runtime.audio import SAMPLE_RATE, wav_from_float

from relisten_speech.cleaning import clean_answer
from relisten_speech.errors import SpeechError
from relisten_speech.remote import SpeechServer, SpeechServerClient

log = logging.getLogger(__name__)

MAX_AUDIO_S = 30.0
"""Longest audio Qwen2-Audio hears in one request (its feature extractor truncates the rest)."""

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


class ChatTranscriptionClient(SpeechServerClient):
    """``/v1/chat/completions`` of one audio chat model."""

    path = "/v1/chat/completions"

    def __init__(
        self,
        server: SpeechServer,
        *,
        model: str,
        max_tokens: int,
        max_concurrency: int,
        max_audio_s: float = MAX_AUDIO_S,
    ) -> None:
        super().__init__(server, model=model, max_concurrency=max_concurrency)
        self.max_tokens = max_tokens
        self._max_samples = int(max_audio_s * SAMPLE_RATE)

    def request_body(self, audio: np.ndarray, *, prompt: str | None, language: str | None) -> dict[str, Any]:
        encoded = base64.b64encode(wav_from_float(audio)).decode("ascii")
        return {
            "model": self.model,
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
            "max_tokens": self.max_tokens,
        }

    async def transcribe(self, samples: np.ndarray, *, prompt: str | None, language: str | None) -> str:
        """What the model heard in ``samples`` (16 kHz mono floats), cleaned; pieces asked at once."""
        pieces = split_at_pauses(samples, self._max_samples)
        texts = await asyncio.gather(
            *(self._ask(samples[start:end], prompt=prompt, language=language) for start, end in pieces)
        )
        return " ".join(text for text in texts if text)

    async def _ask(self, audio: np.ndarray, *, prompt: str | None, language: str | None) -> str:
        answer = await self.post_json(json=self.request_body(audio, prompt=prompt, language=language))
        try:
            choice = answer["choices"][0]
            content = choice["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise SpeechError(
                "bad_response", f"no choices[0].message.content in {str(answer)[:200]}"
            ) from exc
        if isinstance(content, list):
            content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
        if content is not None and not isinstance(content, str):
            raise SpeechError("bad_response", f"message content is {type(content).__name__}, not text")
        if choice.get("finish_reason") == "length":
            log.warning(
                "vllm:%s stopped at max_tokens=%d; the answer may be cut short", self.model, self.max_tokens
            )
        return clean_answer(content)
