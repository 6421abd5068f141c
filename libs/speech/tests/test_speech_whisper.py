"""Loading a faster-whisper model: the bundled tiny.en loads; an unknown bundled name is
``model_unavailable`` (what asr and corrector report at start-up)."""

from __future__ import annotations

import numpy as np
import pytest
from relisten_speech.errors import SpeechError
from relisten_speech.settings import SpeechModelSettings
from relisten_speech.verbose_json import json_number
from relisten_speech.whisper import encoder_frames, load_whisper_model, mono_samples, supported_language


def test_the_bundled_model_loads_and_decodes() -> None:
    model = load_whisper_model("bundled:tiny.en", SpeechModelSettings(cpu_threads=1))
    segments, info = model.transcribe(np.zeros(16000, dtype=np.float32), beam_size=1)
    list(segments)
    assert info.duration == pytest.approx(1.0)


def test_an_unknown_bundled_model_is_model_unavailable() -> None:
    with pytest.raises(SpeechError) as failure:
        load_whisper_model("bundled:huge", SpeechModelSettings())
    assert failure.value.code == "model_unavailable"
    assert "cannot load 'bundled:huge'" in failure.value.message


def test_audio_must_be_mono() -> None:
    assert mono_samples(np.zeros(3, dtype=np.int16)).dtype == np.float32
    with pytest.raises(SpeechError) as failure:
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
        with pytest.raises(SpeechError) as failure:
            json_number(bad, "start")
        assert failure.value.code == "bad_response"


@pytest.mark.parametrize(
    ("longest_s", "padding_s", "frames"), [(10.0, 8.0, 1800), (0.5, 0.0, 50), (29.5, 8.0, 3000)]
)
def test_the_encoder_hears_the_longest_chunk_plus_its_padding(
    longest_s: float, padding_s: float, frames: int
) -> None:
    assert encoder_frames(int(longest_s * 16000), padding_s) == frames


def test_encoder_frames_are_even_and_never_exceed_whisper_s_window() -> None:
    for samples in range(0, 16000 * 31, 797):
        frames = encoder_frames(samples, 8.0)
        assert frames % 2 == 0 and frames <= 3000
