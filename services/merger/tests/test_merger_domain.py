"""Reconciliation of second-pass corrections: the original design's worked example, each guard as a table row,
and properties of ``merge`` (time order, nothing lost or duplicated, identity on agreement)."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from relisten_contracts import (
    ClipResult,
    ErrorInfo,
    FirstPass,
    Segment,
    TranscriptWord,
    Window,
    Word,
)
from relisten_merger.domain import (
    EditOp,
    MergePolicy,
    align,
    build_segments,
    merge,
    normalise_token,
    reconcile_window,
    transcript_text,
    word_drift,
)

POLICY = MergePolicy()


def w(text: str, start: float, end: float, probability: float = 0.9) -> Word:
    return Word(word=f" {text}", start=start, end=end, probability=probability)


def said(text: str, backend: str = "qwen2-audio") -> ClipResult:
    """A second pass that gives text only (an LLM backend)."""
    return ClipResult(clip_index=0, ok=True, backend=backend, text=text)


def heard(*words: Word, backend: str = "faster-whisper:base") -> ClipResult:
    """A second pass with word timestamps and probabilities."""
    return ClipResult(
        clip_index=0,
        ok=True,
        backend=backend,
        text=" ".join(word.word.strip() for word in words),
        words=list(words),
    )


def unchanged(words: list[Word]) -> list[TranscriptWord]:
    return [TranscriptWord(word=x.word, start=x.start, end=x.end, probability=x.probability) for x in words]


def texts(words: list[TranscriptWord]) -> list[str]:
    return [x.word.strip() for x in words]


# The original design's worked example: "The" ends at 10.5, "red" starts at 11.0.
RED_FOX = [w("The", 10.0, 10.5), w("red", 11.0, 11.4, 0.4), w("fox.", 11.5, 12.0)]


# --- normalise_token, align, word_drift ----------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("The", "the"),
        (" fox.", "fox"),
        ('"Hello,"', "hello"),
        ("“Don’t”", "don't"),
        ("don't", "don't"),
        ("'tis", "tis"),
        ("well-known", "well-known"),
        ("3.5.", "3.5"),
        ("1,000", "1,000"),
        ("42", "42"),
        ("...", ""),
        ("—", ""),
        ("(Yes!)", "yes"),
        ("ÉTÉ", "été"),
        ("", ""),
    ],
)
def test_normalise_token(raw: str, expected: str) -> None:
    assert normalise_token(raw) == expected


def test_align_finds_the_seed_insertion() -> None:
    assert align(["The", "red", "fox."], ["the", "quick", "red", "fox"]) == [
        EditOp("equal", 0, 1, 0, 1),
        EditOp("insert", 1, 1, 1, 2),
        EditOp("equal", 1, 3, 2, 4),
    ]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ([], []),
        (["a"], []),
        ([], ["a"]),
        (["a", "b", "c"], ["x", "b", "y", "z"]),
        (["a", "b", "c", "d"], ["a", "d"]),
        (["x"] * 5, ["x"] * 3 + ["y"]),
    ],
)
def test_align_covers_both_sequences_in_order(first: list[str], second: list[str]) -> None:
    ops = align(first, second)
    assert [op.first_start for op in ops[1:]] == [op.first_end for op in ops[:-1]]
    assert [op.second_start for op in ops[1:]] == [op.second_end for op in ops[:-1]]
    if ops:
        assert (ops[0].first_start, ops[0].second_start) == (0, 0)
        assert (ops[-1].first_end, ops[-1].second_end) == (len(first), len(second))
    for op in ops:
        if op.tag == "equal":
            assert first[op.first_start : op.first_end] == second[op.second_start : op.second_end]


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("the red fox", "The red fox.", 0.0),
        ("the red fox", "the quick red fox", 0.25),
        ("the red fox", "a blue cat", 1.0),
        ("a b c d", "a x c d", 0.25),
        ("", "", 0.0),
        ("a b", "", 1.0),
    ],
)
def test_word_drift(first: str, second: str, expected: float) -> None:
    assert word_drift(first.split(), second.split()) == pytest.approx(expected)


# --- reconcile_window: the worked example and each guard -------------------------------------------


def test_seed_example_inserts_quick_with_an_interpolated_time() -> None:
    outcome = reconcile_window(RED_FOX, {1}, 0, said("The quick red fox."), 5.0, 25.0, POLICY)
    assert transcript_text(outcome.words) == "The quick red fox."
    quick = outcome.words[1]
    assert quick.word.strip() == "quick"
    assert quick.source == "second" and quick.interpolated
    assert (quick.start + quick.end) / 2 == pytest.approx(10.75)
    assert outcome.words[0] == unchanged(RED_FOX)[0]
    assert outcome.words[2:] == unchanged(RED_FOX)[1:]
    correction = outcome.correction
    assert correction.status == "accepted"
    assert (correction.start, correction.end) == (5.0, 25.0)
    assert correction.original_text == "The red fox."
    assert correction.corrected_text == "The quick red fox."
    assert correction.trigger_confidence == 0.4
    assert correction.backend == "qwen2-audio"
    assert outcome.regions_replaced == 1


def test_inserted_word_follows_the_first_pass_spacing() -> None:
    outcome = reconcile_window(RED_FOX, {1}, 0, said("The quick red fox."), 5.0, 25.0, POLICY)
    assert "".join(x.word for x in outcome.words) == " The quick red fox."


def test_several_interpolated_words_share_the_gap_evenly() -> None:
    outcome = reconcile_window(RED_FOX, {1}, 0, said("The quick brown red fox."), 5.0, 25.0, POLICY)
    quick, brown = outcome.words[1:3]
    assert (quick.start, quick.end) == pytest.approx((10.5, 10.75))
    assert (brown.start, brown.end) == pytest.approx((10.75, 11.0))
    assert quick.interpolated and brown.interpolated


@pytest.mark.parametrize(
    ("result", "status", "reason_part"),
    [
        (said("Completely unrelated words about a different topic entirely"), "rejected", "drift"),
        (said(""), "rejected", "no words"),
        (said("  ...  "), "rejected", "no words"),
        (
            ClipResult(
                clip_index=0,
                ok=False,
                backend="vllm",
                text="",
                error=ErrorInfo(code="timeout", message="no answer in 120 s"),
            ),
            "unresolved",
            "timeout: no answer in 120 s",
        ),
    ],
)
def test_guards_keep_the_first_pass(result: ClipResult, status: str, reason_part: str) -> None:
    outcome = reconcile_window(RED_FOX, {1}, 0, result, 5.0, 25.0, POLICY)
    assert outcome.words == unchanged(RED_FOX)
    assert outcome.correction.status == status
    assert reason_part in outcome.correction.reason
    assert outcome.regions_replaced == 0


def test_silent_second_pass_removes_words_suspected_of_being_invented() -> None:
    """A stock phrase the first pass marked as suspect, and a second pass that hears nothing there."""
    invented = [w("Thank", 3.0, 3.4, 0.01), w("you.", 3.4, 3.6, 0.01)]
    outcome = reconcile_window(invented, {0, 1}, 0, said(""), 2.5, 4.0, POLICY)
    assert outcome.words == []
    assert outcome.correction.status == "accepted"
    assert "suspected of being invented" in outcome.correction.reason
    assert outcome.correction.original_text == "Thank you."


@pytest.mark.parametrize(
    "words",
    [
        [w("Thank", 3.0, 3.4, 0.01), w("you.", 3.4, 3.6, 0.4)],  # one word the first pass believed
        [w("Hello", 2.0, 2.5, 0.95), w("Thank", 3.0, 3.4, 0.01)],  # sure speech in the window
    ],
)
def test_silent_second_pass_keeps_believed_words(words: list[Word]) -> None:
    outcome = reconcile_window(words, {0, 1}, 0, said(""), 2.0, 4.0, POLICY)
    assert outcome.words == unchanged(words)
    assert outcome.correction.status == "rejected"


def test_merge_removes_a_suspect_window_and_keeps_its_neighbours() -> None:
    first = job(
        [w("No.", 0.1, 0.5, 0.9), w("Thank", 1.0, 1.4, 0.01), w("you.", 1.4, 1.6, 0.01)], duration=4.0
    )
    window = Window(
        index=0, start_s=0.8, end_s=2.0, flagged=(1, 2), trigger_confidence=0.01, word_first=1, word_last=3
    )
    words, corrections = merge(first, [window], {0: said("")}, POLICY)
    assert texts(words) == ["No."]
    assert [c.status for c in corrections] == ["accepted"]


def test_drift_reason_gives_the_value() -> None:
    outcome = reconcile_window(RED_FOX, {1}, 0, said("a blue cat"), 5.0, 25.0, POLICY)
    assert "drift 1.00 exceeds 0.50" in outcome.correction.reason


def test_drift_limit_is_a_policy_lever() -> None:
    loose = dataclasses.replace(POLICY, max_drift=1.0)
    outcome = reconcile_window(RED_FOX, {1}, 0, said("The blue fox."), 5.0, 25.0, loose)
    assert texts(outcome.words) == ["The", "blue", "fox."]


def test_agreeing_second_pass_is_accepted_without_change() -> None:
    outcome = reconcile_window(RED_FOX, {1}, 0, said("the red fox"), 5.0, 25.0, POLICY)
    assert outcome.words == unchanged(RED_FOX)
    assert outcome.correction.status == "accepted"
    assert outcome.correction.reason == "second pass agrees"


def test_unflagged_disagreement_is_left_alone() -> None:
    # "The" -> "A" is context padding the first pass was sure of; "red" is flagged and confirmed.
    outcome = reconcile_window(RED_FOX, {1}, 0, said("A red fox."), 5.0, 25.0, POLICY)
    assert outcome.words == unchanged(RED_FOX)
    assert outcome.correction.status == "accepted"
    assert "unflagged" in outcome.correction.reason


def test_insertion_away_from_a_flag_is_left_alone() -> None:
    outcome = reconcile_window(RED_FOX, {1}, 0, said("The red fox. Yes"), 5.0, 25.0, POLICY)
    assert outcome.words == unchanged(RED_FOX)


def test_flags_are_job_indices() -> None:
    # The window starts at job word 40; flag 41 is "red", flag 1 belongs to another window.
    replaced = reconcile_window(RED_FOX, {41}, 40, said("The bread fox."), 5.0, 25.0, POLICY)
    assert texts(replaced.words) == ["The", "bread", "fox."]
    elsewhere = reconcile_window(RED_FOX, {1}, 40, said("The bread fox."), 5.0, 25.0, POLICY)
    assert elsewhere.words == unchanged(RED_FOX)


def test_flagged_substitution_takes_the_second_pass_timestamps() -> None:
    result = heard(w("The", 10.02, 10.48, 0.95), w("bread", 10.9, 11.45, 0.8), w("fox.", 11.5, 12.0, 0.9))
    outcome = reconcile_window(RED_FOX, {1}, 0, result, 5.0, 25.0, POLICY)
    assert texts(outcome.words) == ["The", "bread", "fox."]
    bread = outcome.words[1]
    # Clamped into the gap between the kept neighbours: "The" ends 10.5, "fox." starts 11.5.
    assert (bread.start, bread.end) == (10.9, 11.45)
    assert bread.source == "second" and not bread.interpolated
    assert bread.probability == 0.8
    assert outcome.words[0] == unchanged(RED_FOX)[0] and outcome.words[2] == unchanged(RED_FOX)[2]
    assert outcome.correction.status == "accepted"


def test_second_pass_timestamps_are_clamped_between_the_kept_neighbours() -> None:
    result = heard(w("The", 10.0, 10.5), w("bread", 10.2, 11.9, 0.8), w("fox.", 11.5, 12.0))
    outcome = reconcile_window(RED_FOX, {1}, 0, result, 5.0, 25.0, POLICY)
    bread = outcome.words[1]
    assert (bread.start, bread.end) == (10.5, 11.5)


def test_less_confident_second_pass_is_rejected() -> None:
    result = heard(w("The", 10.0, 10.5), w("bread", 11.0, 11.4, 0.3), w("fox.", 11.5, 12.0))
    outcome = reconcile_window(RED_FOX, {1}, 0, result, 5.0, 25.0, POLICY)
    assert outcome.words == unchanged(RED_FOX)
    assert outcome.correction.status == "rejected"
    assert "not more confident" in outcome.correction.reason


def test_confidence_gate_can_be_turned_off() -> None:
    result = heard(w("The", 10.0, 10.5), w("bread", 11.0, 11.4, 0.3), w("fox.", 11.5, 12.0))
    policy = dataclasses.replace(POLICY, require_more_confident=False)
    outcome = reconcile_window(RED_FOX, {1}, 0, result, 5.0, 25.0, policy)
    assert texts(outcome.words) == ["The", "bread", "fox."]
    assert "gate off" in outcome.correction.reason


def test_confidence_gain_margin() -> None:
    result = heard(w("The", 10.0, 10.5), w("bread", 11.0, 11.4, 0.5), w("fox.", 11.5, 12.0))
    # The second pass's own 0.5 is below the shipped 0.6 floor: this test is about the gain alone.
    base = dataclasses.replace(POLICY, min_second_probability=0.0)
    assert reconcile_window(RED_FOX, {1}, 0, result, 5.0, 25.0, base).regions_replaced == 1
    strict = dataclasses.replace(base, min_confidence_gain=0.2)
    assert reconcile_window(RED_FOX, {1}, 0, result, 5.0, 25.0, strict).regions_replaced == 0


def test_insertion_gate_compares_with_the_flagged_neighbour() -> None:
    sure = heard(
        w("The", 10.0, 10.5), w("quick", 10.55, 10.95, 0.7), w("red", 11.0, 11.4), w("fox.", 11.5, 12)
    )
    unsure = heard(
        w("The", 10.0, 10.5), w("quick", 10.55, 10.95, 0.3), w("red", 11.0, 11.4), w("fox.", 11.5, 12)
    )
    assert texts(reconcile_window(RED_FOX, {1}, 0, sure, 5.0, 25.0, POLICY).words) == [
        "The",
        "quick",
        "red",
        "fox.",
    ]
    assert reconcile_window(RED_FOX, {1}, 0, unsure, 5.0, 25.0, POLICY).words == unchanged(RED_FOX)


def test_flagged_stutter_is_deleted_when_the_second_pass_is_sure() -> None:
    first = [w("the", 1.0, 1.2), w("the", 1.2, 1.4, 0.2), w("cat", 1.5, 1.9), w("sat", 2.0, 2.3)]
    result = heard(w("the", 1.0, 1.3, 0.9), w("cat", 1.5, 1.9, 0.9), w("sat", 2.0, 2.3, 0.9))
    outcome = reconcile_window(first, {1}, 0, result, 0.0, 3.0, POLICY)
    assert texts(outcome.words) == ["the", "cat", "sat"]
    assert outcome.correction.status == "accepted"


def test_only_flagged_regions_change_in_a_mixed_window() -> None:
    first = [
        w("we", 0.0, 0.3),
        w("went", 0.3, 0.6),
        w("two", 0.7, 1.0, 0.3),
        w("the", 1.0, 1.2),
        w("shops", 1.2, 1.6),
        w("yesterday", 1.7, 2.3),
        w("morning", 2.3, 2.8),
    ]
    outcome = reconcile_window(first, {2}, 0, said("we want to the shop yesterday morning"), 0.0, 3.0, POLICY)
    # "went two" -> "want to" touches the flag and is replaced; "shops" -> "shop" does not.
    assert texts(outcome.words) == ["we", "want", "to", "the", "shops", "yesterday", "morning"]
    assert "1 unflagged difference" in outcome.correction.reason


def test_trigger_confidence_defaults_to_the_lowest_flagged_probability() -> None:
    first = [w("a", 0, 1, 0.5), w("b", 1, 2, 0.2), w("c", 2, 3, 0.1)]
    outcome = reconcile_window(first, {0, 1}, 0, said("a b c"), 0.0, 3.0, POLICY)
    assert outcome.correction.trigger_confidence == 0.2
    given_one = reconcile_window(first, {0, 1}, 0, said("a b c"), 0.0, 3.0, POLICY, trigger_confidence=0.33)
    assert given_one.correction.trigger_confidence == 0.33


def test_unscored_probability_is_recorded_for_llm_words() -> None:
    policy = dataclasses.replace(POLICY, unscored_probability=0.5)
    outcome = reconcile_window(RED_FOX, {1}, 0, said("The quick red fox."), 5.0, 25.0, policy)
    assert outcome.words[1].probability == 0.5


# --- merge ---------------------------------------------------------------------------------------


def job(words: list[Word], duration: float = 30.0) -> FirstPass:
    return FirstPass(
        language="en", duration_s=duration, words=words, segments=[], engine="tiny.en", seconds=1.0
    )


SENTENCE = [
    w("Once", 0.5, 0.9),
    w("upon", 0.9, 1.2),
    w("a", 1.2, 1.3),
    w("time", 1.3, 1.7),
    w("The", 10.0, 10.5),
    w("red", 11.0, 11.4, 0.4),
    w("fox.", 11.5, 12.0),
    w("It", 20.0, 20.2),
    w("ran", 20.2, 20.5, 0.3),
    w("away.", 20.5, 21.0),
    w("End.", 28.0, 28.5),
]
WINDOWS = [
    Window(index=0, start_s=9.0, end_s=13.0, flagged=(5,), trigger_confidence=0.4, word_first=4, word_last=7),
    Window(
        index=1, start_s=19.0, end_s=22.0, flagged=(8,), trigger_confidence=0.3, word_first=7, word_last=10
    ),
]


def test_merge_splices_windows_and_keeps_the_rest() -> None:
    results = {0: said("The quick red fox."), 1: said("It ran away.")}
    words, corrections = merge(job(SENTENCE), WINDOWS, results, POLICY)
    assert transcript_text(words) == "Once upon a time The quick red fox. It ran away. End."
    assert [c.status for c in corrections] == ["accepted", "accepted"]
    assert words[:4] == unchanged(SENTENCE[:4]) and words[-1] == unchanged(SENTENCE)[-1]


def test_merge_marks_a_missing_result_unresolved() -> None:
    words, corrections = merge(job(SENTENCE), WINDOWS, {0: said("The quick red fox.")}, POLICY)
    assert [c.status for c in corrections] == ["accepted", "unresolved"]
    assert "no second-pass result" in corrections[1].reason
    assert texts(words)[8:11] == ["It", "ran", "away."]


def test_merge_without_windows_copies_the_first_pass() -> None:
    words, corrections = merge(job(SENTENCE), [], {}, POLICY)
    assert words == unchanged(SENTENCE)
    assert corrections == []


def test_merge_clamps_times_into_the_audio() -> None:
    first = [w("a", -0.2, 0.3), w("b", 0.4, 1.2)]
    words, _ = merge(job(first, duration=1.0), [], {}, POLICY)
    assert (words[0].start, words[-1].end) == (0.0, 1.0)


def test_merge_keeps_replacements_between_the_words_outside_the_window() -> None:
    # The window edge (9.0) is earlier than the previous word's end (9.5): bounds are narrowed.
    first = [w("before", 9.0, 9.5), w("red", 9.6, 10.0, 0.2), w("after", 10.2, 10.6)]
    window = Window(
        index=0, start_s=9.0, end_s=11.0, flagged=(1,), trigger_confidence=0.2, word_first=1, word_last=2
    )
    result = heard(w("bread", 8.0, 10.5, 0.9))
    words, _ = merge(job(first), [window], {0: result}, dataclasses.replace(POLICY, max_drift=1.0))
    assert texts(words) == ["before", "bread", "after"]
    assert (words[1].start, words[1].end) == (9.5, 10.2)


# --- segments and text ---------------------------------------------------------------------------


def tw(text: str, start: float, end: float) -> TranscriptWord:
    return TranscriptWord(word=f" {text}", start=start, end=end, probability=0.9)


def test_segments_follow_the_first_pass_spans() -> None:
    first_segments = [
        Segment(
            start=0.0,
            end=2.0,
            text="",
            avg_logprob=-0.2,
            compression_ratio=1.2,
            no_speech_prob=0.0,
            first_word=0,
            last_word=2,
        ),
        Segment(
            start=2.5,
            end=5.0,
            text="",
            avg_logprob=-0.2,
            compression_ratio=1.2,
            no_speech_prob=0.0,
            first_word=2,
            last_word=4,
        ),
    ]
    words = [
        tw("one", 0.1, 0.5),
        tw("two", 0.6, 1.0),
        tw("inserted", 2.1, 2.4),
        tw("three", 2.6, 3.0),
        tw("four", 3.1, 3.5),
    ]
    segments = build_segments(words, first_segments)
    assert [(s.id, s.first_word, s.last_word, s.text) for s in segments] == [
        (0, 0, 3, "one two inserted"),
        (1, 3, 5, "three four"),
    ]
    assert (segments[1].start, segments[1].end) == (2.6, 3.5)


def test_segments_without_first_pass_segments_break_at_sentences_and_pauses() -> None:
    words = [
        tw("Hi.", 0.0, 0.3),
        tw("How", 0.4, 0.6),
        tw("are", 0.6, 0.8),
        tw("you", 2.0, 2.3),
        tw("today?", 2.3, 2.8),
    ]
    segments = build_segments(words, [])
    assert [s.text for s in segments] == ["Hi.", "How are", "you today?"]
    assert build_segments(words, [], pause_s=5.0)[1].text == "How are you today?"


def test_segments_of_nothing() -> None:
    assert build_segments([], []) == []
    assert transcript_text([]) == ""


# --- properties ----------------------------------------------------------------------------------


@st.composite
def jobs_with_windows(draw: st.DrawFn) -> tuple[FirstPass, list[Window], list[list[str]]]:
    """A first pass of uniquely named, time-ordered words, disjoint windows over some of them, and
    for each window the texts a second pass could be built from."""
    count = draw(st.integers(1, 40))
    words: list[Word] = []
    cursor = draw(st.floats(0.0, 2.0))
    for index in range(count):
        start = cursor + draw(st.sampled_from([0.0, 0.05, 0.3, 2.0]))
        end = start + draw(st.floats(0.05, 0.8))
        words.append(Word(word=f" w{index}", start=start, end=end, probability=draw(st.floats(0.0, 1.0))))
        cursor = end
    duration = cursor + draw(st.floats(0.0, 2.0))
    cuts = sorted(draw(st.sets(st.integers(0, count), max_size=8)))
    windows: list[Window] = []
    for number, (first, last) in enumerate(zip(cuts[::2], cuts[1::2], strict=False)):
        if first == last:
            continue
        flagged = tuple(sorted(draw(st.sets(st.integers(first, last - 1), min_size=1))))
        start = words[first - 1].end if first else 0.0
        end = words[last].start if last < count else duration
        windows.append(
            Window(
                index=number,
                start_s=start,
                end_s=end,
                flagged=flagged,
                trigger_confidence=min(words[i].probability for i in flagged),
                word_first=first,
                word_last=last,
            )
        )
    return (
        job(words, duration),
        windows,
        [[x.word.strip() for x in words[w.word_first : w.word_last]] for w in windows],
    )


@st.composite
def second_pass_for(draw: st.DrawFn, window: Window, own: list[str]) -> ClipResult:
    """The window's own words with random edits, text only or timed and scored, or a failure."""
    kind = draw(st.sampled_from(["text", "timed", "failed"]))
    if kind == "failed":
        return ClipResult(
            clip_index=window.index, ok=False, backend="b", text="", error=ErrorInfo(code="x", message="y")
        )
    tokens = list(own)
    for _ in range(draw(st.integers(0, 4))):
        action = draw(st.sampled_from(["replace", "insert", "delete"]))
        position = draw(st.integers(0, len(tokens)))
        new = f"n{window.index}_{draw(st.integers(0, 5))}"
        if action == "insert":
            tokens.insert(position, new)
        elif tokens and position < len(tokens):
            if action == "replace":
                tokens[position] = new
            else:
                del tokens[position]
    if kind == "text":
        return ClipResult(clip_index=window.index, ok=True, backend="b", text=" ".join(tokens))
    times = sorted(
        draw(
            st.lists(
                st.floats(window.start_s - 1, window.end_s + 1),
                min_size=2 * len(tokens),
                max_size=2 * len(tokens),
            )
        )
    )
    timed = [
        Word(
            word=f" {token}", start=times[2 * i], end=times[2 * i + 1], probability=draw(st.floats(0.0, 1.0))
        )
        for i, token in enumerate(tokens)
    ]
    return ClipResult(clip_index=window.index, ok=True, backend="b", text=" ".join(tokens), words=timed)


policies = st.builds(
    MergePolicy,
    max_drift=st.floats(0.0, 1.0),
    require_more_confident=st.booleans(),
    min_confidence_gain=st.floats(0.0, 0.3),
)


@settings(max_examples=300, deadline=None)
@given(st.data(), jobs_with_windows(), policies)
def test_merge_invariants(
    data: st.DataObject, plan: tuple[FirstPass, list[Window], list[list[str]]], policy: MergePolicy
) -> None:
    first, windows, owns = plan
    results = {
        window.index: data.draw(second_pass_for(window, own))
        for window, own in zip(windows, owns, strict=True)
    }
    words, corrections = merge(first, windows, results, policy)

    assert len(corrections) == len(windows)
    for word in words:
        assert 0.0 <= word.start <= word.end <= first.duration_s
        assert word.source == "second" or not word.interpolated
    for previous, word in itertools.pairwise(words):
        assert previous.end <= word.start + 1e-9

    inside = {i for window in windows for i in range(window.word_first, window.word_last)}
    originals = unchanged(first.words)
    for index, original in enumerate(originals):
        if index not in inside:
            assert words.count(original) == 1
    assert all(word in originals for word in words if word.source == "first")

    for window, correction in zip(windows, corrections, strict=True):
        result = results[window.index]
        if not result.ok:
            assert correction.status == "unresolved"
        new_words = [x for x in words if x.word.strip().startswith(f"n{window.index}_")]
        assert all(x.interpolated == (result.words is None) for x in new_words)


@settings(max_examples=200, deadline=None)
@given(jobs_with_windows(), policies, st.booleans())
def test_identical_second_pass_changes_nothing(
    plan: tuple[FirstPass, list[Window], list[list[str]]], policy: MergePolicy, timed: bool
) -> None:
    first, windows, _ = plan
    results = {
        window.index: ClipResult(
            clip_index=window.index,
            ok=True,
            backend="b",
            text=" ".join(x.word.strip() for x in first.words[window.word_first : window.word_last]),
            words=first.words[window.word_first : window.word_last] if timed else None,
        )
        for window in windows
    }
    words, corrections = merge(first, windows, results, policy)
    assert words == unchanged(first.words)
    assert all(c.status == "accepted" and c.reason == "second pass agrees" for c in corrections)


def test_a_japanese_transcript_has_no_spaces_between_its_words() -> None:
    words = [
        TranscriptWord(word=ch, start=i * 0.2, end=i * 0.2 + 0.2, probability=0.9)
        for i, ch in enumerate("客観的")
    ]
    assert transcript_text(words, "ja") == "客観的"
    assert transcript_text(words, "en") == "客 観 的"
    assert build_segments(words, [], language="ja")[0].text == "客観的"


def test_suspect_words_the_second_pass_does_not_hear_are_removed_without_taking_its_words() -> None:
    """Over noise base may answer a stock word of its own: the suspect words go, its word is not taken."""
    invented = [w("Thank", 3.0, 3.4, 0.01), w("you.", 3.4, 3.6, 0.01)]
    outcome = reconcile_window(invented, {0, 1}, 0, heard(w("So.", 0.6, 0.9, 0.3)), 2.5, 4.0, POLICY)
    assert outcome.words == []
    assert outcome.correction.status == "accepted"
    assert "suspected of being invented" in outcome.correction.reason
    # a confident other reading, or one without probabilities, is no evidence: kept
    for answer in (heard(w("So.", 0.6, 0.9, 0.9)), said("So.")):
        assert reconcile_window(invented, {0, 1}, 0, answer, 2.5, 4.0, POLICY).words == unchanged(invented)
    # believed words in the window: the drift guard keeps the first pass as before
    believed = [w("Hello", 2.0, 2.5, 0.95), w("Thank", 3.0, 3.4, 0.01)]
    kept = reconcile_window(believed, {0, 1}, 0, said("So."), 2.0, 4.0, POLICY)
    assert kept.words == unchanged(believed) and kept.correction.status == "rejected"


# --- whole stretches (the clipper's doubtful stretches) ----------------------------------------------

STRETCH = [
    w("That", 0.0, 0.3, 0.4),
    w("was", 0.4, 0.6, 0.95),
    w("so", 0.7, 0.9, 0.3),
    w("but", 1.2, 1.4, 0.9),
    w("behold", 1.5, 1.9, 0.5),
]


def answer_with(probability: float) -> ClipResult:
    """ "was" -> "is" where the first pass was sure, "behold" -> "beheld" where it was not."""
    return heard(
        w("That", 0.0, 0.3, probability),
        w("is", 0.4, 0.6, probability),
        w("so", 0.7, 0.9, probability),
        w("but", 1.2, 1.4, 0.9),
        w("beheld", 1.5, 1.9, probability),
    )


def test_a_whole_stretch_takes_the_second_pass_words_even_where_the_first_pass_was_sure() -> None:
    usual = reconcile_window(STRETCH, {0, 2, 4}, 0, answer_with(0.8), 0.0, 2.0, POLICY)
    assert texts(usual.words) == ["That", "was", "so", "but", "beheld"]
    outcome = reconcile_window(STRETCH, {0, 2, 4}, 0, answer_with(0.8), 0.0, 2.0, POLICY, whole=True)
    assert texts(outcome.words) == ["That", "is", "so", "but", "beheld"]
    assert [word.source for word in outcome.words] == ["second"] * 5
    assert outcome.correction.status == "accepted"
    assert "stretch re-heard whole (the first pass flagged 3 of its 5 words)" in outcome.correction.reason
    # No confidence gate for a stretch: a less confident answer is taken too (a usual window keeps
    # the first pass's words there).
    shy = reconcile_window(STRETCH, {0, 2, 4}, 0, answer_with(0.2), 0.0, 2.0, POLICY, whole=True)
    assert texts(shy.words) == ["That", "is", "so", "but", "beheld"]
    assert reconcile_window(STRETCH, {0, 2, 4}, 0, answer_with(0.2), 0.0, 2.0, POLICY).words == unchanged(
        STRETCH
    )


def test_a_whole_stretch_has_its_own_drift_limit() -> None:
    # "That is so but beheld" for "That was so but behold": drift 0.4, taken everywhere.
    # "So it was, but behold": drift 0.6, over the usual window's guard and under a stretch's.
    other_reading = said("so it was but behold")
    assert POLICY.max_whole_drift == 0.8
    taken = reconcile_window(STRETCH, {0, 2, 4}, 0, other_reading, 0.0, 2.0, POLICY, whole=True)
    assert taken.correction.status == "accepted"
    assert texts(taken.words) == ["so", "it", "was", "but", "behold"]
    usual = reconcile_window(STRETCH, {0, 2, 4}, 0, other_reading, 0.0, 2.0, POLICY)
    assert usual.correction.reason.startswith("drift 0.60 exceeds 0.50")
    # Unrelated words are rejected in a stretch too.
    garbage = reconcile_window(
        STRETCH, {0, 2, 4}, 0, said("lorem ipsum dolor sit"), 0.0, 2.0, POLICY, whole=True
    )
    assert garbage.correction.status == "rejected"
    assert garbage.correction.reason.startswith("drift 1.00 exceeds 0.80")
    assert garbage.words == unchanged(STRETCH)
    no_guard = dataclasses.replace(POLICY, max_whole_drift=1.0)
    anything = reconcile_window(
        STRETCH, {0, 2, 4}, 0, said("lorem ipsum dolor sit"), 0.0, 2.0, no_guard, whole=True
    )
    assert texts(anything.words) == ["lorem", "ipsum", "dolor", "sit"]
    with pytest.raises(ValueError, match="max_whole_drift"):
        MergePolicy(max_whole_drift=1.5)


def test_a_whole_stretch_can_require_a_surer_second_pass() -> None:
    sure_first = dataclasses.replace(POLICY, whole_more_confident=True)
    # The first pass's mean probability over the stretch is 0.61.
    taken = reconcile_window(STRETCH, {0, 2, 4}, 0, answer_with(0.8), 0.0, 2.0, sure_first, whole=True)
    assert texts(taken.words) == ["That", "is", "so", "but", "beheld"]
    unsure = reconcile_window(STRETCH, {0, 2, 4}, 0, answer_with(0.3), 0.0, 2.0, sure_first, whole=True)
    assert unsure.correction.status == "rejected"
    assert "less sure of its reading (mean probability 0.42) than the first pass of its own (0.61)" in (
        unsure.correction.reason
    )
    assert unsure.words == unchanged(STRETCH)
    # Off by default: the same answer is taken.
    assert reconcile_window(STRETCH, {0, 2, 4}, 0, answer_with(0.3), 0.0, 2.0, POLICY, whole=True).words != (
        unchanged(STRETCH)
    )


def test_a_whole_stretch_keeps_the_other_guards() -> None:
    failed = ClipResult(
        clip_index=0, ok=False, backend="b", text="", error=ErrorInfo(code="timeout", message="slow")
    )
    assert (
        reconcile_window(STRETCH, {0}, 0, failed, 0.0, 2.0, POLICY, whole=True).correction.status
        == "unresolved"
    )
    silent = reconcile_window(STRETCH, {0}, 0, heard(), 0.0, 2.0, POLICY, whole=True)
    assert silent.correction.status == "rejected"
    assert silent.words == unchanged(STRETCH)
    agreeing = reconcile_window(STRETCH, {0}, 0, said("that was so but behold"), 0.0, 2.0, POLICY, whole=True)
    assert agreeing.words == unchanged(STRETCH)
    assert agreeing.correction.reason == "second pass agrees"


def test_merge_reads_whole_from_the_window() -> None:
    first = FirstPass(language="en", duration_s=3.0, words=STRETCH, segments=[], engine="t", seconds=0.0)
    window = Window(
        start_s=0.0, end_s=2.0, flagged=(0, 2, 4), trigger_confidence=0.3, word_first=0, word_last=5
    )
    words, _ = merge(first, [dataclasses.replace(window, whole=True)], {0: answer_with(0.8)}, POLICY)
    assert texts(words) == ["That", "is", "so", "but", "beheld"]
    words, _ = merge(first, [window], {0: answer_with(0.8)}, POLICY)
    assert texts(words) == ["That", "was", "so", "but", "beheld"]
