"""The one audio format between services: float samples to 16-bit PCM and WAV."""

from __future__ import annotations

import io
import wave

import numpy as np
from relisten_runtime.audio import pcm16_from_float, wav_from_float


def _read_wav(data: bytes) -> tuple[int, int, int, np.ndarray]:
    with wave.open(io.BytesIO(data), "rb") as wav:
        frames = wav.readframes(wav.getnframes())
        return wav.getframerate(), wav.getnchannels(), wav.getsampwidth(), np.frombuffer(frames, dtype="<i2")


def test_wav_from_float_is_16k_mono_s16_and_round_trips_pcm() -> None:
    pcm = np.random.default_rng(1).integers(-32768, 32767, size=16000 * 2 + 7, dtype=np.int16)
    audio = pcm.astype(np.float32) / 32768.0
    rate, channels, width, samples = _read_wav(wav_from_float(audio))
    assert (rate, channels, width) == (16000, 1, 2)
    np.testing.assert_array_equal(samples, pcm)


def test_pcm16_clips_out_of_range_and_non_finite_samples() -> None:
    samples = np.frombuffer(pcm16_from_float(np.array([2.0, -2.0, np.nan, 0.5, -1.0])), dtype="<i2")
    assert samples.tolist() == [32767, -32768, 0, 16384, -32768]
