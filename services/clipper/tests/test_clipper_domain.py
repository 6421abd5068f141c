"""Flagging, clustering and window planning of the clipper: tables for the rules, properties for
the invariants (edges never inside a word, windows disjoint, every flag covered)."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from relisten_clipper.domain import (
    ClipPolicy,
    Window,
    _free_gaps,
    _Gap,
    _snap_edge,
    cluster_flags,
    context_prompt,
    find_windows,
    flag_words,
    plan_windows,
    to_sample_range,
)
from relisten_contracts import Segment, Word

SEED_WINDOWS = ClipPolicy(cluster_gap_s=5.0, half_window_s=10.0, max_redecode_fraction=1.0)
"""The original design's windows (5 s clusters, 20 s around each, no budget) rather than the shipped
defaults: the tests of window geometry need their size to exercise clamping, merging and splitting."""
NO_SEGMENT_FLAGS = dataclasses.replace(SEED_WINDOWS, flag_repetition_loops=False, flag_low_logprob=False)


def word(start: float, end: float, probability: float = 0.9, text: str = "w") -> Word:
    return Word(word=f" {text}", start=start, end=end, probability=probability)


def steady_words(
    count: int, *, step: float = 0.5, length: float = 0.4, low: frozenset[int] = frozenset()
) -> list[Word]:
    """Words every ``step`` seconds, ``length`` long, probability 0.3 at the ``low`` indices."""
    return [word(i * step, i * step + length, 0.3 if i in low else 0.9, text=f"w{i}") for i in range(count)]


def segment(
    first: int, last: int, *, ratio: float = 1.5, logprob: float = -0.3, no_speech: float = 0.0
) -> Segment:
    return Segment(
        start=0.0,
        end=1.0,
        text="",
        avg_logprob=logprob,
        compression_ratio=ratio,
        no_speech_prob=no_speech,
        first_word=first,
        last_word=last,
    )


def strictly_inside(edge: float, w: Word) -> bool:
    return w.start < edge < w.end


# --- flag_words ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("probabilities", "threshold", "expected"),
    [
        ([0.9, 0.59, 0.6, 0.61], 0.6, [1]),
        ([0.1, 0.2], 0.6, [0, 1]),
        ([0.9, 0.9], 0.6, []),
        ([0.45, 0.55], 0.5, [0]),
        ([], 0.6, []),
    ],
)
def test_flag_words_below_threshold(
    probabilities: list[float], threshold: float, expected: list[int]
) -> None:
    words = [word(i, i + 0.5, p) for i, p in enumerate(probabilities)]
    policy = dataclasses.replace(NO_SEGMENT_FLAGS, threshold=threshold)
    assert flag_words(words, [], policy) == expected


@pytest.mark.parametrize(
    ("seg", "policy", "expected"),
    [
        (segment(1, 3, ratio=2.5), ClipPolicy(), [1, 2]),
        (segment(1, 3, ratio=2.5), ClipPolicy(flag_repetition_loops=False), []),
        (segment(1, 3, ratio=2.4), ClipPolicy(), []),
        (segment(0, 2, logprob=-1.2), ClipPolicy(), [0, 1]),
        (segment(0, 2, logprob=-1.2), ClipPolicy(flag_low_logprob=False), []),
        (segment(0, 2, logprob=-1.0), ClipPolicy(), []),
        (segment(2, 4, no_speech=0.9), ClipPolicy(), []),
        (segment(2, 4, no_speech=0.9), ClipPolicy(flag_no_speech=True), [2, 3]),
        (segment(3, 99, ratio=3.0), ClipPolicy(), [3, 4]),
        (segment(-2, 1, ratio=3.0), ClipPolicy(), [0]),
    ],
)
def test_flag_words_from_segment_signals(seg: Segment, policy: ClipPolicy, expected: list[int]) -> None:
    words = [word(i, i + 0.5) for i in range(5)]
    assert flag_words(words, [seg], policy) == expected


def test_flag_words_unites_both_sources_without_duplicates() -> None:
    words = [word(i, i + 0.5, 0.3 if i == 1 else 0.9) for i in range(4)]
    assert flag_words(words, [segment(0, 2, ratio=3.0)], ClipPolicy()) == [0, 1]


# --- cluster_flags --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("silence", "expected"),
    [
        (0.0, [[0, 1]]),
        (4.99, [[0, 1]]),
        (5.0, [[0], [1]]),
        (5.01, [[0], [1]]),
        (12.0, [[0], [1]]),
    ],
)
def test_cluster_flags_splits_at_the_gap(silence: float, expected: list[list[int]]) -> None:
    words = [word(10.0, 10.5), word(10.5 + silence, 11.0 + silence)]
    assert cluster_flags(words, [0, 1], 5.0) == expected


def test_cluster_flags_chains_and_orders() -> None:
    words = [word(t, t + 0.5) for t in (0.0, 4.0, 8.0, 20.0, 24.0, 40.0)]
    assert cluster_flags(words, [5, 3, 0, 1, 2, 4, 1], 5.0) == [[0, 1, 2], [3, 4], [5]]


def test_cluster_flags_measures_from_the_latest_end() -> None:
    # A long flagged word keeps the cluster open until it ends.
    words = [word(0.0, 9.0), word(1.0, 1.5), word(12.0, 12.5)]
    assert cluster_flags(words, [0, 1, 2], 5.0) == [[0, 1, 2]]


def test_cluster_flags_without_flags() -> None:
    assert cluster_flags([word(0, 1)], [], 5.0) == []


# --- plan_windows -----------------------------------------------------------------------------


def test_no_flags_no_windows() -> None:
    words = steady_words(40)
    assert plan_windows(words, [], 20.0, SEED_WINDOWS) == []
    assert find_windows(words, [], 20.0, SEED_WINDOWS) == []


def test_window_is_clamped_at_the_start_of_the_audio() -> None:
    words = steady_words(200, low=frozenset({2}))
    (window,) = plan_windows(words, [[2]], 100.0, SEED_WINDOWS)
    assert window.start_s == 0.0
    assert window.word_first == 0
    assert 10.0 <= window.end_s <= 10.0 + 1.5 + 0.5


def test_window_is_clamped_at_the_end_of_the_audio() -> None:
    words = steady_words(200, low=frozenset({198}))
    (window,) = plan_windows(words, [[198]], 100.0, SEED_WINDOWS)
    assert window.end_s == 100.0
    assert window.word_last == 200


def test_seed_window_is_twenty_seconds_around_the_cluster() -> None:
    words = steady_words(200, low=frozenset({100, 102}))  # flags span 50.0 .. 51.4, centre 50.7
    (window,) = plan_windows(words, [[100, 102]], 100.0, SEED_WINDOWS)
    assert abs(window.start_s - 40.7) <= 1.5
    assert abs(window.end_s - 60.7) <= 1.5
    assert window.flagged == (100, 102)
    assert window.trigger_confidence == 0.3


def test_overlapping_windows_are_merged() -> None:
    # Clusters 8 s apart: their 20 s windows overlap and become one (28 s, under the limit).
    words = steady_words(200, low=frozenset({40, 56}))
    clusters = cluster_flags(words, [40, 56], 5.0)
    assert clusters == [[40], [56]]
    (window,) = plan_windows(words, clusters, 100.0, SEED_WINDOWS)
    assert window.flagged == (40, 56)
    assert window.start_s <= 10.2 + 1.5 and window.end_s >= 38.2 - 1.5
    assert window.end_s - window.start_s <= 30.0


def test_merged_windows_over_the_limit_are_split() -> None:
    words = steady_words(200, low=frozenset({40, 70}))  # 20.0 s and 35.0 s: merged they span 35 s
    windows = plan_windows(words, [[40], [70]], 100.0, SEED_WINDOWS)
    assert [w.flagged for w in windows] == [(40,), (70,)]
    assert windows[0].end_s == windows[1].start_s
    assert windows[0].word_last == windows[1].word_first


def test_distant_windows_stay_apart() -> None:
    words = steady_words(200, low=frozenset({20, 180}))
    first, second = plan_windows(words, [[20], [180]], 100.0, SEED_WINDOWS)
    assert first.flagged == (20,) and second.flagged == (180,)
    assert first.end_s < second.start_s
    assert first.word_last <= second.word_first


def test_merge_gap_joins_near_windows() -> None:
    words = steady_words(200, low=frozenset({20, 30}))
    policy = ClipPolicy(half_window_s=0.0, context_pad_s=1.0, cluster_gap_s=1.0)
    assert len(plan_windows(words, [[20], [30]], 100.0, policy)) == 2
    merged = plan_windows(words, [[20], [30]], 100.0, dataclasses.replace(policy, merge_gap_s=5.0))
    assert [w.flagged for w in merged] == [(20, 30)]


def test_context_pad_is_kept_without_a_half_window() -> None:
    words = steady_words(200, low=frozenset({100}))  # the flag is 50.0 .. 50.4
    policy = ClipPolicy(half_window_s=0.0, min_window_s=0.0, context_pad_s=1.0)
    (window,) = plan_windows(words, [[100]], 100.0, policy)
    assert window.start_s <= 49.0
    assert window.end_s >= 51.4
    assert window.end_s - window.start_s < 1.4 + 2 * (1.0 + policy.snap_search_s)


def test_edges_snap_to_the_middle_of_a_pause() -> None:
    # Touching words except one clear 0.3 s pause at 39.0 .. 39.3; the flag at 49.3 .. 49.8 puts
    # the original design's start edge at 39.55, within reach of the pause.
    words = [word(i * 0.5, i * 0.5 + 0.5) for i in range(78)]
    words += [word(39.3 + i * 0.5, 39.8 + i * 0.5, 0.3 if i == 20 else 0.9) for i in range(100)]
    flagged = [i for i, w in enumerate(words) if w.probability < 0.6]
    (window,) = find_windows(words, [], 100.0, NO_SEGMENT_FLAGS)
    assert flagged == [98]
    assert window.start_s == pytest.approx(39.15)


def test_edge_inside_a_word_moves_to_the_word_boundary() -> None:
    # Touching words everywhere: the only legal edges are the shared instants.
    words = [word(i * 0.7, (i + 1) * 0.7, 0.3 if i == 50 else 0.9) for i in range(100)]
    (window,) = find_windows(words, [], 70.0, NO_SEGMENT_FLAGS)
    for edge in (window.start_s, window.end_s):
        assert not any(strictly_inside(edge, w) for w in words)
        assert round(edge / 0.7, 6).is_integer()


def test_long_windows_are_split_at_pauses_within_the_limit() -> None:
    low = frozenset(range(20, 180, 8))  # flags every 4 s: one long cluster
    words = steady_words(200, low=low)
    policy = dataclasses.replace(NO_SEGMENT_FLAGS, max_window_s=30.0)
    windows = find_windows(words, [], 100.0, policy)
    assert len(windows) >= 3
    assert all(w.end_s - w.start_s <= 30.0 for w in windows)
    assert sorted(i for w in windows for i in w.flagged) == sorted(low)
    for left, right in itertools.pairwise(windows):
        assert left.end_s <= right.start_s
        assert left.word_last <= right.word_first


def test_word_range_holds_the_words_fully_inside() -> None:
    words = steady_words(200, low=frozenset({100}))
    (window,) = plan_windows(words, [[100]], 100.0, SEED_WINDOWS)
    inside = [i for i, w in enumerate(words) if window.start_s <= w.start and w.end <= window.end_s]
    assert inside == list(range(window.word_first, window.word_last))


def test_overlapping_first_pass_words_are_not_cut() -> None:
    words = [word(0.0, 1.0), word(0.8, 2.0, 0.2), word(1.9, 3.0), word(3.5, 4.0)]
    policy = ClipPolicy(half_window_s=0.0, min_window_s=0.0, context_pad_s=0.1, snap_search_s=0.2)
    (window,) = plan_windows(words, [[1]], 4.0, policy)
    for edge in (window.start_s, window.end_s):
        assert not any(strictly_inside(edge, w) for w in words)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_window_s": 0.0},
        {"min_window_s": 40.0},
        {"context_pad_s": -1.0},
        {"snap_search_s": -0.1},
    ],
)
def test_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ClipPolicy(**kwargs)  # type: ignore[arg-type]


# --- to_sample_range and context_prompt ---------------------------------------------------------


@pytest.mark.parametrize(
    ("start_s", "end_s", "rate", "total", "expected"),
    [
        (1.0, 2.0, 16000, 48000, (16000, 32000)),
        (0.0, 3.0, 16000, 48000, (0, 48000)),
        (-0.5, 1.0, 16000, 48000, (0, 16000)),
        (2.5, 9.0, 16000, 48000, (40000, 48000)),
        (1.1, 1.2, 16000, 48000, (17600, 19200)),
        (1.00003, 1.00009, 16000, 48000, (16000, 16001)),
        (2.0, 1.0, 16000, 48000, (32000, 32000)),
        (5.0, 6.0, 16000, 48000, (48000, 48000)),
        (0.5, 1.0, 8000, 100000, (4000, 8000)),
    ],
)
def test_to_sample_range(
    start_s: float, end_s: float, rate: int, total: int, expected: tuple[int, int]
) -> None:
    assert to_sample_range(start_s, end_s, rate, total) == expected


def test_adjacent_windows_get_adjacent_sample_ranges() -> None:
    _, end = to_sample_range(0.0, 12.3456789, 16000, 10**6)
    start, _ = to_sample_range(12.3456789, 20.0, 16000, 10**6)
    assert end == start


def test_context_prompt_is_the_text_before_the_window() -> None:
    words = [Word(word=f" w{i}", start=i, end=i + 0.5, probability=0.9) for i in range(10)]
    window = Window(start_s=5.0, end_s=8.0, flagged=(6,), trigger_confidence=0.3, word_first=5, word_last=8)
    assert context_prompt(words, window) == "w0 w1 w2 w3 w4"
    assert context_prompt(words, window, max_chars=8) == "w2 w3 w4"
    assert context_prompt(words, window, max_chars=7) == "w3 w4"
    assert context_prompt(words, window, max_chars=1) == ""
    at_start = dataclasses.replace(window, word_first=0)
    assert context_prompt(words, at_start) == ""


def test_context_prompt_keeps_whole_words_within_the_limit() -> None:
    words = [Word(word=" supercalifragilistic", start=0.0, end=1.0, probability=0.9)] + [
        Word(word=" ab", start=1.0 + i, end=1.5 + i, probability=0.9) for i in range(100)
    ]
    window = Window(
        start_s=101.0, end_s=102.0, flagged=(101,), trigger_confidence=0.3, word_first=101, word_last=101
    )
    prompt = context_prompt(words, window)
    assert len(prompt) <= 200
    assert prompt.split() == ["ab"] * len(prompt.split())
    assert len(prompt) > 195


# --- properties ---------------------------------------------------------------------------------


@st.composite
def first_pass(draw: st.DrawFn) -> tuple[list[Word], float]:
    """Time-ordered, non-overlapping words with pauses of any length (often none)."""
    count = draw(st.integers(0, 120))
    words: list[Word] = []
    cursor = draw(st.floats(0.0, 3.0))
    for index in range(count):
        pause = draw(st.one_of(st.just(0.0), st.floats(0.0, 0.4), st.floats(0.0, 8.0)))
        length = draw(st.floats(0.0, 1.2))
        probability = draw(st.one_of(st.floats(0.0, 1.0), st.just(0.95)))
        start = cursor + pause
        words.append(Word(word=f" w{index}", start=start, end=start + length, probability=probability))
        cursor = start + length
    duration = cursor + draw(st.floats(0.01, 3.0))
    return words, duration


policies = st.builds(
    ClipPolicy,
    threshold=st.floats(0.0, 1.0),
    cluster_gap_s=st.floats(0.0, 8.0),
    half_window_s=st.floats(0.0, 12.0),
    context_pad_s=st.floats(0.0, 2.0),
    min_window_s=st.floats(0.0, 3.0),
    max_window_s=st.floats(3.0, 40.0),
    merge_gap_s=st.floats(0.0, 3.0),
    snap_search_s=st.floats(0.0, 2.0),
    edge_margin_s=st.floats(0.0, 0.3),
    # No budget: these properties are about planning, where every flagged word gets a window.
    max_redecode_fraction=st.just(1.0),
)


@settings(max_examples=250, deadline=None)
@given(first_pass(), policies)
def test_window_invariants(data: tuple[list[Word], float], policy: ClipPolicy) -> None:
    words, duration = data
    flagged = flag_words(words, [], policy)
    windows = find_windows(words, [], duration, policy)

    if not flagged:
        assert windows == []
    for window in windows:
        assert 0.0 <= window.start_s < window.end_s <= duration
        for edge in (window.start_s, window.end_s):
            assert not any(strictly_inside(edge, w) for w in words), edge
        assert window.flagged
        assert window.trigger_confidence == min(words[i].probability for i in window.flagged)
        assert all(window.word_first <= i < window.word_last for i in window.flagged)
        for index in range(window.word_first, window.word_last):
            assert window.start_s <= words[index].start and words[index].end <= window.end_s
    for left, right in itertools.pairwise(windows):
        assert left.end_s <= right.start_s
        assert left.word_last <= right.word_first
    covered = [i for window in windows for i in window.flagged]
    assert sorted(covered) == flagged
    assert len(covered) == len(set(covered))


@settings(max_examples=150, deadline=None)
def snap_by_scanning_every_pause(
    target: float, limit: float, outward: int, gaps: list[_Gap], policy: ClipPolicy
) -> float:
    """The edge snapping as first written, every pause tried: the searched version must agree."""
    best: tuple[float, float, float] | None = None
    for gap in gaps:
        cut = gap.cut_near(target, policy.edge_margin_s)
        cut = min(cut, limit) if outward < 0 else max(cut, limit)
        if not gap.lo <= cut <= gap.hi or abs(cut - target) > policy.snap_search_s:
            continue
        key = (gap.width, -abs(cut - target), cut)
        if best is None or key > best:
            best = key
    if best is not None:
        return best[2]
    bound = min(target, limit) if outward < 0 else max(target, limit)
    if outward < 0:
        return max(min(gap.hi, bound) for gap in gaps if gap.lo <= bound)
    return min(max(gap.lo, bound) for gap in gaps if gap.hi >= bound)


@given(first_pass(), policies, st.floats(0.0, 1.0), st.floats(-3.0, 3.0), st.sampled_from([-1, 1]))
def test_edges_snap_to_the_pause_that_scanning_every_pause_finds(
    data: tuple[list[Word], float], policy: ClipPolicy, where: float, lead: float, outward: int
) -> None:
    words, duration = data
    gaps = _free_gaps(words, duration)
    target = where * duration
    limit = min(max(target - outward * lead, 0.0), duration)
    assert _snap_edge(target, limit, outward, gaps, policy) == snap_by_scanning_every_pause(
        target, limit, outward, gaps, policy
    )


@given(first_pass(), policies)
def test_unsplit_windows_keep_the_cluster_padding(data: tuple[list[Word], float], policy: ClipPolicy) -> None:
    words, duration = data
    policy = dataclasses.replace(policy, max_window_s=10_000.0)
    windows = find_windows(words, [], duration, policy)
    for window in windows:
        first = min(words[i].start for i in window.flagged)
        last = max(words[i].end for i in window.flagged)
        assert window.start_s <= max(first - policy.context_pad_s, 0.0) + 1e-9
        assert window.end_s >= min(last + policy.context_pad_s, duration) - 1e-9
    for left, right in itertools.pairwise(windows):
        assert right.start_s - left.end_s > policy.merge_gap_s


@settings(max_examples=200, deadline=None)
@given(
    st.floats(-5.0, 200.0),
    st.floats(-5.0, 200.0),
    st.sampled_from([8000, 16000, 44100]),
    st.integers(0, 10**7),
)
def test_sample_range_is_clamped_and_ordered(start_s: float, end_s: float, rate: int, total: int) -> None:
    start, end = to_sample_range(start_s, end_s, rate, total)
    assert 0 <= start <= end <= total
