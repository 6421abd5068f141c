"""Scoring that can see: errors per reference utterance, paired bootstrap intervals of WER differences,
and which first-pass words are wrong.

A long-form recording is several reference utterances with pauses between them
(:class:`relisten.dataset.Utterance`). A hypothesis word belongs to the utterance whose stretch holds
the word's midpoint, the stretches meeting halfway through each pause; errors (substitutions, deletions,
insertions after :func:`relisten.dataset.normalise_text`) are then counted per utterance. Their sum is
close to the recording's errors (a word straddling a boundary can move an error from one utterance to
the next, never add one to the total by more than the alignment would).

:func:`paired_bootstrap` resamples *units* with replacement: by default each original utterance is one
unit, and every channel-degraded copy of it (``name~kind``) goes with it, so copies do not count as
independent evidence. The interval is the 2.5th to 97.5th percentile of WER(x) - WER(y) over the
resamples; an interval that includes zero is "not a win".
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from relisten.dataset import Recording, normalise_text

__all__ = [
    "Interval",
    "TimedWord",
    "UnitErrors",
    "paired_bootstrap",
    "unit_errors",
    "wrong_words",
]

TimedWord = tuple[float, float, str]
"""(start_s, end_s, word) of one hypothesis word."""


@dataclass(frozen=True)
class UnitErrors:
    """Word errors of a hypothesis on one reference unit (an utterance of a recording)."""

    group: str
    """Units sharing a group are resampled together (an utterance and its degraded copies)."""
    errors: int
    words: int


def _errors(reference: str, hypothesis: str) -> tuple[int, int]:
    import jiwer

    ref, hyp = normalise_text(reference), normalise_text(hypothesis)
    count = len(ref.split())
    if not ref:
        return len(hyp.split()), 0
    if not hyp:
        return count, count
    out = jiwer.process_words(ref, hyp)
    return int(out.substitutions + out.deletions + out.insertions), count


def unit_errors(recording: Recording, words: Sequence[TimedWord]) -> list[UnitErrors]:
    """Errors of ``words`` per reference utterance of ``recording`` (one unit when it has none)."""
    origin = recording.name.split("~", 1)[0]
    utterances = recording.utterances
    if len(utterances) <= 1:
        errors, count = _errors(recording.reference, " ".join(w for _, _, w in words))
        return [UnitErrors(f"{origin}#0", errors, count)]
    bounds = [(a.end_s + b.start_s) / 2 for a, b in itertools.pairwise(utterances)]
    texts: list[list[str]] = [[] for _ in utterances]
    for start, end, word in words:
        texts[bisect.bisect_right(bounds, (start + end) / 2)].append(word)
    units = []
    for index, (utterance, text) in enumerate(zip(utterances, texts, strict=True)):
        errors, count = _errors(utterance.reference, " ".join(text))
        units.append(UnitErrors(f"{origin}#{index}", errors, count))
    return units


@dataclass(frozen=True)
class Interval:
    """WER(x) - WER(y) on all units and its bootstrap 95 % interval (fractions, not percent)."""

    difference: float
    low: float
    high: float
    units: int

    @property
    def win(self) -> bool:
        """x is better than y beyond resampling noise: the whole interval is below zero."""
        return self.high < 0

    @property
    def verdict(self) -> str:
        if self.win:
            return "win"
        if self.low > 0:
            return "worse"
        return "not a win"

    def text(self) -> str:
        return (
            f"{self.difference * 100:+.2f} pt [{self.low * 100:+.2f}, {self.high * 100:+.2f}] "
            f"({self.verdict})"
        )


def paired_bootstrap(
    x: Sequence[UnitErrors], y: Sequence[UnitErrors], *, resamples: int = 2000, seed: int = 0
) -> Interval:
    """WER(x) - WER(y) with a 95 % percentile interval, resampling groups of units with replacement.

    ``x`` and ``y`` are the same units (same order) scored for two systems. Deterministic for a seed.
    """
    if [u.group for u in x] != [u.group for u in y]:
        raise ValueError("x and y must score the same units in the same order")
    groups = sorted({u.group for u in x})
    index = {group: i for i, group in enumerate(groups)}
    ex, ey, words = (np.zeros(len(groups)) for _ in range(3))
    for ux, uy in zip(x, y, strict=True):
        g = index[ux.group]
        ex[g] += ux.errors
        ey[g] += uy.errors
        words[g] += ux.words
    total = words.sum()
    if total == 0:
        return Interval(0.0, 0.0, 0.0, len(groups))
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(groups), size=(resamples, len(groups)))
    counts = np.maximum(words[picks].sum(axis=1), 1.0)
    diffs = (ex[picks].sum(axis=1) - ey[picks].sum(axis=1)) / counts
    low, high = np.percentile(diffs, [2.5, 97.5])
    return Interval(float((ex.sum() - ey.sum()) / total), float(low), float(high), len(groups))


def wer_of(units: Sequence[UnitErrors]) -> float:
    words = sum(u.words for u in units)
    return sum(u.errors for u in units) / words if words else 0.0


def wrong_words(reference: str, words: Sequence[str]) -> list[bool]:
    """For each hypothesis word, whether the alignment with ``reference`` (both normalised) makes it
    wrong: one of its tokens is substituted or inserted. A deletion next to a word does not make it
    wrong (nothing the word said was false)."""
    import jiwer

    owners: list[int] = []
    tokens: list[str] = []
    for index, word in enumerate(words):
        for token in normalise_text(word).split():
            owners.append(index)
            tokens.append(token)
    wrong = [False] * len(words)
    ref = normalise_text(reference)
    if not tokens:
        return wrong
    if not ref:
        return [bool(normalise_text(word)) for word in words]
    out = jiwer.process_words(ref, " ".join(tokens))
    for chunk in out.alignments[0]:
        if chunk.type in ("substitute", "insert"):
            for position in range(chunk.hyp_start_idx, chunk.hyp_end_idx):
                wrong[owners[position]] = True
    return wrong
