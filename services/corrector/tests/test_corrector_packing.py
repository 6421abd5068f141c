"""Packing clips into Whisper-sized chunks and handing the words back: property-based."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from relisten_corrector.packing import assign_words, chunk_at, pack_audio, plan_chunks

SR = 100  # a small sample rate keeps the arrays small; the code is rate-agnostic

lengths_strategy = st.lists(st.integers(min_value=1, max_value=3000), min_size=0, max_size=30)


@given(lengths=lengths_strategy, gap=st.integers(min_value=0, max_value=200))
def test_every_clip_is_in_exactly_one_chunk_that_fits(lengths: list[int], gap: int) -> None:
    max_chunk = 3000
    chunks = plan_chunks(lengths, max_chunk, gap)
    members = sorted(index for chunk in chunks for index in chunk)
    assert members == list(range(len(lengths)))
    for chunk in chunks:
        assert chunk == sorted(chunk)
        assert sum(lengths[i] for i in chunk) + gap * (len(chunk) - 1) <= max_chunk


def test_first_fit_decreasing_needs_few_chunks() -> None:
    # 10 clips of 3 s with 1 s gaps: 7 fit in 30 s (7 * 3 + 6 = 27), then 3 more.
    assert [len(c) for c in plan_chunks([300] * 10, 3000, 100)] == [7, 3]
    # Long and short clips share chunks.
    assert len(plan_chunks([2500, 400, 2500, 400], 3000, 50)) == 2


def test_a_clip_longer_than_a_chunk_gets_its_own() -> None:
    assert plan_chunks([5000, 100], 3000, 10) == [[0], [1]]


@given(lengths=lengths_strategy, gap=st.integers(min_value=0, max_value=200))
@settings(max_examples=50)
def test_packed_audio_holds_every_clip_exactly_once(lengths: list[int], gap: int) -> None:
    rng = np.random.default_rng(len(lengths) + gap)
    clips = [rng.uniform(0.1, 1.0, size=n).astype(np.float32) for n in lengths]
    packed = pack_audio(clips, 3000, gap)
    assert [p.clip for p in packed.placements] == list(range(len(clips)))
    for placement, clip in zip(packed.placements, clips, strict=True):
        assert np.array_equal(packed.audio[placement.start : placement.end], clip)
        start, end = packed.chunks[placement.chunk]
        assert start <= placement.start and placement.end <= end
    # Chunks back to back, each within the limit, and every one ending strictly inside the audio.
    for (_, end), (start, _) in pairwise(packed.chunks):
        assert end == start
    for start, end in packed.chunks:
        assert 0 < end - start <= 3000
        assert end < len(packed.audio)
    # Clips never overlap; between neighbours in a chunk lies silence of exactly ``gap``.
    ordered = sorted(packed.placements, key=lambda p: p.start)
    for left, right in pairwise(ordered):
        assert left.end <= right.start
        if left.chunk == right.chunk:
            assert right.start - left.end == gap
            assert not packed.audio[left.end : right.start].any()


@given(
    lengths=st.lists(st.integers(min_value=50, max_value=1500), min_size=1, max_size=12),
    data=st.data(),
)
@settings(max_examples=80)
def test_words_go_back_to_the_clip_they_were_heard_in(lengths: list[int], data: st.DataObject) -> None:
    clips = [np.ones(n, dtype=np.float32) for n in lengths]
    packed = pack_audio(clips, 3000, 60)
    # Words inside clips, each with the clip it came from.
    truth: list[int] = []
    chunks: list[int] = []
    spans: list[tuple[float, float]] = []
    for placement in packed.placements:
        count = data.draw(st.integers(min_value=0, max_value=4))
        for _ in range(count):
            a = data.draw(st.integers(min_value=placement.start, max_value=placement.end))
            b = data.draw(st.integers(min_value=a, max_value=placement.end))
            spans.append((a / SR, b / SR))
            truth.append(placement.clip)
            chunks.append(placement.chunk)
    by_clip = assign_words(spans, packed, SR, chunk_of=chunks)
    assert len(by_clip) == len(clips)
    given_back = sorted(position for words in by_clip for position, _, _ in words)
    assert given_back == list(range(len(spans)))
    for clip, words in enumerate(by_clip):
        length = lengths[clip] / SR
        positions = [position for position, _, _ in words]
        assert positions == sorted(positions)
        for position, start, end in words:
            assert truth[position] == clip
            assert 0.0 <= start <= end <= length
            placement = packed.placements[clip]
            assert start == pytest.approx(spans[position][0] - placement.start / SR)


def test_a_word_in_the_silence_between_clips_goes_to_the_nearer_one() -> None:
    clips = [np.ones(100, dtype=np.float32), np.ones(100, dtype=np.float32)]
    packed = pack_audio(clips, 3000, 100)  # clip 0: [0, 100), silence [100, 200), clip 1: [200, 300)
    by_clip = assign_words([(1.0, 1.2), (1.8, 1.95)], packed, SR)
    assert [[p for p, _, _ in words] for words in by_clip] == [[0], [1]]
    assert by_clip[0][0][1:] == (1.0, 1.0)  # clamped to the end of clip 0
    assert by_clip[1][0][1:] == (0.0, 0.0)  # clamped to the start of clip 1


def test_no_clips_no_chunks() -> None:
    packed = pack_audio([], 3000, 10)
    assert packed.chunks == [] and packed.placements == []
    assert assign_words([(0.0, 0.1)], packed, SR) == []


def test_a_word_reaching_past_its_chunk_stays_in_it_when_its_chunk_is_known() -> None:
    # Two chunks of one 2900-sample clip each: a word aligned over chunk 0's padding has its
    # midpoint inside chunk 1, but was decoded from chunk 0.
    clips = [np.ones(2900, dtype=np.float32), np.ones(2900, dtype=np.float32)]
    packed = pack_audio(clips, 3000, 100)
    assert [p.chunk for p in packed.placements] == [0, 1]
    spans = [(28.8, 29.4)]
    assert [len(w) for w in assign_words(spans, packed, SR)] == [0, 1]
    by_clip = assign_words(spans, packed, SR, chunk_of=[chunk_at(packed, 0.0, SR)])
    assert [len(w) for w in by_clip] == [1, 0]
    assert by_clip[0][0][1] == pytest.approx(28.8)
    assert by_clip[0][0][2] == 29.0
    assert chunk_at(packed, 29.0, SR) == 1
