"""The per-region accept model: its signals, its decision, and that it only acts within the guards."""

from __future__ import annotations

import math

import pytest
from relisten_contracts import ClipResult, Word
from relisten_merger.accept import FEATURES, AcceptModel, RegionSignals, default_accept_model, region_features
from relisten_merger.domain import MergePolicy, flagged_regions, reconcile_window
from relisten_merger.settings import MergerSettings


def _model(**coefficients: float) -> AcceptModel:
    """A model using only the named features, unstandardised, intercept 0."""
    return AcceptModel(
        features=list(FEATURES),
        mean=[0.0] * len(FEATURES),
        scale=[1.0] * len(FEATURES),
        coefficients=[coefficients.get(name, 0.0) for name in FEATURES],
        intercept=coefficients.get("intercept", 0.0),
    )


def _words(*items: tuple[str, float]) -> list[Word]:
    return [
        Word(word=f" {text}", start=i * 0.5, end=i * 0.5 + 0.4, probability=p)
        for i, (text, p) in enumerate(items)
    ]


def _answer(*items: tuple[str, float]) -> ClipResult:
    words = _words(*items)
    return ClipResult(
        clip_index=0, ok=True, backend="test", text=" ".join(w.word for w in words), words=words
    )


def test_region_features_follow_the_feature_order() -> None:
    signals = RegionSignals(
        first_probabilities=(0.2, 0.4),
        second_probabilities=(0.9,),
        words_removed=2,
        words_inserted=1,
        drift=0.25,
        window_words=9,
        flagged_in_window=3,
        touching_regions=2,
    )
    row = dict(zip(FEATURES, region_features(signals), strict=True))
    assert row["first_mean_logit"] == pytest.approx(math.log(0.3 / 0.7))
    assert row["second_mean_logit"] == pytest.approx(math.log(0.9 / 0.1))
    assert row["first_min"] == 0.2
    assert row["second_min"] == 0.9
    assert (row["words_removed"], row["words_inserted"]) == (2.0, 1.0)
    assert (row["pure_deletion"], row["pure_insertion"]) == (0.0, 0.0)
    assert row["drift"] == 0.25
    assert row["log_window_words"] == pytest.approx(math.log(10))
    assert row["flagged_share"] == pytest.approx(3 / 9)
    assert row["touching_regions"] == 2.0


def test_deletion_and_insertion_are_marked_and_extremes_stay_finite() -> None:
    deletion = RegionSignals((0.0,), (1.0, 1.0), 1, 0, 0.1, 5, 1, 1)
    row = dict(zip(FEATURES, region_features(deletion), strict=True))
    assert (row["pure_deletion"], row["pure_insertion"]) == (1.0, 0.0)
    assert all(math.isfinite(value) for value in row.values())
    insertion = RegionSignals((0.5,), (0.5,), 0, 2, 0.1, 5, 1, 1)
    row = dict(zip(FEATURES, region_features(insertion), strict=True))
    assert (row["pure_deletion"], row["pure_insertion"]) == (0.0, 1.0)


def test_decision_is_the_logistic_probability_against_the_threshold() -> None:
    model = _model(second_mean_logit=1.0, first_mean_logit=-1.0)
    sure = RegionSignals((0.3,), (0.9,), 1, 1, 0.2, 5, 1, 1)
    unsure = RegionSignals((0.9,), (0.3,), 1, 1, 0.2, 5, 1, 1)
    assert model.probability(region_features(sure)) == pytest.approx(1 / (1 + (0.3 / 0.7) / (0.9 / 0.1)))
    assert model.accepts(sure)
    assert not model.accepts(unsure)


def test_model_with_other_features_is_refused() -> None:
    with pytest.raises(ValueError, match="features"):
        AcceptModel(features=["x"], mean=[0.0], scale=[1.0], coefficients=[1.0], intercept=0.0)


def test_shipped_model_loads_and_the_setting_chooses_it() -> None:
    assert default_accept_model().features == list(FEATURES)
    assert MergerSettings().policy_fields()["accept_model"] is None
    assert MergerSettings(accept_model=True).policy_fields()["accept_model"] == default_accept_model()


FIRST = _words(("the", 0.95), ("quick", 0.9), ("brawn", 0.3), ("fox", 0.95), ("jumps", 0.9))
LESS_SURE = _answer(("the", 0.95), ("quick", 0.9), ("brown", 0.2), ("fox", 0.95), ("jumps", 0.9))


def test_model_can_be_more_permissive_than_the_confidence_gate() -> None:
    gate = reconcile_window(FIRST, {2}, 0, LESS_SURE, 0.0, 2.5, MergePolicy())
    assert gate.correction.status == "rejected"
    always = MergePolicy(accept_model=_model(intercept=5.0))
    taken = reconcile_window(FIRST, {2}, 0, LESS_SURE, 0.0, 2.5, always)
    assert taken.correction.status == "accepted"
    assert [w.word.strip() for w in taken.words] == ["the", "quick", "brown", "fox", "jumps"]
    assert "accept model" in taken.correction.reason


def test_model_can_be_less_permissive_than_the_confidence_gate() -> None:
    sure = _answer(("the", 0.95), ("quick", 0.9), ("brown", 0.99), ("fox", 0.95), ("jumps", 0.9))
    assert reconcile_window(FIRST, {2}, 0, sure, 0.0, 2.5, MergePolicy()).correction.status == "accepted"
    never = MergePolicy(accept_model=_model(intercept=-5.0))
    kept = reconcile_window(FIRST, {2}, 0, sure, 0.0, 2.5, never)
    assert kept.correction.status == "rejected"
    assert [w.word.strip() for w in kept.words] == ["the", "quick", "brawn", "fox", "jumps"]


def test_drift_guard_stays_in_force_under_an_always_accepting_model() -> None:
    other = _answer(("lorem", 0.99), ("ipsum", 0.99), ("dolor", 0.99), ("sit", 0.99), ("amet", 0.99))
    always = MergePolicy(accept_model=_model(intercept=40.0))
    outcome = reconcile_window(FIRST, {2}, 0, other, 0.0, 2.5, always)
    assert outcome.correction.status == "rejected"
    assert "drift" in outcome.correction.reason
    assert flagged_regions(FIRST, {2}, 0, other, always, 0.0, 2.5) == []


def test_flagged_regions_give_each_flagged_region_alone() -> None:
    answer = _answer(("a", 0.9), ("quick", 0.9), ("brown", 0.8), ("fox", 0.95), ("jumps", 0.9))
    found = flagged_regions(FIRST, {2}, 0, answer, MergePolicy(), 0.0, 2.5)
    assert len(found) == 1  # "the" -> "a" touches no flag
    signals, words = found[0]
    assert signals.first_probabilities == (0.3,)
    assert signals.second_probabilities == (0.8,)
    assert (signals.words_removed, signals.words_inserted, signals.touching_regions) == (1, 1, 1)
    assert signals.drift == pytest.approx(0.4)
    assert [w.word.strip() for w in words] == ["the", "quick", "brown", "fox", "jumps"]


def test_text_only_backends_keep_the_drift_guard_only_rule() -> None:
    text_only = ClipResult(clip_index=0, ok=True, backend="llm", text="the quick brown fox jumps")
    never = MergePolicy(accept_model=_model(intercept=-40.0))
    outcome = reconcile_window(FIRST, {2}, 0, text_only, 0.0, 2.5, never)
    assert outcome.correction.status == "accepted"
    assert flagged_regions(FIRST, {2}, 0, text_only, never, 0.0, 2.5) == []
