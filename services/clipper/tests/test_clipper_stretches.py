"""Doubtful stretches: a first-pass segment in which much of the words is flagged is re-heard whole."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from relisten_clipper.domain import STRETCH_MARGIN_S, ClipPolicy, doubtful_stretches, find_windows, flag_words
from relisten_contracts import Segment, Word


def speech(
    probabilities: list[float], per_segment: int = 10, pause_s: float = 0.8
) -> tuple[list[Word], list[Segment]]:
    """Words 0.4 s long, 0.1 s apart, a segment of ``per_segment`` words and a longer pause after each."""
    words = []
    cursor = 0.5
    for index, probability in enumerate(probabilities):
        words.append(Word(word=f" w{index}", start=cursor, end=cursor + 0.4, probability=probability))
        cursor += 0.5 + (pause_s if (index + 1) % per_segment == 0 else 0.0)
    segments = [
        segment_of(words, first, min(first + per_segment, len(words)))
        for first in range(0, len(words), per_segment)
    ]
    return words, segments


def segment_of(words: list[Word], first: int, last: int) -> Segment:
    """A confident segment holding words ``[first, last)``."""
    return Segment(
        start=words[first].start,
        end=words[last - 1].end,
        text="",
        avg_logprob=-0.2,
        compression_ratio=1.2,
        no_speech_prob=0.01,
        first_word=first,
        last_word=last,
    )


# 60 words in six segments, about 34 s: the first two segments mostly unsure, then one unsure word
# among sure ones.
HARD_THEN_EASY = [0.3 if i % 3 else 0.9 for i in range(20)] + [0.95] * 25 + [0.2] + [0.95] * 14
ON = ClipPolicy(escalate_flag_rate=0.3)


def test_off_by_default() -> None:
    words, segments = speech(HARD_THEN_EASY)
    policy = ClipPolicy()
    assert policy.escalate_flag_rate == 0
    flagged = flag_words(words, segments, policy)
    assert doubtful_stretches(words, segments, flagged, 34.0, policy) == []
    assert not any(window.whole for window in find_windows(words, segments, 34.0, policy))


def test_doubtful_segments_are_re_heard_whole_and_a_lone_flag_gets_a_window() -> None:
    words, segments = speech(HARD_THEN_EASY)
    windows = find_windows(words, segments, 34.0, ON)
    whole = [window for window in windows if window.whole]
    lone = [window for window in windows if not window.whole]
    # The two doubtful segments, each whole: every word of theirs, sure or not, and nothing else.
    assert [(window.word_first, window.word_last) for window in whole] == [(0, 10), (10, 20)]
    for window in whole:
        assert len(window.flagged) >= ON.escalate_flag_rate * (window.word_last - window.word_first)
        first, last = words[window.word_first], words[window.word_last - 1]
        # A margin around the segment's words, up to the neighbouring words.
        assert window.start_s <= first.start and window.end_s >= last.end
        assert window.start_s >= max(first.start - STRETCH_MARGIN_S, 0.0) - 1e-9
        assert window.end_s <= last.end + STRETCH_MARGIN_S + 1e-9
        if window.word_last < len(words):
            assert window.end_s <= words[window.word_last].start
    # The lone unsure word (index 45) is a usual window, not a stretch.
    assert [window.flagged for window in lone] == [(45,)]
    # Windows stay disjoint and in time order.
    for before, after in itertools.pairwise(windows):
        assert before.end_s <= after.start_s
        assert before.word_last <= after.word_first


def test_a_margin_stops_at_the_neighbouring_word() -> None:
    # No pause between segments: the stretch's margin cannot reach into the next segment's first word.
    words, segments = speech(HARD_THEN_EASY, pause_s=0.0)
    (first, second, *_) = [window for window in find_windows(words, segments, 30.0, ON) if window.whole]
    assert first.end_s <= words[10].start
    assert second.start_s >= first.end_s
    assert second.start_s >= words[9].end


def test_stretches_are_outside_the_budget_but_windows_are_not() -> None:
    words, segments = speech(HARD_THEN_EASY)
    no_budget = dataclasses.replace(ON, max_redecode_fraction=0.0)
    windows = find_windows(words, segments, 34.0, no_budget)
    assert len(windows) == 2
    assert all(window.whole for window in windows)


def test_a_rate_above_what_any_segment_reaches_changes_nothing() -> None:
    words, segments = speech(HARD_THEN_EASY)
    strict = dataclasses.replace(ON, escalate_flag_rate=0.9)
    assert find_windows(words, segments, 34.0, strict) == find_windows(words, segments, 34.0, ClipPolicy())


def test_nothing_flagged_nothing_escalated() -> None:
    words, segments = speech([0.95] * 30)
    assert find_windows(words, segments, 16.0, ON) == []


def test_no_segments_no_stretches() -> None:
    # A first pass without segments (a remote engine's bare words) has no unit to re-hear whole.
    words, _ = speech(HARD_THEN_EASY)
    windows = find_windows(words, [], 34.0, ON)
    assert windows and not any(window.whole for window in windows)


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_the_rate_is_a_share(rate: float) -> None:
    with pytest.raises(ValueError, match="escalate_flag_rate"):
        ClipPolicy(escalate_flag_rate=rate)


def test_a_flag_next_to_a_stretch_keeps_a_window_that_stops_at_the_stretch() -> None:
    # A doubtful segment of ten words in 0.5-5.4 s; a 1.2 s pause; an unsure word at 6.6 s; then sure words.
    words, segments = speech([0.3 if i % 3 else 0.9 for i in range(10)], per_segment=10)
    words.append(Word(word=" w10", start=6.6, end=7.0, probability=0.2))
    words += [
        Word(word=f" s{i}", start=7.1 + 0.5 * i, end=7.5 + 0.5 * i, probability=0.95) for i in range(20)
    ]
    windows = find_windows(words, [*segments, segment_of(words, 10, len(words))], 17.5, ON)
    (stretch,) = [window for window in windows if window.whole]
    assert stretch.word_last == 10
    (lone,) = [window for window in windows if not window.whole]
    assert lone.flagged == (10,)
    # Its context would reach back into the stretch's audio; it starts where the stretch ends.
    assert lone.start_s == stretch.end_s
    assert lone.word_first == 10


def test_a_segment_longer_than_a_window_is_cut_at_pauses() -> None:
    # One doubtful segment of 80 words (about 43 s with its pauses): no second pass hears it at once.
    words, _ = speech([0.3] * 80, per_segment=80, pause_s=0.0)
    for index in range(9, 80, 10):  # a pause after every tenth word
        words[index + 1 :] = [
            Word(word=w.word, start=w.start + 0.6, end=w.end + 0.6, probability=w.probability)
            for w in words[index + 1 :]
        ]
    windows = find_windows(words, [segment_of(words, 0, 80)], words[-1].end + 1.0, ON)
    assert len(windows) == 2 and all(window.whole for window in windows)
    assert all(window.duration_s <= ON.max_window_s for window in windows)
    assert windows[0].word_last == windows[1].word_first
    assert (windows[0].word_first, windows[1].word_last) == (0, 80)
