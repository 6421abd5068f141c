"""Calibrated word probabilities: how likely a first-pass word is right, from the first pass's own signals.

Whisper's word probability ranks words well but is not a probability of being right. A small logistic
model over the first pass's signals (the word's probability, duration and characters per second, its
neighbours' probabilities, its segment's average log-probability, compression ratio and no-speech
probability) turns them into one. Its coefficients are data (``calibration.json`` beside this module),
fitted on the development set's tuning part by ``python -m relisten.calibrate``, which also prints how
well it ranks and how well it is calibrated on the validation part.

Pure Python (no numpy): the asr service applies it to every first pass when its
``RELISTEN_ASR_CALIBRATE_PROBABILITY`` setting is on; :func:`calibrated` keeps the model's own value in
``Word.raw_probability``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import msgspec

from relisten_contracts.documents import FirstPass, Segment, Word

__all__ = ["FEATURES", "Calibration", "calibrated", "default_calibration", "word_features"]

FEATURES: tuple[str, ...] = (
    "logit_probability",
    "probability",
    "log_duration",
    "log_chars_per_second",
    "previous_probability",
    "next_probability",
    "chars",
    "segment_avg_logprob",
    "segment_compression_ratio",
    "segment_no_speech_prob",
)
"""The signals, in the order of the coefficients."""

DATA_FILE = Path(__file__).with_name("calibration.json")


class Calibration(msgspec.Struct, frozen=True, kw_only=True):
    """A fitted logistic model: P(word right) = sigmoid(intercept + sum(coef * (x - mean) / scale))."""

    features: list[str]
    mean: list[float]
    scale: list[float]
    coefficients: list[float]
    intercept: float
    fitted_on: str = ""
    """What the coefficients were fitted on (a description, for people)."""
    validation: dict[str, float] = msgspec.field(default_factory=dict)
    """Metrics on the validation part when fitted (AUC, recall at budget, ECE; before and after)."""

    def __post_init__(self) -> None:
        sizes = {len(self.features), len(self.mean), len(self.scale), len(self.coefficients)}
        if len(sizes) != 1:
            raise ValueError("features, mean, scale and coefficients must have the same length")
        if list(self.features) != list(FEATURES):
            raise ValueError(f"calibration features {self.features} are not {list(FEATURES)}")

    def probability(self, features: Sequence[float]) -> float:
        z = self.intercept
        for x, mean, scale, coef in zip(features, self.mean, self.scale, self.coefficients, strict=True):
            z += coef * (x - mean) / (scale or 1.0)
        return 1.0 / (1.0 + math.exp(-max(-40.0, min(40.0, z))))


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


def word_features(words: Sequence[Word], segments: Sequence[Segment]) -> list[list[float]]:
    """The signals of every word, in :data:`FEATURES` order (raw probabilities are read from
    ``raw_probability`` when a word has one, so calibrating twice changes nothing)."""
    probs = [w.raw_probability if w.raw_probability is not None else w.probability for w in words]
    segment_of: list[Segment | None] = [None] * len(words)
    for segment in segments:
        for index in range(max(segment.first_word, 0), min(segment.last_word, len(words))):
            segment_of[index] = segment
    rows = []
    for index, word in enumerate(words):
        duration = max(word.end - word.start, 0.01)
        chars = sum(ch.isalnum() for ch in word.word)
        found = segment_of[index]
        rows.append(
            [
                _logit(probs[index]),
                probs[index],
                math.log(duration),
                math.log1p(chars / duration),
                probs[index - 1] if index > 0 else 1.0,
                probs[index + 1] if index + 1 < len(words) else 1.0,
                float(chars),
                found.avg_logprob if found is not None else 0.0,
                found.compression_ratio if found is not None else 1.0,
                found.no_speech_prob if found is not None else 0.0,
            ]
        )
    return rows


def calibrated(first: FirstPass, calibration: Calibration) -> FirstPass:
    """``first`` with every word's ``probability`` calibrated and the model's own in ``raw_probability``."""
    rows = word_features(first.words, first.segments)
    words = [
        msgspec.structs.replace(
            word,
            probability=round(calibration.probability(row), 4),
            raw_probability=word.raw_probability if word.raw_probability is not None else word.probability,
        )
        for word, row in zip(first.words, rows, strict=True)
    ]
    return msgspec.structs.replace(first, words=words)


@cache
def default_calibration() -> Calibration:
    """The shipped coefficients."""
    return msgspec.json.decode(DATA_FILE.read_bytes(), type=Calibration)
