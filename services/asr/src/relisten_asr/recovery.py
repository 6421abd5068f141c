"""Speech the first pass did not transcribe.

Whisper sometimes stops early inside a 30 s window and skips a whole sentence (measured: on the
development set joined into one 9.7 min recording, batched tiny.en and base both dropped runs of
20-30 words). Word confidence cannot flag words that were never written, so the gaps between words are
checked against the audio itself: a long gap that is as loud as the words around it most of the way is
speech nobody transcribed, and is decoded again on its own.

The voice activity detector can miss speech too, before Whisper hears anything: Silero VAD at its
default threshold keeps little of band-limited (telephone) speech. :func:`vad_misses_speech` decides
from how much speech it keeps at the default threshold and at a lower one.

Pure functions over words and samples; no model here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from relisten_contracts import Word
from relisten_runtime.audio import frame_levels


@dataclass(frozen=True, slots=True)
class RecoveryPolicy:
    min_gap_s: float = 2.0
    """Pauses between words shorter than this are ordinary pauses."""
    min_speech_s: float = 1.0
    """A gap needs at least this much speech-loud audio to count as unheard speech."""
    below_speech_db: float = 15.0
    """Frames within this many dB of the words' median loudness count as speech-loud."""
    margin_s: float = 0.2
    """Audio kept around the loud part of a gap when it is decoded again."""
    frame_s: float = 0.03


def unheard_speech(
    words: Sequence[Word], audio: np.ndarray, sample_rate: int, policy: RecoveryPolicy | None = None
) -> list[tuple[float, float]]:
    """Spans ``(start_s, end_s)``, in order, of loud audio in long gaps between the words.

    "Loud" is relative to the recording's own words (median frame level inside them), so quiet
    recordings and hot ones are judged alike. A recording without words has nothing to compare with
    and yields nothing (the first pass heard no speech at all; the second pass is not asked either).
    """
    policy = policy or RecoveryPolicy()
    duration = len(audio) / sample_rate
    levels = frame_levels(audio, sample_rate, policy.frame_s)
    if not words or levels.size == 0:
        return []
    frame = policy.frame_s

    def frames_of(start: float, end: float, *, whole: bool = False) -> slice:
        """Frames touching ``[start, end)``, or with ``whole`` only those lying entirely inside."""
        first = int(np.ceil(start / frame)) if whole else int(start / frame)
        last = int(end / frame) if whole else int(np.ceil(end / frame))
        return slice(max(0, first), max(min(levels.size, last), 0))

    inside = np.concatenate([levels[frames_of(w.start, w.end)] for w in words] + [np.zeros(0)])
    if inside.size == 0:
        return []
    loud_from = float(np.median(inside)) - policy.below_speech_db
    edges = [0.0, *(t for w in words for t in (w.start, w.end)), duration]
    spans: list[tuple[float, float]] = []
    for gap_start, gap_end in zip(edges[::2], edges[1::2], strict=True):
        if gap_end - gap_start < policy.min_gap_s:
            continue
        window = frames_of(gap_start, gap_end, whole=True)
        loud = np.flatnonzero(levels[window] >= loud_from)
        if loud.size * frame < policy.min_speech_s:
            continue
        first = (window.start + int(loud[0])) * frame
        last = (window.start + int(loud[-1]) + 1) * frame
        spans.append((max(gap_start, first - policy.margin_s), min(gap_end, last + policy.margin_s)))
    return spans


def vad_misses_speech(
    kept_s: float, duration_s: float, kept_lower: Callable[[], float], ratio: float
) -> bool:
    """Whether voice activity detection that kept ``kept_s`` seconds of a ``duration_s`` recording missed
    speech: it kept less than ``ratio`` of what it keeps at a lower threshold (``kept_lower()``, seconds).

    ``kept_lower`` runs the detector again, so it is only called when the answer can be yes: whatever
    the lower threshold keeps is at most the whole recording."""
    if kept_s >= ratio * duration_s:
        return False
    return kept_s < ratio * kept_lower()
