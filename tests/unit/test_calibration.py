"""Word-probability calibration: the fitter, the metrics, and the runtime model shipped as data."""

from __future__ import annotations

import math

import numpy as np
from relisten_contracts import FirstPass, Segment, Word
from relisten_contracts.calibration import FEATURES, calibrated, default_calibration, word_features

from relisten.calibrate import auc, expected_calibration_error, fit_logistic


def test_the_fitter_recovers_a_known_logistic_relation() -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(20000, len(FEATURES)))
    truth = np.zeros(len(FEATURES))
    truth[0], truth[3] = 1.5, -0.8
    y = (rng.random(len(x)) < 1 / (1 + np.exp(-(0.5 + x @ truth)))).astype(float)
    model = fit_logistic(x, y, l2=0.0)
    # Coefficients are on standardised features; x is already standard, so they match the truth.
    assert abs(model.intercept - 0.5) < 0.1
    assert np.allclose(model.coefficients, truth, atol=0.1)
    predicted = np.array([model.probability(row) for row in x[:2000]])
    assert expected_calibration_error(predicted, y[:2000]) < 0.05


def test_auc_and_ece_on_known_cases() -> None:
    wrong = np.array([1, 1, 0, 0, 0])
    assert auc(np.array([0.9, 0.8, 0.3, 0.2, 0.1]), wrong) == 1.0
    assert auc(np.array([0.1, 0.2, 0.3, 0.8, 0.9]), wrong) == 0.0
    assert auc(np.array([0.5, 0.5, 0.5, 0.5, 0.5]), wrong) == 0.5
    right = np.array([1.0, 1.0, 0.0, 0.0])
    assert math.isclose(expected_calibration_error(np.array([0.95, 0.95, 0.05, 0.05]), right), 0.05)
    assert math.isclose(expected_calibration_error(np.array([0.5, 0.5, 0.5, 0.5]), right), 0.0)


def _first_pass() -> FirstPass:
    words = [
        Word(word=" The", start=0.0, end=0.2, probability=0.95),
        Word(word=" quixotic", start=0.2, end=0.5, probability=0.31),
        Word(word=" cat.", start=0.6, end=0.9, probability=0.88),
    ]
    segment = Segment(
        start=0.0,
        end=0.9,
        text="The quixotic cat.",
        avg_logprob=-0.4,
        compression_ratio=1.1,
        no_speech_prob=0.01,
        first_word=0,
        last_word=3,
    )
    return FirstPass(
        language="en", duration_s=1.0, words=words, segments=[segment], engine="test", seconds=0.1
    )


def test_calibrated_words_keep_the_raw_probability_and_calibrating_twice_changes_nothing() -> None:
    first = _first_pass()
    model = default_calibration()
    once = calibrated(first, model)
    assert [w.raw_probability for w in once.words] == [w.probability for w in first.words]
    assert all(0.0 < w.probability < 1.0 for w in once.words)
    assert calibrated(once, model) == once
    assert word_features(once.words, once.segments) == word_features(first.words, first.segments)
    # The doubtful word stays the least likely to be right.
    assert min(once.words, key=lambda w: w.probability).word == " quixotic"


def test_the_shipped_calibration_was_fitted_and_validated() -> None:
    model = default_calibration()
    assert model.features == list(FEATURES)
    assert "tuning" in model.fitted_on
    for metric in ("auc_before", "auc_after", "ece_before", "ece_after", "recall_at_budget_after"):
        assert metric in model.validation
