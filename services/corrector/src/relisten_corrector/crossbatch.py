"""Several requesters' packed clips in one batched decode: which requests share a call, and how their
packed buffers are laid side by side so that each requester gets exactly its own words back.

A requester is a job's batch of clips (or a live turn's windows). Each is packed on its own exactly as
when it is decoded alone (:func:`relisten_corrector.packing.pack_audio`), so a chunk holds the clips of
one requester only and decodes to the same words whichever call it is in; a call merely decodes the
chunks of several requesters together (one batched pass, the encoder's input sized to the call's
longest chunk).

Pure functions, no model:

* :func:`chunk_count` is how many chunks (encoder inputs) a requester's clips need, its size in a call;
* :func:`take_call` picks the waiting requests for the next call: always the oldest (nobody starves),
  then later ones that can share its prompt and language, in arrival order, while the call stays
  within its bound;
* :func:`combine` lays several requesters' packed buffers back to back as one :class:`Packed`
  (clips and chunks renumbered) and says which of its clips are whose, so that
  :func:`~relisten_corrector.packing.assign_words` on the whole call hands each word to the clip,
  and so the requester, it was heard in.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from relisten_corrector.packing import Packed, Placement, plan_chunks

__all__ = ["chunk_count", "combine", "take_call"]


def chunk_count(lengths: Sequence[int], max_chunk: int, gap: int) -> int:
    """Encoder inputs a requester's clips need: its packed chunks (clips of at most ``max_chunk``
    samples), plus one for each longer clip (decoded on its own); empty clips need none."""
    packable = [length for length in lengths if 0 < length <= max_chunk]
    oversized = sum(1 for length in lengths if length > max_chunk)
    return (len(plan_chunks(packable, max_chunk, gap)) if packable else 0) + oversized


def take_call(waiting: Sequence[tuple[Hashable, int]], max_chunks: int) -> list[int]:
    """Positions of the ``waiting`` requests (``(key, chunks)`` each, oldest first) to decode in the
    next call.

    The oldest always goes, even alone above ``max_chunks`` (a request is never split: its results
    are stored together). Then, in arrival order, every later request with the same key (the prompt
    and language a call shares) whose chunks still fit within ``max_chunks``; one that does not fit
    waits for a later call, and a smaller one behind it may still join this one.
    """
    if not waiting:
        return []
    if max_chunks < 1:
        raise ValueError("max_chunks must be >= 1")
    key, used = waiting[0]
    taken = [0]
    for position in range(1, len(waiting)):
        other_key, chunks = waiting[position]
        if other_key == key and used + chunks <= max_chunks:
            taken.append(position)
            used += chunks
    return taken


def combine(packs: Sequence[Packed]) -> tuple[Packed, list[range]]:
    """The ``packs`` back to back as one buffer, and the range of the combined clip numbers that
    belongs to each pack (in order).

    Each pack's buffer is copied whole (its trailing silence included), so every chunk keeps its
    exact samples and still ends strictly inside the audio; chunks and clips are renumbered in pack
    order and placements keep their positions relative to their pack.
    """
    pieces: list[np.ndarray] = []
    chunks: list[tuple[int, int]] = []
    placements: list[Placement] = []
    owned: list[range] = []
    sample_offset = 0
    for pack in packs:
        first_clip, first_chunk = len(placements), len(chunks)
        chunks.extend((start + sample_offset, end + sample_offset) for start, end in pack.chunks)
        placements.extend(
            Placement(
                clip=first_clip + placement.clip,
                chunk=first_chunk + placement.chunk,
                start=sample_offset + placement.start,
                length=placement.length,
            )
            for placement in pack.placements
        )
        owned.append(range(first_clip, first_clip + len(pack.placements)))
        pieces.append(np.asarray(pack.audio, dtype=np.float32))
        sample_offset += len(pack.audio)
    audio = np.concatenate(pieces) if pieces else np.zeros(1, dtype=np.float32)
    return Packed(audio=audio, chunks=chunks, placements=placements), owned
