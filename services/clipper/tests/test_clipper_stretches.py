"""Doubtful stretches: where the first pass flags much of the words, the stretch is re-heard whole."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from relisten_clipper.domain import ClipPolicy, doubtful_stretches, find_windows, flag_words
from relisten_contracts import Word


def speech(probabilities: list[float], pause_every: int = 10, pause_s: float = 0.8) -> list[Word]:
    """Words 0.4 s long, 0.1 s apart, a longer pause after every ``pause_every`` words."""
    words = []
    cursor = 0.5
    for index, probability in enumerate(probabilities):
        words.append(Word(word=f" w{index}", start=cursor, end=cursor + 0.4, probability=probability))
        cursor += 0.5 + (pause_s if (index + 1) % pause_every == 0 else 0.0)
    return words


# 60 words, about 33 s: the first 20 (about 11 s) mostly unsure, then one unsure word among sure ones.
HARD_THEN_EASY = [0.3 if i % 3 else 0.9 for i in range(20)] + [0.95] * 25 + [0.2] + [0.95] * 14
ON = ClipPolicy(escalate_flag_rate=0.3, stretch_s=12.0)


def test_off_by_default() -> None:
    words = speech(HARD_THEN_EASY)
    policy = ClipPolicy()
    assert policy.escalate_flag_rate == 0
    flagged = flag_words(words, [], policy)
    assert doubtful_stretches(words, flagged, 34.0, policy) == []
    assert not any(window.whole for window in find_windows(words, [], 34.0, policy))


def test_a_doubtful_stretch_is_re_heard_whole_and_a_lone_flag_gets_a_window() -> None:
    words = speech(HARD_THEN_EASY)
    windows = find_windows(words, [], 34.0, ON)
    whole = [window for window in windows if window.whole]
    lone = [window for window in windows if not window.whole]
    assert len(whole) >= 1
    assert all(window.duration_s <= ON.stretch_s + 1e-9 for window in whole)
    # Every unsure word of the hard start lies in a whole stretch, with its sure neighbours.
    covered = {i for window in whole for i in range(window.word_first, window.word_last)}
    assert {i for i in range(20) if HARD_THEN_EASY[i] < 0.6} <= covered
    assert any(HARD_THEN_EASY[i] >= 0.6 for i in covered)
    for window in whole:
        inside = window.word_last - window.word_first
        assert len(window.flagged) >= ON.escalate_flag_rate * inside
    # The lone unsure word (index 45) is a usual window, not a stretch.
    assert [window.flagged for window in lone] == [(45,)]
    assert 45 not in covered
    # Windows stay disjoint and in time order.
    for before, after in itertools.pairwise(windows):
        assert before.end_s <= after.start_s
        assert before.word_last <= after.word_first


def test_stretches_are_outside_the_budget_but_windows_are_not() -> None:
    words = speech(HARD_THEN_EASY)
    no_budget = dataclasses.replace(ON, max_redecode_fraction=0.0)
    windows = find_windows(words, [], 34.0, no_budget)
    assert windows
    assert all(window.whole for window in windows)


def test_a_rate_above_what_any_stretch_reaches_changes_nothing() -> None:
    words = speech(HARD_THEN_EASY)
    strict = dataclasses.replace(ON, escalate_flag_rate=0.9)
    assert find_windows(words, [], 34.0, strict) == find_windows(words, [], 34.0, ClipPolicy())


def test_nothing_flagged_nothing_escalated() -> None:
    words = speech([0.95] * 30)
    assert find_windows(words, [], 16.0, ON) == []


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_the_rate_is_a_share(rate: float) -> None:
    with pytest.raises(ValueError, match="escalate_flag_rate"):
        ClipPolicy(escalate_flag_rate=rate)


def test_a_flag_next_to_a_stretch_keeps_a_window_that_stops_at_the_stretch() -> None:
    # Ten words, mostly unsure, in 0.5-5.4 s; a 1.2 s pause; an unsure word at 6.6 s; then sure words.
    words = speech([0.3 if i % 3 else 0.9 for i in range(10)], pause_every=100)
    words.append(Word(word=" w10", start=6.6, end=7.0, probability=0.2))
    words += [
        Word(word=f" s{i}", start=7.1 + 0.5 * i, end=7.5 + 0.5 * i, probability=0.95) for i in range(20)
    ]
    policy = dataclasses.replace(ON, stretch_s=6.0)
    windows = find_windows(words, [], 17.5, policy)
    (stretch,) = [window for window in windows if window.whole]
    assert stretch.word_last == 10
    (lone,) = [window for window in windows if not window.whole]
    assert lone.flagged == (10,)
    # Its context would reach back into the stretch's audio; it starts where the stretch ends.
    assert lone.start_s == stretch.end_s
    assert lone.word_first == 10
