"""faster-whisper in this process, the same way in asr and corrector.

Bundled models are resolved to their directories (:func:`relisten_speech.models.resolve_model`), the
device, compute type and threads come from :class:`~relisten_speech.settings.SpeechModelSettings`, and
whatever goes wrong while loading is one error: ``model_unavailable``, which the services report at
start-up rather than on the first job. faster-whisper is imported here, on first use, so that importing
this module costs nothing until a model is needed.

:class:`InProcessWhisper` is what both passes build on: one model, loaded once, one decode at a time.
The batched pipeline is faster-whisper's own; :func:`trimmed_pipeline` overrides one of its methods that
is not a public API, which is why the package pins faster-whisper below the next minor version.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from relisten_runtime.audio import SAMPLE_RATE

from relisten_speech.errors import SpeechError
from relisten_speech.models import (
    BUNDLED_MODELS,
    BUNDLED_PREFIX,
    BundledModelError,
    display_name,
    resolve_model,
)
from relisten_speech.settings import SpeechModelSettings, model_cpu_threads

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_CHUNK_S = 29.5
"""Longest audio Whisper hears at once (its window is 30 s)."""
WHISPER_FRAMES = 3000
"""Log-mel frames of Whisper's fixed 30 s input (10 ms each)."""


def load_whisper_model(spec: str, settings: SpeechModelSettings) -> Any:
    """A ``faster_whisper.WhisperModel`` for ``spec`` (``bundled:base``, a size, a hub id or a directory).

    Blocking (reads and maps the model): call it from a thread, or at start-up."""
    from faster_whisper import WhisperModel

    try:
        return WhisperModel(
            resolve_model(spec, settings.model_cache_dir),
            device=settings.device,
            compute_type=settings.compute_type,
            cpu_threads=model_cpu_threads(settings.cpu_threads),
        )
    except (BundledModelError, OSError, RuntimeError, ValueError) as exc:
        raise SpeechError("model_unavailable", f"cannot load {spec!r}: {exc}") from exc


def check_bundled_name(spec: str) -> None:
    """A ``bundled:`` name that is not bundled is ``model_unavailable`` now, not when first loaded."""
    if spec.startswith(BUNDLED_PREFIX) and spec not in BUNDLED_MODELS:
        raise SpeechError(
            "model_unavailable", f"unknown bundled model {spec!r}; bundled: {', '.join(BUNDLED_MODELS)}"
        )


def mono_samples(audio: np.ndarray) -> np.ndarray:
    """``audio`` as float32 mono samples; anything else is ``bad_audio``."""
    samples = np.asarray(audio, dtype=np.float32)
    if samples.ndim != 1:
        raise SpeechError("bad_audio", f"expected mono samples, got an array of shape {samples.shape}")
    return samples


def supported_language(model: Any, language: str | None) -> str | None:
    """A language the model knows, else None (auto-detect); English-only models always get "en"."""
    if not model.model.is_multilingual:
        return "en"
    if language is None:
        return None
    code = language.strip().lower()
    if code in model.supported_languages:
        return str(code)
    log.warning("language %r is unknown to the model; detecting it instead", language)
    return None


class InProcessWhisper:
    """Whisper (CTranslate2) in this process: one model, loaded once, one decode at a time.

    Decoding runs in a worker thread so the event loop keeps serving NATS heartbeats. An ``asyncio.Lock``
    (``_queue``) queues callers without tying up executor threads; a ``threading.Lock`` inside
    (``_decode_lock``) keeps one decode at a time even if a cancelled caller's thread runs on.
    """

    def __init__(self, spec: str, settings: SpeechModelSettings) -> None:
        self.model_spec = spec
        """The model setting (``bundled:tiny.en``, ``bundled:base``, a size, a directory)."""
        self.name = f"faster-whisper:{display_name(spec.rstrip('/'))}"
        self._speech_settings = settings
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
                self._model = load_whisper_model(self.model_spec, self._speech_settings)
                self.load_seconds = time.perf_counter() - started
                log.info("loaded %s in %.1f s", self.name, self.load_seconds)
            return self._model

    async def with_model(self, work: Callable[[Any], T]) -> T:
        """``work(model)`` in a worker thread, loading the model first, queued behind other decodes."""

        def run() -> T:
            model = self.load()
            with self._decode_lock:
                return work(model)

        async with self._queue:
            return await asyncio.to_thread(run)

    async def aclose(self) -> None:
        self._model = None


def encoder_frames(longest_chunk: int, padding_s: float) -> int:
    """Frames the encoder is given for chunks of at most ``longest_chunk`` samples: the chunk plus
    ``padding_s`` of silence, even (the encoder's first convolution has stride 2), at most 30 s."""
    frames = math.ceil(longest_chunk / (SAMPLE_RATE // 100) + padding_s * 100)
    frames += frames % 2
    return min(frames, WHISPER_FRAMES)


def trimmed_pipeline(model: Any, frames: int) -> Any:
    """faster-whisper's batched pipeline over ``model`` (VAD chunks or given clip timestamps, decoded
    several at a time, no conditioning on previous text) with the encoder input cut to ``frames``
    log-mel frames (see :func:`encoder_frames`; 30 s or more cuts nothing).

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

        # Not a public API of faster-whisper (hence its upper bound in this package's pyproject).
        def generate_segment_batched(self, features: np.ndarray, tokenizer: Any, options: Any) -> Any:
            return super().generate_segment_batched(features[..., : self.frames], tokenizer, options)

    return TrimmedPipeline
