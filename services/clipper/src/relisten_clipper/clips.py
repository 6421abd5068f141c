"""Cutting a clip out of the stored audio: a slice of its 16-bit PCM samples in a WAV container.

The stored audio is already the normalised 16 kHz mono 16-bit PCM (``relisten_runtime.audio``), so a
clip is those samples from ``first_sample`` up to ``end_sample`` with a WAV header: no codec, no
resampling, no seeking, and sample-exact by construction.
"""

from __future__ import annotations

from relisten_runtime.audio import SAMPLE_WIDTH, wav_bytes


def cut_clip(pcm: bytes, first_sample: int, end_sample: int) -> bytes:
    """Samples ``[first_sample, end_sample)`` of the mono 16-bit ``pcm`` as a WAV file (clamped to
    the audio, empty when the range is)."""
    total = len(pcm) // SAMPLE_WIDTH
    first = min(max(first_sample, 0), total)
    end = min(max(end_sample, first), total)
    return wav_bytes(pcm[first * SAMPLE_WIDTH : end * SAMPLE_WIDTH])
