"""Fit the word-probability calibration on the tuning part; report it on the validation part.

``python -m relisten.calibrate [--write]`` decodes (or reads from the yardstick's cache) the first pass
of every recording of the development material (long-form chapters, sonnets, short speakers and their
channel-degraded copies; ``relisten.dataset``), labels each first-pass word right or wrong by aligning
the first pass with the reference (``relisten.scoring.wrong_words``: substituted and inserted words are
wrong), and fits a logistic regression of "right" on the signals of
``relisten_contracts.calibration.FEATURES`` over the **tuning** part (Newton's method, a small L2
penalty, features standardised; numpy at fit time only). It prints, on the **validation** part, before
(the model's own probability) and after (calibrated):

* AUC of the probability as a detector of wrong words;
* recall of wrong words at the default budget: the words the raw probability flags below the default
  threshold (0.6), and the same number of words ranked by the calibrated probability;
* what the clipper's real flagging (``flag_words`` with its default policy, segment levers included)
  flags and finds with each;
* expected calibration error (10 equal-width bins of P(right));
* a bootstrap 95 % interval of the AUC gain (recordings resampled with their degraded copies).

``--write`` stores the coefficients and those validation metrics in
``libs/contracts/src/relisten_contracts/calibration.json``, the data the asr service reads.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from relisten_contracts import FirstPass
from relisten_contracts.calibration import DATA_FILE, FEATURES, Calibration, calibrated, word_features

from relisten.bench import environment
from relisten.dataset import DEGRADATIONS, Recording, development_recordings, split_of
from relisten.scoring import wrong_words

__all__ = ["Labelled", "auc", "expected_calibration_error", "fit_logistic", "label", "main"]


@dataclass
class Labelled:
    """Every first-pass word of some recordings: its features, raw probability and whether it is right."""

    features: np.ndarray
    raw: np.ndarray
    right: np.ndarray
    firsts: list[FirstPass]
    wrong_per_recording: list[list[bool]]
    group: np.ndarray
    """Per word, the recording of origin (degraded copies share their original's): the bootstrap's unit."""


def label(recordings: Sequence[Recording], firsts: Sequence[FirstPass]) -> Labelled:
    rows: list[list[float]] = []
    raw: list[float] = []
    right: list[bool] = []
    group: list[int] = []
    origins: dict[str, int] = {}
    wrongs = []
    for recording, first in zip(recordings, firsts, strict=True):
        origin = origins.setdefault(recording.name.split("~", 1)[0], len(origins))
        group += [origin] * len(first.words)
        wrong = wrong_words(recording.reference, [w.word for w in first.words])
        wrongs.append(wrong)
        rows += word_features(first.words, first.segments)
        raw += [w.raw_probability if w.raw_probability is not None else w.probability for w in first.words]
        right += [not flag for flag in wrong]
    return Labelled(
        np.array(rows, dtype=float).reshape(-1, len(FEATURES)),
        np.array(raw, dtype=float),
        np.array(right, dtype=float),
        list(firsts),
        wrongs,
        np.array(group, dtype=int),
    )


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, iterations: int = 100) -> Calibration:
    """Logistic regression of ``y`` (1 = right) on standardised ``x`` by Newton's method."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    design = np.c_[np.ones(len(x)), (x - mean) / scale]
    weights = np.zeros(design.shape[1])
    penalty = np.diag([0.0] + [l2] * (design.shape[1] - 1))
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(design @ weights, -40, 40)))
        gradient = design.T @ (p - y) + penalty @ weights
        hessian = design.T @ (design * (p * (1 - p))[:, None]) + penalty
        step = np.linalg.solve(hessian, gradient)
        weights -= step
        if float(np.abs(step).max()) < 1e-9:
            break
    return Calibration(
        features=list(FEATURES),
        mean=[float(v) for v in mean],
        scale=[float(v) for v in scale],
        coefficients=[float(v) for v in weights[1:]],
        intercept=float(weights[0]),
    )


def auc(scores: np.ndarray, positives: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for ``positives`` (ties count half)."""
    positives = positives.astype(bool)
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if not n_pos or not n_neg:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    starts = np.cumsum(counts) - counts
    ranks = (starts + (counts + 1) / 2.0)[inverse]
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def expected_calibration_error(predicted: np.ndarray, right: np.ndarray, bins: int = 10) -> float:
    """Sum over equal-width bins of |mean predicted - fraction right|, weighted by the bin's share."""
    which = np.minimum((predicted * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += abs(float(predicted[members].mean() - right[members].mean())) * members.mean()
    return total


def _auc_gain_interval(
    before: np.ndarray, after: np.ndarray, wrong: np.ndarray, group: np.ndarray, resamples: int = 400
) -> tuple[float, float]:
    """Bootstrap 95 % interval of AUC(after) - AUC(before), resampling recordings (with their copies)."""
    groups = np.unique(group)
    members = [np.flatnonzero(group == g) for g in groups]
    rng = np.random.default_rng(0)
    gains = []
    for _ in range(resamples):
        picked = np.concatenate([members[i] for i in rng.integers(0, len(groups), len(groups))])
        gains.append(auc(after[picked], wrong[picked]) - auc(before[picked], wrong[picked]))
    low, high = np.nanpercentile(gains, [2.5, 97.5])
    return float(low), float(high)


def _flag_recall(firsts: Sequence[FirstPass], wrongs: Sequence[Sequence[bool]]) -> tuple[float, float]:
    """(fraction of words flagged, fraction of wrong words flagged) by the clipper's default flagging."""
    from relisten_clipper.domain import ClipPolicy, flag_words
    from relisten_clipper.settings import ClipperSettings

    policy = ClipPolicy(**ClipperSettings().policy_fields())  # type: ignore[arg-type]
    flagged = found = words = wrong_total = 0
    for first, wrong in zip(firsts, wrongs, strict=True):
        marks = set(flag_words(first.words, first.segments, policy))
        flagged += len(marks)
        words += len(first.words)
        wrong_total += sum(wrong)
        found += sum(1 for i, w in enumerate(wrong) if w and i in marks)
    return flagged / max(words, 1), found / max(wrong_total, 1)


def evaluate(model: Calibration, data: Labelled, threshold: float = 0.6) -> dict[str, float]:
    """Before/after metrics of ``model`` on ``data`` (see the module docstring)."""
    after = np.array([model.probability(row) for row in data.features])
    wrong = 1 - data.right
    budget = int((data.raw < threshold).sum())
    lowest = np.argsort(after, kind="stable")[:budget]
    cal_firsts = [calibrated(first, model) for first in data.firsts]
    flagged_before, recall_flags_before = _flag_recall(data.firsts, data.wrong_per_recording)
    flagged_after, recall_flags_after = _flag_recall(cal_firsts, data.wrong_per_recording)
    low, high = _auc_gain_interval(-data.raw, -after, wrong, data.group)
    return {
        "words": float(len(data.right)),
        "wrong_fraction": float(wrong.mean()),
        "auc_before": auc(-data.raw, wrong),
        "auc_after": auc(-after, wrong),
        "auc_gain_low": low,
        "auc_gain_high": high,
        "budget_fraction": budget / max(len(data.raw), 1),
        "recall_at_budget_before": float(wrong[data.raw < threshold].sum() / max(wrong.sum(), 1)),
        "recall_at_budget_after": float(wrong[lowest].sum() / max(wrong.sum(), 1)),
        "ece_before": expected_calibration_error(data.raw, data.right),
        "ece_after": expected_calibration_error(after, data.right),
        "clipper_flagged_before": flagged_before,
        "clipper_recall_before": recall_flags_before,
        "clipper_flagged_after": flagged_after,
        "clipper_recall_after": recall_flags_after,
    }


def first_passes(
    recordings: Sequence[Recording], model: str, cache_dir: Path, console: Any
) -> list[FirstPass]:
    """The first passes the yardstick decodes (shared cache)."""
    from relisten_asr.settings import AsrSettings

    from relisten.yardstick import asr_decode, cached_decodes

    asr = AsrSettings().model_dump(mode="json", exclude={"api_key"})
    return cached_decodes(recordings, f"asr-{model}", asr, asr_decode(model), cache_dir, console)


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console
    from rich.table import Table

    from relisten.yardstick import DEFAULT_CACHE

    parser = argparse.ArgumentParser(prog="python -m relisten.calibrate", description=__doc__.split("\n")[0])
    parser.add_argument("--first-model", default="bundled:tiny.en")
    parser.add_argument("--degraded", default=",".join(DEGRADATIONS))
    parser.add_argument("--l2", type=float, default=1.0)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--write", action="store_true", help=f"store the coefficients in {DATA_FILE.name}")
    args = parser.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 160)
    recordings = development_recordings(
        short=True, degraded=[k.strip() for k in args.degraded.split(",") if k.strip()]
    )
    with environment({}):
        firsts = first_passes(recordings, args.first_model, args.cache_dir, console)
    parts = {
        part: label(
            [r for r in recordings if split_of(r) == part],
            [f for r, f in zip(recordings, firsts, strict=True) if split_of(r) == part],
        )
        for part in ("tuning", "validation")
    }
    model = fit_logistic(parts["tuning"].features, parts["tuning"].right, l2=args.l2)
    metrics = {part: evaluate(model, data) for part, data in parts.items()}
    table = Table(title=f"word-probability calibration ({args.first_model}): fitted on tuning")
    table.add_column("metric")
    for part in metrics:
        table.add_column(part, justify="right")
    for name in metrics["validation"]:
        table.add_row(name, *(f"{metrics[part][name]:.3f}" for part in metrics))
    console.print(table)
    for feature, coef in zip(FEATURES, model.coefficients, strict=True):
        console.print(f"  {feature}: {coef:+.3f}")
    if args.write:
        stamped = msgspec.structs.replace(
            model,
            fitted_on=f"{args.first_model} first passes of the development set's tuning part "
            f"({int(metrics['tuning']['words'])} words, degraded copies: {args.degraded or 'none'}), "
            f"{dt.date.today().isoformat()}",
            validation={k: round(float(v), 4) for k, v in metrics["validation"].items()},
        )
        DATA_FILE.write_bytes(msgspec.json.format(msgspec.json.encode(stamped), indent=2) + b"\n")
        console.print(f"wrote {DATA_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
