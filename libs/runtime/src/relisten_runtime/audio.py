"""16 kHz mono 16-bit PCM in WAV containers: the one audio format that travels between services."""

from __future__ import annotations

import io
import wave

import numpy as np

SAMPLE_RATE = 16000
SAMPLE_WIDTH = 2


class NotNormalisedAudio(ValueError):
    """The stored audio is not the 16 kHz mono 16-bit PCM that ingest writes."""


def wav_bytes(pcm: bytes, sample_rate: int = SAMPLE_RATE) -> bytes:
    """Wrap mono 16-bit PCM in a WAV container."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(SAMPLE_WIDTH)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm)
    return out.getvalue()


def pcm16_to_float(pcm: bytes) -> np.ndarray:
    """Little-endian 16-bit PCM as float32 samples in [-1, 1) (scale 32768, the inverse of
    :func:`pcm16_from_float`): what the models are given."""
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


def pcm_from_wav(data: bytes) -> bytes:
    """The PCM frames of a normalised WAV; raises :class:`NotNormalisedAudio` for anything else."""
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            if (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) != (1, SAMPLE_WIDTH, SAMPLE_RATE):
                raise NotNormalisedAudio(
                    f"expected 16 kHz mono 16-bit, got {wav.getframerate()} Hz, "
                    f"{wav.getnchannels()} channel(s), {8 * wav.getsampwidth()}-bit"
                )
            return wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise NotNormalisedAudio(str(exc)) from exc


def pcm16_from_float(audio: np.ndarray) -> bytes:
    """Float samples in [-1, 1] as little-endian 16-bit PCM, rounded and clipped.

    The scale is 32768, the inverse of how the services turn stored PCM into floats, so a clip that came
    from PCM goes back to exactly the same samples.
    """
    samples = np.nan_to_num(np.asarray(audio, dtype=np.float64).reshape(-1), nan=0.0, posinf=1.0, neginf=-1.0)
    scaled = np.clip(np.rint(samples * 32768.0), -32768, 32767)
    return scaled.astype("<i2").tobytes()


def wav_from_float(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """A 16 kHz mono 16-bit WAV file of ``audio``."""
    return wav_bytes(pcm16_from_float(audio), sample_rate)


def frame_levels(audio: np.ndarray, sample_rate: int, frame_s: float) -> np.ndarray:
    """Loudness of consecutive frames of float samples in dB below full scale (RMS; digital silence
    at -120 dB; a last partial frame is left out). The one loudness measure of the services: the asr's
    recovery and hallucination screening, and the live VAD."""
    size = max(1, round(frame_s * sample_rate))
    count = len(audio) // size
    if count == 0:
        return np.zeros(0, dtype=np.float64)
    frames = np.asarray(audio[: count * size], dtype=np.float32).reshape(count, size)
    # einsum sums each frame's squares without a copy of the audio (an hour is 230 MB as float32)
    rms = np.sqrt(np.einsum("ij,ij->i", frames, frames).astype(np.float64) / size)
    return np.asarray(20.0 * np.log10(np.maximum(rms, 1e-6)), dtype=np.float64)
