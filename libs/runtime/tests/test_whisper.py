"""Loading a faster-whisper model: the bundled tiny.en loads; an unknown bundled name is
``model_unavailable`` (what asr and corrector report at start-up)."""

from __future__ import annotations

import numpy as np
import pytest
from relisten_runtime.remote import RemoteCallError
from relisten_runtime.settings import SpeechModelSettings
from relisten_runtime.whisper import load_whisper_model


def test_the_bundled_model_loads_and_decodes() -> None:
    model = load_whisper_model("bundled:tiny.en", SpeechModelSettings(cpu_threads=1))
    segments, info = model.transcribe(np.zeros(16000, dtype=np.float32), beam_size=1)
    list(segments)
    assert info.duration == pytest.approx(1.0)


def test_an_unknown_bundled_model_is_model_unavailable() -> None:
    with pytest.raises(RemoteCallError) as failure:
        load_whisper_model("bundled:huge", SpeechModelSettings())
    assert failure.value.code == "model_unavailable"
    assert "cannot load 'bundled:huge'" in failure.value.message
