"""The accept model's fit: a hand-rolled logistic regression that finds a known direction."""

from __future__ import annotations

import numpy as np

from relisten.accept_fit import fit_logistic, held_out_saved


def test_fit_recovers_the_signs_and_separates_the_classes() -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(600, 3))
    truth = np.array([2.0, -1.5, 0.0])
    y = (rng.random(600) < 1 / (1 + np.exp(-(x @ truth + 0.5)))).astype(float)
    mean, scale, coefficients, intercept = fit_logistic(x * 3.0 + 1.0, y, l2=0.1)
    assert coefficients[0] > 1.0 and coefficients[1] < -0.8 and abs(coefficients[2]) < 0.3
    z = intercept + ((x * 3.0 + 1.0 - mean) / scale) @ coefficients
    accuracy = float(((z > 0) == (y > 0.5)).mean())
    assert accuracy > 0.75


def test_constant_feature_does_not_break_the_fit() -> None:
    x = np.column_stack([np.linspace(-2, 2, 50), np.ones(50)])
    y = (np.linspace(-2, 2, 50) > 0).astype(float)
    _, scale, coefficients, _ = fit_logistic(x, y)
    assert scale[1] == 1.0 and np.isfinite(coefficients).all() and coefficients[0] > 0


def test_held_out_saving_judges_each_group_by_a_fit_on_the_others() -> None:
    values = np.concatenate([np.linspace(-3, -0.5, 20), np.linspace(0.5, 3, 20)])
    x = values[:, None]
    saved = np.where(values > 0, 1, -1)
    groups = np.array(["a", "b"] * 20)
    # The rule carries from one speaker to the other: every helping region taken, no hurting one.
    assert held_out_saved(x, saved, groups, 0.1) == int((saved > 0).sum())
    # A rule that flips between speakers is taken backwards on the held-out one.
    flipped = np.where(groups == "a", saved, -saved)
    assert held_out_saved(x, flipped, groups, 0.1) < 0
