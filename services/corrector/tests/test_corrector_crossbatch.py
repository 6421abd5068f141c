"""Several requesters' packed clips in one call (relisten_corrector.crossbatch): who shares a call,
and every word back to its own requester and clip. Property-based, no model."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from relisten_corrector.crossbatch import chunk_count, combine, take_call
from relisten_corrector.packing import assign_words, pack_audio, plan_chunks

SR = 100
MAX_CHUNK = 3000
GAP = 100

requesters_strategy = st.lists(
    st.lists(st.integers(min_value=1, max_value=MAX_CHUNK), min_size=1, max_size=8), min_size=0, max_size=5
)


def clips_of(lengths: list[list[int]]) -> list[list[np.ndarray]]:
    """Clips whose every sample says whose (requester, clip) it is."""
    return [
        [np.full(n, 1 + 100 * owner + index, dtype=np.float32) for index, n in enumerate(clips)]
        for owner, clips in enumerate(lengths)
    ]


@given(lengths=requesters_strategy)
@settings(max_examples=60)
def test_combined_packs_keep_every_requester_s_chunks_exactly(lengths: list[list[int]]) -> None:
    requests = clips_of(lengths)
    packs = [pack_audio(clips, MAX_CHUNK, GAP) for clips in requests]
    combined, owned = combine(packs)
    assert [len(r) for r in owned] == [len(clips) for clips in requests]
    assert [i for r in owned for i in r] == list(range(len(combined.placements)))
    assert len(combined.chunks) == sum(len(p.chunks) for p in packs)
    # Chunks back to back, each ending strictly inside the audio, each a requester's chunk unchanged.
    for (_, end), (start, _) in pairwise(combined.chunks):
        assert end <= start
    chunk = 0
    for pack in packs:
        for start, end in pack.chunks:
            c_start, c_end = combined.chunks[chunk]
            assert np.array_equal(combined.audio[c_start:c_end], pack.audio[start:end])
            assert c_end < len(combined.audio)
            chunk += 1
    # Every clip at its placement, in a chunk of its own requester only.
    for owner, clip_numbers in enumerate(owned):
        for index, number in enumerate(clip_numbers):
            placement = combined.placements[number]
            assert placement.clip == number
            assert np.all(combined.audio[placement.start : placement.end] == 1 + 100 * owner + index)
            start, end = combined.chunks[placement.chunk]
            assert start <= placement.start and placement.end <= end
            chunk_clips = [p.clip for p in combined.placements if p.chunk == placement.chunk]
            assert all(c in clip_numbers for c in chunk_clips)


@given(lengths=requesters_strategy, data=st.data())
@settings(max_examples=60)
def test_words_go_back_to_the_requester_and_clip_they_were_heard_in(
    lengths: list[list[int]], data: st.DataObject
) -> None:
    requests = clips_of(lengths)
    combined, owned = combine([pack_audio(clips, MAX_CHUNK, GAP) for clips in requests])
    # One or more words inside each clip, decoded chunk by chunk (as the pipeline returns them).
    spans: list[tuple[float, float]] = []
    chunks: list[int] = []
    truth: list[int] = []
    for placement in sorted(combined.placements, key=lambda p: p.start):
        for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
            lo = data.draw(st.integers(min_value=placement.start, max_value=placement.end - 1))
            hi = data.draw(st.integers(min_value=lo + 1, max_value=placement.end))
            spans.append((lo / SR, hi / SR))
            chunks.append(placement.chunk)
            truth.append(placement.clip)
    by_clip = assign_words(spans, combined, SR, chunks)
    for number, words in enumerate(by_clip):
        assert [truth[position] for position, _, _ in words] == [number] * len(words)
        assert [position for position, _, _ in words] == sorted(position for position, _, _ in words)
        length = combined.placements[number].length / SR
        assert all(0.0 <= start <= end <= length for _, start, end in words)
    assert sorted(p for words in by_clip for p, _, _ in words) == list(range(len(spans)))
    # Each requester's words and times are those its own packing alone would give.
    for owner, clip_numbers in enumerate(owned):
        alone = pack_audio(requests[owner], MAX_CHUNK, GAP)
        offset = (combined.placements[clip_numbers[0]].start - alone.placements[0].start) / SR
        first_chunk = combined.placements[clip_numbers[0]].chunk - alone.placements[0].chunk
        mine = sorted(p for number in clip_numbers for p, _, _ in by_clip[number])
        by_own_clip = assign_words(
            [(spans[p][0] - offset, spans[p][1] - offset) for p in mine],
            alone,
            SR,
            [chunks[p] - first_chunk for p in mine],
        )
        for index, number in enumerate(clip_numbers):
            expected = [(mine[i], start, end) for i, start, end in by_own_clip[index]]
            assert [w[0] for w in by_clip[number]] == [w[0] for w in expected]
            for (_, start, end), (_, own_start, own_end) in zip(by_clip[number], expected, strict=True):
                assert abs(start - own_start) < 1e-9 and abs(end - own_end) < 1e-9


def test_nothing_to_combine_is_an_empty_call() -> None:
    combined, owned = combine([])
    assert owned == [] and combined.chunks == [] and combined.placements == []


@given(lengths=st.lists(st.integers(min_value=0, max_value=2 * MAX_CHUNK), max_size=20))
def test_a_requester_s_size_is_its_chunks_plus_its_long_clips(lengths: list[int]) -> None:
    packable = [n for n in lengths if 0 < n <= MAX_CHUNK]
    expected = (len(plan_chunks(packable, MAX_CHUNK, GAP)) if packable else 0) + sum(
        n > MAX_CHUNK for n in lengths
    )
    assert chunk_count(lengths, MAX_CHUNK, GAP) == expected


waiting_strategy = st.lists(
    st.tuples(st.sampled_from(["en", "de", "en+glossary"]), st.integers(min_value=1, max_value=12)),
    max_size=12,
)


@given(waiting=waiting_strategy, max_chunks=st.integers(min_value=1, max_value=16))
def test_a_call_takes_the_oldest_then_what_fits_with_the_same_key(
    waiting: list[tuple[str, int]], max_chunks: int
) -> None:
    taken = take_call(waiting, max_chunks)
    if not waiting:
        assert taken == []
        return
    assert taken[0] == 0
    assert taken == sorted(set(taken))
    assert all(waiting[position][0] == waiting[0][0] for position in taken)
    used = sum(waiting[position][1] for position in taken)
    # Within the bound, unless the oldest alone is larger (a request is never split).
    assert used <= max(max_chunks, waiting[0][1])
    if len(taken) > 1:
        assert used <= max_chunks
    # Nobody left out who would have fitted when its turn came.
    running = waiting[0][1]
    for position in range(1, len(waiting)):
        key, chunks = waiting[position]
        fits = key == waiting[0][0] and running + chunks <= max_chunks
        assert (position in taken) == fits
        if fits:
            running += chunks


def test_calls_in_turn_decode_everyone_once_oldest_first() -> None:
    waiting = [("en", 3), ("de", 1), ("en", 6), ("en", 2), ("de", 4), ("en", 1)]
    calls: list[list[int]] = []
    order = list(range(len(waiting)))
    while order:
        taken = take_call([waiting[i] for i in order], max_chunks=6)
        calls.append([order[p] for p in taken])
        order = [i for p, i in enumerate(order) if p not in taken]
    assert calls == [[0, 3, 5], [1, 4], [2]]
