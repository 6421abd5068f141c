"""Timestamp integrity across the second pass: clipper windows -> clips packed into chunks -> words
handed back and moved onto the job's timeline -> merge. Property-based, no model.

Whatever the first pass, the clip policy and the second pass's answers (edits, times anywhere, with
or without timestamps, some clips failing): the merged words are in time order, inside
``[0, duration]``, no first-pass word is lost or duplicated at a window edge, and words whose times
were made up are marked ``interpolated``.
"""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from relisten_clipper.domain import ClipPolicy, find_windows, to_sample_range
from relisten_contracts import ClipResult, ErrorInfo, FirstPass, Segment, TranscriptWord, Window, Word
from relisten_corrector.handlers import shift_words
from relisten_corrector.packing import assign_words, pack_audio
from relisten_merger.domain import MergePolicy, merge

from relisten.replay import windows_to_merge

RATE = 1000  # samples per second; small so packed buffers stay small


@st.composite
def first_passes(draw: st.DrawFn) -> FirstPass:
    count = draw(st.integers(0, 60))
    words: list[Word] = []
    cursor = draw(st.floats(0.0, 2.0))
    for index in range(count):
        pause = draw(st.one_of(st.just(0.0), st.floats(0.0, 0.4), st.floats(0.0, 6.0)))
        length = draw(st.floats(0.0, 1.0))
        start = cursor + pause
        probability = draw(st.one_of(st.floats(0.0, 1.0), st.just(0.97)))
        words.append(Word(word=f" w{index}", start=start, end=start + length, probability=probability))
        cursor = start + length
    duration = cursor + draw(st.floats(0.01, 2.0))
    segments = []
    if words:
        cuts = sorted({0, len(words), *draw(st.sets(st.integers(0, len(words)), max_size=4))})
        for first, last in itertools.pairwise(cuts):
            if first == last:
                continue
            segments.append(
                Segment(
                    start=words[first].start,
                    end=words[last - 1].end,
                    text="",
                    avg_logprob=draw(st.floats(-2.0, 0.0)),
                    compression_ratio=draw(st.floats(0.5, 3.0)),
                    no_speech_prob=draw(st.floats(0.0, 1.0)),
                    first_word=first,
                    last_word=last,
                )
            )
    return FirstPass(
        language="en", duration_s=duration, words=words, segments=segments, engine="t", seconds=0
    )


clip_policies = st.builds(
    ClipPolicy,
    threshold=st.floats(0.0, 1.0),
    cluster_gap_s=st.floats(0.0, 6.0),
    half_window_s=st.floats(0.0, 10.0),
    context_pad_s=st.floats(0.0, 2.0),
    max_window_s=st.floats(3.0, 30.0),
    flag_no_speech=st.booleans(),
)

merge_policies = st.builds(
    MergePolicy,
    max_drift=st.floats(0.0, 1.0),
    require_more_confident=st.booleans(),
    min_confidence_gain=st.floats(0.0, 0.2),
)


def answer_for(
    data: st.DataObject, own: list[Word], index: int, clip_length: float
) -> tuple[str, list[Word] | None]:
    """What a second pass could say about a clip: its own words edited, times relative to the clip
    (sometimes outside it), or text only."""
    draw = data.draw
    tokens = [word.word.strip() for word in own]
    for _ in range(draw(st.integers(0, 4))):
        action = draw(st.sampled_from(["replace", "insert", "delete"]))
        position = draw(st.integers(0, len(tokens)))
        new = f"n{index}_{draw(st.integers(0, 3))}"
        if action == "insert":
            tokens.insert(position, new)
        elif position < len(tokens):
            if action == "replace":
                tokens[position] = new
            else:
                del tokens[position]
    if not draw(st.booleans()):
        return " ".join(tokens), None
    times = sorted(
        draw(st.lists(st.floats(-0.5, clip_length + 0.5), min_size=2 * len(tokens), max_size=2 * len(tokens)))
    )
    words = [
        Word(word=token, start=times[2 * i], end=times[2 * i + 1], probability=draw(st.floats(0.0, 1.0)))
        for i, token in enumerate(tokens)
    ]
    return " ".join(tokens), words


def through_packing(answers: list[list[Word]], lengths: list[int]) -> list[list[Word]]:
    """Lay the clips out as the corrector packs them, put each answer's words at their place in the
    packed buffer (as the batched decode reports them), and hand them back."""
    packed = pack_audio([np.zeros(n, dtype=np.float32) for n in lengths], int(29.5 * RATE), RATE)
    spans: list[tuple[float, float]] = []
    chunks: list[int] = []
    owners: list[tuple[int, int]] = []
    for clip, words in enumerate(answers):
        placement = packed.placements[clip]
        for position, word in enumerate(words):
            offset = placement.start / RATE
            spans.append((offset + max(word.start, 0.0), offset + max(word.end, 0.0)))
            chunks.append(placement.chunk)
            owners.append((clip, position))
    back: list[list[Word]] = [[] for _ in answers]
    for clip, placed in enumerate(assign_words(spans, packed, RATE, chunks)):
        for position, start, end in placed:
            source_clip, source_position = owners[position]
            assert source_clip == clip
            word = answers[source_clip][source_position]
            back[clip].append(Word(word=word.word, start=start, end=end, probability=word.probability))
    return back


@settings(max_examples=250, deadline=None)
@given(st.data(), first_passes(), clip_policies, merge_policies)
def test_merged_words_keep_their_timeline(
    data: st.DataObject, first: FirstPass, clip_policy: ClipPolicy, merge_policy: MergePolicy
) -> None:
    windows = find_windows(first.words, first.segments, first.duration_s, clip_policy)
    total = round(first.duration_s * RATE)
    ranges = [to_sample_range(w.start_s, w.end_s, RATE, total) for w in windows]
    lengths = [end - start for start, end in ranges]
    answers = [
        answer_for(data, first.words[w.word_first : w.word_last], index, length / RATE)
        for index, (w, length) in enumerate(zip(windows, lengths, strict=True))
    ]
    packable = [words is not None and length > 0 for (_, words), length in zip(answers, lengths, strict=True)]
    packed_clips = [index for index, ok in enumerate(packable) if ok]
    repacked = dict(
        zip(
            packed_clips,
            through_packing(
                [answers[index][1] or [] for index in packed_clips],
                [lengths[index] for index in packed_clips],
            ),
            strict=True,
        )
    )
    results: dict[int, ClipResult] = {}
    for index, ((start, end), (text, words)) in enumerate(zip(ranges, answers, strict=True)):
        if data.draw(st.integers(0, 9)) == 0:
            results[index] = ClipResult(
                clip_index=index, ok=False, backend="t", text="", error=ErrorInfo(code="x", message="y")
            )
            continue
        if packable[index]:
            words = repacked[index]
            text = " ".join(word.word for word in words)
        results[index] = ClipResult(
            clip_index=index,
            ok=True,
            backend="t",
            text=text,
            words=shift_words(words, start / RATE, (end - start) / RATE),
        )
    merge_windows = windows_to_merge(windows, ranges, RATE)
    merged, corrections = merge(first, merge_windows, results, merge_policy)

    assert len(corrections) == len(windows)
    for word in merged:
        assert 0.0 <= word.start <= word.end <= first.duration_s
        assert not word.interpolated or word.source == "second"
    for previous, word in itertools.pairwise(merged):
        assert previous.end <= word.start + 1e-9
    originals = [
        TranscriptWord(word=x.word, start=x.start, end=x.end, probability=x.probability) for x in first.words
    ]
    inside = {i for w in windows for i in range(w.word_first, w.word_last)}
    for index, original in enumerate(originals):
        if index not in inside:
            assert merged.count(original) == 1, f"word {index} lost or duplicated at a window edge"
    kept = [word for word in merged if word.source == "first"]
    assert all(kept.count(word) == 1 for word in kept)
    assert all(word in originals for word in kept)
    for index, result in results.items():
        new = [x for x in merged if x.word.strip().startswith(f"n{index}_")]
        assert all(x.interpolated == (result.words is None) for x in new)


@settings(max_examples=150, deadline=None)
@given(first_passes(), clip_policies, merge_policies)
def test_a_second_pass_that_agrees_leaves_every_word_in_place(
    first: FirstPass, clip_policy: ClipPolicy, merge_policy: MergePolicy
) -> None:
    windows = find_windows(first.words, first.segments, first.duration_s, clip_policy)
    results = {
        index: ClipResult(
            clip_index=index,
            ok=True,
            backend="t",
            text=" ".join(x.word.strip() for x in first.words[w.word_first : w.word_last]),
            words=first.words[w.word_first : w.word_last],
        )
        for index, w in enumerate(windows)
    }
    merge_windows = [
        Window(
            index=index,
            start_s=w.start_s,
            end_s=w.end_s,
            flagged=w.flagged,
            trigger_confidence=w.trigger_confidence,
            word_first=w.word_first,
            word_last=w.word_last,
        )
        for index, w in enumerate(windows)
    ]
    merged, _ = merge(first, merge_windows, results, merge_policy)
    assert merged == [
        TranscriptWord(word=x.word, start=x.start, end=x.end, probability=x.probability) for x in first.words
    ]
