"""Loading a faster-whisper model, the same way in asr and corrector.

Bundled models are resolved to their directories (:func:`relisten_runtime.models.resolve_model`), the
device, compute type and threads come from :class:`~relisten_runtime.settings.SpeechModelSettings`, and
whatever goes wrong is one error: ``model_unavailable``, which the services report at start-up rather
than on the first job. faster-whisper is imported here, on first use, so that only the services that
load a model (and declare faster-whisper) need it installed.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from relisten_runtime.models import BundledModelError, resolve_model
from relisten_runtime.remote import RemoteCallError
from relisten_runtime.settings import SpeechModelSettings, model_cpu_threads

log = logging.getLogger(__name__)


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
        raise RemoteCallError("model_unavailable", f"cannot load {spec!r}: {exc}") from exc


def mono_samples(audio: np.ndarray) -> np.ndarray:
    """``audio`` as float32 mono samples; anything else is ``bad_audio``."""
    samples = np.asarray(audio, dtype=np.float32)
    if samples.ndim != 1:
        raise RemoteCallError("bad_audio", f"expected mono samples, got an array of shape {samples.shape}")
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
