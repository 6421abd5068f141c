"""Fit the merger's per-region accept model on the tuning part and judge it on validation.

``python -m relisten.accept_fit [--write]`` takes the yardstick's cached first passes (all channels),
replays the pipeline once with today's defaults (the second pass decoded once, its answers kept), and
for every flagged edit region that passes the merger's guards records the signals known at merge time
(``relisten_merger.accept``) and whether replacing that region alone lowers the errors of the first
pass against the reference (regions where it changes nothing are left out of the fit: they cannot move
the WER). A logistic regression (numpy, Newton steps, a little L2) is fitted on the tuning part's
regions only; then the pipeline is replayed with ``RELISTEN_MERGER_ACCEPT_MODEL=true`` over the same windows
and answers, and the WER difference against the defaults is printed per part with the yardstick's
paired bootstrap 95 % interval. ``--write`` stores the coefficients in
``relisten_merger/accept_model.json`` (before the judged replay, which loads them from there).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import msgspec
import numpy as np
from relisten_contracts import FirstPass

from relisten.dataset import DEGRADATIONS, Recording, development_recordings, split_of
from relisten.replay import Replayed, replay, windows_to_merge
from relisten.scoring import TimedWord, paired_bootstrap, unit_errors, wer_of
from relisten.yardstick import DEFAULT_CACHE, _timed, asr_decode, cached_decodes

__all__ = ["fit_logistic", "held_out_saved", "main", "region_rows"]


def fit_logistic(
    x: np.ndarray, y: np.ndarray, *, l2: float = 1.0, steps: int = 50
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Mean, scale, coefficients and intercept of an L2-regularised logistic regression of ``y`` (0/1)
    on ``x`` (standardised inside; the intercept is not penalised), by Newton's method."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    z = np.hstack([np.ones((len(x), 1)), (x - mean) / scale])
    w = np.zeros(z.shape[1])
    penalty = np.full(z.shape[1], l2)
    penalty[0] = 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ w, -40, 40)))
        gradient = z.T @ (p - y) + penalty * w
        hessian = (z * (p * (1 - p))[:, None]).T @ z + np.diag(penalty) + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return mean, scale, w[1:], float(w[0])


def held_out_saved(x: np.ndarray, saved: np.ndarray, groups: np.ndarray, l2: float) -> int:
    """Errors saved over the first pass by the regions a model takes, each group (speaker) judged by a
    model fitted on the other groups: how well a fit carries to a voice it has not seen."""
    total = 0
    for group in sorted(set(groups.tolist())):
        train = (groups != group) & (saved != 0)
        test = groups == group
        if not train.any() or len(set((saved[train] > 0).tolist())) < 2:
            continue
        mean, scale, coefficients, intercept = fit_logistic(x[train], (saved[train] > 0).astype(float), l2=l2)
        taken = intercept + ((x[test] - mean) / scale) @ coefficients >= 0
        total += int(saved[test][taken].sum())
    return total


def region_rows(
    recording: Recording, first: FirstPass, replayed: Replayed, policy: Any
) -> list[tuple[list[float], int]]:
    """(signals, errors saved by replacing the region alone) of every flagged region of the recording
    that passed the guards; saved is first-pass errors minus errors with the region replaced."""
    from relisten_merger.accept import region_features
    from relisten_merger.domain import flagged_regions

    from relisten.dataset import SAMPLE_RATE

    words = _timed(first.words)

    def errors(timed: Sequence[TimedWord]) -> int:
        return sum(u.errors for u in unit_errors(recording, timed))

    base = errors(words)
    ranges = [(round(w.start_s * SAMPLE_RATE), round(w.end_s * SAMPLE_RATE)) for w in replayed.windows]
    rows = []
    for window in windows_to_merge(replayed.windows, ranges):
        result = replayed.results.get(window.index)
        if result is None:
            continue
        inside = first.words[window.word_first : window.word_last]
        low = min(window.start_s, inside[0].start) if inside else window.start_s
        high = max(window.end_s, inside[-1].end) if inside else window.end_s
        if window.word_first > 0:
            low = max(low, first.words[window.word_first - 1].end)
        if window.word_last < len(first.words):
            high = min(high, first.words[window.word_last].start)
        for signals, replaced in flagged_regions(
            inside, set(window.flagged), window.word_first, result, policy, low, high
        ):
            trial = [*words[: window.word_first], *_timed(replaced), *words[window.word_last :]]
            rows.append((region_features(signals), base - errors(trial)))
    return rows


def main(argv: list[str] | None = None) -> int:
    from relisten_asr.settings import AsrSettings
    from relisten_merger.accept import DATA_FILE, FEATURES, AcceptModel
    from relisten_merger.domain import MergePolicy
    from relisten_merger.settings import MergerSettings
    from rich.console import Console

    from relisten.bench import environment

    parser = argparse.ArgumentParser(prog="python -m relisten.accept_fit", description=__doc__)
    parser.add_argument("--first-model", default="bundled:tiny.en")
    parser.add_argument("--second-model", default="bundled:base")
    parser.add_argument("--l2", type=float, default=1.0)
    parser.add_argument("--write", action="store_true", help="store the coefficients as the shipped model")
    args = parser.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 160)
    common = {"RELISTEN_CORRECTOR_SECOND_PASS_MODEL": args.second_model}
    recordings = development_recordings(short=True, degraded=list(DEGRADATIONS))
    with environment(common):
        asr = AsrSettings().model_dump(mode="json", exclude={"api_key"})
        firsts = cached_decodes(
            recordings, f"asr-{args.first_model}", asr, asr_decode(args.first_model), DEFAULT_CACHE, console
        )
        policy = MergePolicy(**MergerSettings().policy_fields())  # type: ignore[arg-type]
    answers: dict[tuple[Any, ...], tuple[list[Any], float]] = {}
    console.print(f"replaying the defaults over {len(recordings)} recordings ...")
    defaults = replay("defaults", recordings, firsts, common, answers=answers)
    rows: dict[str, list[tuple[list[float], int]]] = {"tuning": [], "validation": []}
    speakers: list[str] = []
    for recording, first, replayed in zip(recordings, firsts, defaults.recordings, strict=True):
        found = region_rows(recording, first, replayed, policy)
        rows[split_of(recording)].extend(found)
        if split_of(recording) == "tuning":
            speakers += [recording.speaker or recording.name.split("~")[0]] * len(found)
    x_all = np.array([f for f, _ in rows["tuning"]], dtype=float)
    saved_all = np.array([saved for _, saved in rows["tuning"]])
    for l2 in (0.1, 1.0, 10.0, 100.0):
        held = held_out_saved(x_all, saved_all, np.array(speakers), l2)
        console.print(f"  tuning, leave one speaker out, L2 {l2:g}: errors saved {held:+d}")
    for part, found in rows.items():
        helps = sum(saved > 0 for _, saved in found)
        hurts = sum(saved < 0 for _, saved in found)
        console.print(f"  {part}: {len(found)} flagged regions past the guards, {helps} help, {hurts} hurt")
    moving = [(f, saved) for f, saved in rows["tuning"] if saved != 0]
    x = np.array([f for f, _ in moving], dtype=float)
    y = np.array([float(saved > 0) for _, saved in moving])
    mean, scale, coefficients, intercept = fit_logistic(x, y, l2=args.l2)
    model = AcceptModel(
        features=list(FEATURES),
        mean=[round(float(v), 6) for v in mean],
        scale=[round(float(v), 6) for v in scale],
        coefficients=[round(float(v), 6) for v in coefficients],
        intercept=round(intercept, 6),
        fitted_on=f"{len(moving)} flagged regions that change the errors, tuning part, all channels, "
        f"{args.first_model} then {args.second_model}",
    )
    for name, coef in zip(FEATURES, model.coefficients, strict=True):
        console.print(f"  {name:>20s} {coef:+.3f}")
    for part, found in rows.items():
        kept = [(f, saved) for f, saved in found if saved != 0]
        every = sum(saved for _, saved in kept)
        chosen = sum(saved for f, saved in kept if model.probability(f) >= model.threshold)
        console.print(
            f"  {part}: errors saved replacing every moving region alone {every:+d}, those the model takes "
            f"{chosen:+d}"
        )
    results: dict[str, float] = {}
    if args.write:
        DATA_FILE.write_bytes(msgspec.json.format(msgspec.json.encode(model)) + b"\n")
        from relisten_merger.accept import default_accept_model

        default_accept_model.cache_clear()
        varied = replay(
            "accept", recordings, firsts, {**common, "RELISTEN_MERGER_ACCEPT_MODEL": "true"}, answers=answers
        )
        for part in ("tuning", "validation"):
            triples = [
                (r, d, v)
                for r, d, v in zip(recordings, defaults.recordings, varied.recordings, strict=True)
                if split_of(r) == part
            ]
            x_units = [u for r, _, v in triples for u in unit_errors(r, _timed(v.words))]
            y_units = [u for r, d, _ in triples for u in unit_errors(r, _timed(d.words))]
            interval = paired_bootstrap(x_units, y_units)
            console.print(
                f"  {part}: defaults {wer_of(y_units):.2%}, accept model {wer_of(x_units):.2%}, "
                f"accept - defaults {interval.text()}"
            )
            results |= {
                f"{part}_defaults_wer": round(wer_of(y_units) * 100, 3),
                f"{part}_accept_wer": round(wer_of(x_units) * 100, 3),
                f"{part}_difference_pt": round(interval.difference * 100, 3),
                f"{part}_low_pt": round(interval.low * 100, 3),
                f"{part}_high_pt": round(interval.high * 100, 3),
            }
        model = msgspec.structs.replace(model, results=results)
        DATA_FILE.write_bytes(msgspec.json.format(msgspec.json.encode(model)) + b"\n")
        console.print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
