"""The regression guard: a second pass that answers unrelated text must change nothing.

Whatever the window, the policy's gates and the garbage's confidence, timestamps or length, a second
pass sharing no word with the first pass drifts by 1.0 and is rejected, so the merged words are the
first pass's, exactly. (The end-to-end version runs the real services against a loopback server that
answers garbage: ``tests/e2e/test_guard.py``.)
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from relisten_contracts import ClipResult, FirstPass, TranscriptWord, Window, Word
from relisten_merger.accept import default_accept_model
from relisten_merger.domain import MergePolicy, merge, word_drift

GARBAGE = ["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "tempor"]
ENGLISH = ["the", "a", "and", "of", "to", "he", "she", "said", "was", "it", "red", "fox", "quick", "day"]


@st.composite
def first_pass_and_windows(draw: st.DrawFn) -> tuple[FirstPass, list[Window]]:
    count = draw(st.integers(1, 30))
    words: list[Word] = []
    cursor = 0.0
    for _ in range(count):
        start = cursor + draw(st.sampled_from([0.0, 0.1, 0.6]))
        end = start + draw(st.floats(0.05, 0.7))
        words.append(
            Word(
                word=" " + draw(st.sampled_from(ENGLISH)),
                start=start,
                end=end,
                probability=draw(st.floats(0.0, 1.0)),
            )
        )
        cursor = end
    duration = cursor + draw(st.floats(0.0, 1.0))
    cuts = sorted(draw(st.sets(st.integers(0, count), min_size=2, max_size=8)))
    windows = []
    for number, (first, last) in enumerate(zip(cuts[::2], cuts[1::2], strict=False)):
        if first == last:
            continue
        flagged = tuple(sorted(draw(st.sets(st.integers(first, last - 1), min_size=1))))
        windows.append(
            Window(
                index=number,
                start_s=words[first - 1].end if first else 0.0,
                end_s=words[last].start if last < count else duration,
                flagged=flagged,
                trigger_confidence=min(words[i].probability for i in flagged),
                word_first=first,
                word_last=last,
            )
        )
    first_pass = FirstPass(
        language="en", duration_s=duration, words=words, segments=[], engine="test", seconds=0.0
    )
    return first_pass, windows


@st.composite
def garbage_for(draw: st.DrawFn, window: Window) -> ClipResult:
    tokens = draw(st.lists(st.sampled_from(GARBAGE), min_size=1, max_size=25))
    kind = draw(st.sampled_from(["timed", "text"]))
    if kind == "text":
        return ClipResult(clip_index=window.index, ok=True, backend="garbage", text=" ".join(tokens))
    words = []
    for position, token in enumerate(tokens):
        start = window.start_s + draw(st.floats(-1.0, 1.0)) + 0.1 * position
        words.append(
            Word(
                word=f" {token}",
                start=start,
                end=start + draw(st.floats(0.0, 0.5)),
                probability=draw(st.floats(0.9, 1.0)),
            )
        )
    return ClipResult(clip_index=window.index, ok=True, backend="garbage", text=" ".join(tokens), words=words)


guard_policies = st.builds(
    MergePolicy,
    max_drift=st.floats(0.0, 0.99),
    require_more_confident=st.booleans(),
    min_confidence_gain=st.floats(0.0, 0.3),
    accept_model=st.sampled_from([None, default_accept_model()]),
)


@settings(max_examples=300, deadline=None)
@given(st.data(), first_pass_and_windows(), guard_policies)
def test_garbage_second_pass_changes_nothing(
    data: st.DataObject, job: tuple[FirstPass, list[Window]], policy: MergePolicy
) -> None:
    first, windows = job
    results = {window.index: data.draw(garbage_for(window)) for window in windows}
    words, corrections = merge(first, windows, results, policy)
    assert words == [
        TranscriptWord(word=x.word, start=x.start, end=x.end, probability=x.probability) for x in first.words
    ]
    assert all(c.status == "rejected" for c in corrections)
    assert all(c.reason.startswith("drift 1.00") for c in corrections)


@given(
    st.lists(st.sampled_from(ENGLISH), min_size=0, max_size=20),
    st.lists(st.sampled_from(GARBAGE), min_size=1, max_size=20),
)
def test_unrelated_words_drift_by_one(first: list[str], second: list[str]) -> None:
    assert word_drift(first, second) == 1.0
