"""Pack a job's short clips side by side into few Whisper-sized chunks, and give the words back.

Whisper pads every input to 30 s, so a 3-second clip decoded alone costs the encoder as much as 30 s
of audio. Measured on the development set, decoding each window alone made the hierarchy cost 4x the
strong model run everywhere; packing the windows into <= 30 s chunks (a short silence between
neighbours) and decoding the chunks in one batched call cost a fraction of it (docs/benchmark.md).

Pure functions, no model:

* :func:`plan_chunks` groups clip lengths into chunks (first-fit decreasing, so few chunks);
* :func:`pack_audio` lays the clips out in one buffer: in each chunk the clips in input order with
  ``gap`` samples of silence between them, chunks back to back, and ``gap`` samples of silence after
  the last chunk so that no chunk ends at the very end of the audio (faster-whisper's batched
  pipeline must never be given a chunk reaching past the audio it decodes);
* :func:`assign_words` hands each decoded word (times in the packed buffer) to the clip it was
  heard in, with times relative to that clip.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Packed", "Placement", "assign_words", "chunk_at", "pack_audio", "plan_chunks"]


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one clip lies in the packed buffer: samples ``[start, start + length)`` of chunk ``chunk``."""

    clip: int
    chunk: int
    start: int
    length: int

    @property
    def end(self) -> int:
        return self.start + self.length


@dataclass(frozen=True, slots=True)
class Packed:
    audio: np.ndarray
    chunks: list[tuple[int, int]]
    """``[start, end)`` samples of each chunk in ``audio``; back to back, every end < ``len(audio)``."""
    placements: list[Placement]
    """One per packed clip, in input order."""


def plan_chunks(lengths: Sequence[int], max_chunk: int, gap: int) -> list[list[int]]:
    """Group clip indices into chunks whose clips plus the gaps between them fit in ``max_chunk``.

    First-fit decreasing: the longest clip first, each into the first chunk it fits, so that a job
    needs about as few chunks (encoder passes) as possible. Each chunk lists its clips in input
    order. Every index appears exactly once; a clip longer than ``max_chunk`` gets a chunk to itself
    (callers should not pack such clips: the model hears only the first 30 s of a chunk).
    """
    if max_chunk <= 0 or gap < 0:
        raise ValueError("max_chunk must be > 0 and gap >= 0")
    chunks: list[list[int]] = []
    used: list[int] = []
    for index in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        length = max(lengths[index], 0)
        for position, members in enumerate(chunks):
            if used[position] + gap + length <= max_chunk:
                members.append(index)
                used[position] += gap + length
                break
        else:
            chunks.append([index])
            used.append(length)
    for members in chunks:
        members.sort()
    chunks.sort(key=lambda members: members[0])
    return chunks


def pack_audio(clips: Sequence[np.ndarray], max_chunk: int, gap: int, *, apart: bool = False) -> Packed:
    """The clips laid out in chunks of at most ``max_chunk`` samples (see the module's docstring);
    with ``apart``, each clip in a chunk of its own."""
    groups = (
        [[index] for index in range(len(clips))]
        if apart
        else plan_chunks([len(clip) for clip in clips], max_chunk, gap)
    )
    silence = np.zeros(gap, dtype=np.float32)
    pieces: list[np.ndarray] = []
    chunks: list[tuple[int, int]] = []
    placements: list[Placement] = []
    cursor = 0
    for chunk, members in enumerate(groups):
        chunk_start = cursor
        for position, index in enumerate(members):
            if position:
                pieces.append(silence)
                cursor += gap
            clip = np.asarray(clips[index], dtype=np.float32)
            placements.append(Placement(clip=index, chunk=chunk, start=cursor, length=len(clip)))
            pieces.append(clip)
            cursor += len(clip)
        chunks.append((chunk_start, cursor))
    pieces.append(np.zeros(max(gap, 1), dtype=np.float32))
    audio = np.concatenate(pieces) if pieces else np.zeros(1, dtype=np.float32)
    placements.sort(key=lambda placement: placement.clip)
    return Packed(audio=audio, chunks=chunks, placements=placements)


def assign_words(
    spans: Sequence[tuple[float, float]],
    packed: Packed,
    sample_rate: int,
    chunk_of: Sequence[int] | None = None,
) -> list[list[tuple[int, float, float]]]:
    """For each packed clip, the words heard in it: ``(word position, start, end)`` with times in
    seconds relative to the clip's start, clamped to the clip.

    ``spans`` are the words' ``(start, end)`` in seconds of the packed buffer, in decoding order;
    ``chunk_of`` the chunk each word was decoded from, when known (a word's times may reach past its
    chunk's end: Whisper aligns over the padding too), else the chunk holding its midpoint. Within its
    chunk, a word goes to the clip nearest its midpoint (one placed in the silence between two clips
    goes to the closer one). Every word is given to exactly one clip; each clip's words keep their
    decoding order.
    """
    by_clip: list[list[tuple[int, float, float]]] = [[] for _ in packed.placements]
    if not packed.placements:
        return by_clip
    by_chunk: dict[int, list[Placement]] = {}
    for placement in packed.placements:
        by_chunk.setdefault(placement.chunk, []).append(placement)
    chunk_starts = [start for start, _ in packed.chunks]
    for position, (start, end) in enumerate(spans):
        middle = (start + end) / 2 * sample_rate
        if chunk_of is not None:
            chunk = chunk_of[position]
        else:
            chunk = max(0, int(np.searchsorted(chunk_starts, middle, side="right")) - 1)
        candidates = by_chunk.get(chunk) or packed.placements
        home = min(candidates, key=lambda p: (_distance(middle, p), p.start))
        offset, length = home.start / sample_rate, home.length / sample_rate
        relative_start = min(max(start - offset, 0.0), length)
        relative_end = min(max(end - offset, relative_start), length)
        by_clip[home.clip].append((position, relative_start, relative_end))
    return by_clip


def chunk_at(packed: Packed, seconds: float, sample_rate: int) -> int:
    """The chunk starting nearest ``seconds`` (faster-whisper tells each segment's chunk by its start)."""
    if not packed.chunks:
        return 0
    return min(range(len(packed.chunks)), key=lambda k: abs(packed.chunks[k][0] / sample_rate - seconds))


def _distance(sample: float, placement: Placement) -> float:
    if sample < placement.start:
        return placement.start - sample
    if sample > placement.end:
        return sample - placement.end
    return 0.0
