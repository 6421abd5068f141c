"""The per-region accept model: a small logistic model deciding whether a flagged edit region takes
the second pass's words.

The merger's default gate replaces a flagged region when the second pass is more confident there
than the first pass was (``MergePolicy.require_more_confident`` and its thresholds). The accept model
replaces that gate -- and only that gate: the failed-clip, heard-nothing and drift guards run before
it, unchanged -- with P(replacing helps) from signals known at merge time. Its coefficients are data
(``accept_model.json`` beside this module), fitted on the tuning part of the development material by
``python -m relisten.accept_fit`` and judged on the validation part (docs/yardstick.md). No channel
signal is used: in production the channel is not known.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import msgspec

__all__ = ["FEATURES", "AcceptModel", "RegionSignals", "default_accept_model", "region_features"]

FEATURES = (
    "first_mean_logit",
    "second_mean_logit",
    "first_min",
    "second_min",
    "words_removed",
    "words_inserted",
    "pure_deletion",
    "pure_insertion",
    "drift",
    "log_window_words",
    "flagged_share",
    "touching_regions",
)
"""The signals, in the order of the coefficients."""

DATA_FILE = Path(__file__).with_name("accept_model.json")


@dataclass(frozen=True, slots=True)
class RegionSignals:
    """What the merger knows of one flagged edit region when it decides.

    ``first_probabilities`` are the first pass's probabilities of the words the region would replace
    (for a pure insertion: of the flagged words next to it); ``second_probabilities`` the second pass's
    of the words it would put there (for a pure deletion: of its words either side of the gap)."""

    first_probabilities: tuple[float, ...]
    second_probabilities: tuple[float, ...]
    words_removed: int
    words_inserted: int
    drift: float
    window_words: int
    flagged_in_window: int
    touching_regions: int


def _logit(p: float) -> float:
    p = min(max(p, 1e-3), 1 - 1e-3)
    return math.log(p / (1 - p))


def region_features(signals: RegionSignals) -> list[float]:
    """The signals of one region, in :data:`FEATURES` order."""
    first = signals.first_probabilities or (1.0,)
    second = signals.second_probabilities or (0.0,)
    first_mean = sum(first) / len(first)
    second_mean = sum(second) / len(second)
    return [
        _logit(first_mean),
        _logit(second_mean),
        min(first),
        min(second),
        float(signals.words_removed),
        float(signals.words_inserted),
        float(signals.words_inserted == 0),
        float(signals.words_removed == 0),
        signals.drift,
        math.log1p(signals.window_words),
        signals.flagged_in_window / max(signals.window_words, 1),
        float(signals.touching_regions),
    ]


class AcceptModel(msgspec.Struct, frozen=True, kw_only=True):
    """P(replacing the region helps) = sigmoid(intercept + sum(coef * (x - mean) / scale)); a region
    is replaced when that reaches ``threshold``."""

    features: list[str]
    mean: list[float]
    scale: list[float]
    coefficients: list[float]
    intercept: float
    threshold: float = 0.5
    fitted_on: str = ""
    """What the coefficients were fitted on (a description, for people)."""
    results: dict[str, float] = msgspec.field(default_factory=dict)
    """Tuning and validation WER differences against the default gate when fitted (percentage points)."""

    def __post_init__(self) -> None:
        sizes = {len(self.features), len(self.mean), len(self.scale), len(self.coefficients)}
        if len(sizes) != 1:
            raise ValueError("features, mean, scale and coefficients must have the same length")
        if list(self.features) != list(FEATURES):
            raise ValueError(f"accept model features {self.features} are not {list(FEATURES)}")

    def probability(self, features: Sequence[float]) -> float:
        z = self.intercept
        for x, mean, scale, coef in zip(features, self.mean, self.scale, self.coefficients, strict=True):
            z += coef * (x - mean) / (scale or 1.0)
        return 1.0 / (1.0 + math.exp(-max(-40.0, min(40.0, z))))

    def accepts(self, signals: RegionSignals) -> bool:
        return self.probability(region_features(signals)) >= self.threshold


@cache
def default_accept_model() -> AcceptModel:
    """The shipped coefficients."""
    return msgspec.json.decode(DATA_FILE.read_bytes(), type=AcceptModel)
