"""Speech the voice activity detector misses: Silero VAD at its default threshold keeps little of
band-limited telephone speech, and the batched first pass then takes its chunks at a lower threshold."""

from __future__ import annotations

import jiwer
import numpy as np
import pytest
from faster_whisper import decode_audio
from relisten_asr.engines import FasterWhisperEngine, vad_kept_seconds
from relisten_asr.recovery import vad_misses_speech
from relisten_asr.settings import AsrSettings
from relisten_contracts import FirstPass

from relisten.dataset import Recording, degrade
from relisten.testing import IRON, normalise
from relisten.testing import IRON_REFERENCE as REFERENCE

RATE = 16000


def test_enough_speech_kept_never_asks_the_lower_threshold() -> None:
    def not_asked() -> float:
        raise AssertionError("the lower threshold was run although nothing could change")

    assert not vad_misses_speech(90.0, 100.0, not_asked, 0.8)
    assert not vad_misses_speech(80.0, 100.0, not_asked, 0.8)


def test_speech_is_missed_when_a_lower_threshold_keeps_much_more() -> None:
    assert vad_misses_speech(30.0, 100.0, lambda: 80.0, 0.8)
    assert vad_misses_speech(0.0, 10.0, lambda: 1.0, 0.8)
    # A recording with long real pauses: the lower threshold keeps about as much, nothing was missed.
    assert not vad_misses_speech(30.0, 100.0, lambda: 33.0, 0.8)
    assert not vad_misses_speech(0.0, 10.0, lambda: 0.0, 0.8)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return np.asarray(decode_audio(str(IRON), sampling_rate=RATE), dtype=np.float32)


@pytest.fixture(scope="module")
def telephone(speech: np.ndarray) -> np.ndarray:
    """The clip through the development set's telephone channel (8 kHz, 300-3400 Hz, mu-law)."""
    return degrade(Recording("iron", speech, REFERENCE), "tel").audio


def test_silero_keeps_little_of_telephone_speech_at_its_default_threshold(
    speech: np.ndarray, telephone: np.ndarray
) -> None:
    assert vad_kept_seconds(speech, 0.5) > 0.8 * vad_kept_seconds(speech, 0.25)
    assert vad_kept_seconds(telephone, 0.5) < 0.5 * vad_kept_seconds(telephone, 0.25)


def wer(result: FirstPass) -> float:
    return float(jiwer.wer(REFERENCE, normalise(" ".join(w.word for w in result.words))))


async def test_the_batched_first_pass_hears_telephone_speech_with_the_fallback(
    speech: np.ndarray, telephone: np.ndarray
) -> None:
    settings = AsrSettings(batch_size=4, beam_size=1, recover_unheard_speech=False)
    assert settings.vad_fallback_threshold > 0, "the fallback is on by default"
    without = FasterWhisperEngine(settings.model_copy(update={"vad_fallback_threshold": 0.0}))
    fallback = FasterWhisperEngine(settings)
    missed = await without.transcribe(telephone, language=None, prompt=None)
    heard = await fallback.transcribe(telephone, language=None, prompt=None)
    print(f"telephone: WER {wer(missed):.2f} at 0.5 alone, {wer(heard):.2f} with the fallback")
    assert wer(missed) > 0.4
    assert wer(heard) < 0.25
    # Where the default VAD keeps the speech, the fallback changes nothing.
    clean = await without.transcribe(speech, language=None, prompt=None)
    clean_fallback = await fallback.transcribe(speech, language=None, prompt=None)
    assert [w.word for w in clean_fallback.words] == [w.word for w in clean.words]
