"""Loading a faster-whisper model: the bundled tiny.en loads; an unknown bundled name is
``model_unavailable`` (what asr and corrector report at start-up)."""

from __future__ import annotations

import numpy as np
import pytest
from relisten_runtime.remote import RemoteCallError, json_number
from relisten_runtime.settings import SpeechModelSettings
from relisten_runtime.whisper import load_whisper_model, mono_samples, supported_language


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


def test_audio_must_be_mono() -> None:
    assert mono_samples(np.zeros(3, dtype=np.int16)).dtype == np.float32
    with pytest.raises(RemoteCallError) as failure:
        mono_samples(np.zeros((2, 16000), dtype=np.float32))
    assert failure.value.code == "bad_audio"


def test_an_english_only_model_is_always_asked_for_english() -> None:
    model = load_whisper_model("bundled:tiny.en", SpeechModelSettings(cpu_threads=1))
    assert supported_language(model, None) == "en"
    assert supported_language(model, "de") == "en"


def test_json_numbers() -> None:
    assert json_number(3, "start") == 3.0
    assert json_number(None, "probability", 1.0) == 1.0
    for bad in (None, True, "0.5"):
        with pytest.raises(RemoteCallError) as failure:
            json_number(bad, "start")
        assert failure.value.code == "bad_response"
