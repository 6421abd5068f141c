"""The re-listening budget: at most a fraction of the audio, the most doubtful windows first."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st
from relisten_clipper.domain import ClipPolicy, Window, find_windows, within_budget
from relisten_contracts import Word


def window(start: float, end: float, trigger: float) -> Window:
    return Window(
        start_s=start, end_s=end, flagged=(0,), trigger_confidence=trigger, word_first=0, word_last=1
    )


def test_everything_is_kept_within_the_budget() -> None:
    windows = [window(0, 2, 0.5), window(5, 7, 0.1)]
    assert within_budget(windows, 20.0, 0.25) == windows
    assert within_budget(windows, 20.0, 1.0) == windows


def test_the_most_doubtful_windows_go_first_and_time_order_is_kept() -> None:
    windows = [window(0, 3, 0.5), window(5, 8, 0.1), window(10, 13, 0.3), window(15, 16, 0.55)]
    # 25 % of 20 s: 5 s. 0.1 (3 s) fits, 0.3 (3 s) does not, 0.5 (3 s) does not, 0.55 (1 s) does.
    assert within_budget(windows, 20.0, 0.25) == [windows[1], windows[3]]
    assert within_budget(windows, 20.0, 0.0) == []


def test_the_policy_applies_the_budget() -> None:
    words = [Word(word=f" w{i}", start=i * 1.0, end=i * 1.0 + 0.8, probability=0.2) for i in range(0, 60, 6)]
    duration = 60.0
    policy = ClipPolicy(half_window_s=0.0, cluster_gap_s=0.5, context_pad_s=0.5)
    everything = find_windows(words, [], duration, policy)
    capped = find_windows(words, [], duration, dataclasses.replace(policy, max_redecode_fraction=0.1))
    assert sum(w.duration_s for w in everything) > 0.1 * duration
    assert 0 < sum(w.duration_s for w in capped) <= 0.1 * duration
    assert all(w in everything for w in capped)


@st.composite
def windows_strategy(draw: st.DrawFn) -> tuple[list[Window], float]:
    windows = []
    cursor = 0.0
    for _ in range(draw(st.integers(0, 20))):
        start = cursor + draw(st.floats(0.0, 5.0))
        end = start + draw(st.floats(0.1, 10.0))
        windows.append(window(start, end, draw(st.floats(0.0, 1.0))))
        cursor = end
    return windows, cursor + draw(st.floats(0.0, 10.0))


@settings(max_examples=200, deadline=None)
@given(windows_strategy(), st.floats(0.0, 1.0))
def test_budget_invariants(data: tuple[list[Window], float], fraction: float) -> None:
    windows, duration = data
    kept = within_budget(windows, duration, fraction)
    budget = fraction * duration
    total = sum(w.duration_s for w in windows)
    if total <= budget:
        assert kept == windows
        return
    used = sum(w.duration_s for w in kept)
    assert used <= budget + 1e-9
    assert kept == [w for w in windows if w in kept]  # time order, no duplicates
    # Nothing left out would still have fitted.
    assert all(used + w.duration_s > budget for w in windows if w not in kept)
    # A window left out is never more doubtful than a kept one of the same length or shorter.
    for dropped in (w for w in windows if w not in kept):
        assert not any(
            k.trigger_confidence > dropped.trigger_confidence and k.duration_s >= dropped.duration_s
            for k in kept
        )


def test_a_budget_in_seconds_replaces_the_fraction() -> None:
    """A live turn spends the session's budget: a few seconds of turn, the session's seconds to spend."""
    words = [Word(word=" w", start=1.0, end=1.5, probability=0.2)]
    policy = ClipPolicy(half_window_s=0.0, cluster_gap_s=0.5, context_pad_s=1.0)
    assert find_windows(words, [], 3.0, policy) == []  # a fifth of 3 s holds no window
    shared = find_windows(words, [], 3.0, policy, budget_s=10.0)
    assert len(shared) == 1 and shared[0].duration_s <= 3.0
    assert find_windows(words, [], 3.0, policy, budget_s=0.0) == []
