"""The vLLM chat client's pure parts: the instruction, and long audio cut at pauses."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
from relisten_speech.chat import split_at_pauses, transcription_instruction


def test_instruction_carries_glossary_and_language() -> None:
    text = transcription_instruction("Margaret Hale, Milton", "en")
    assert "Margaret Hale, Milton" in text and "'en'" in text
    assert "Margaret" not in transcription_instruction(None, None)


def test_long_clips_are_split_at_pauses() -> None:
    rate = 16000
    rng = np.random.default_rng(3)
    audio = (rng.standard_normal(rate * 70) * 0.3).astype(np.float32)
    pauses = [(22 * rate, int(22.4 * rate)), (47 * rate, int(47.3 * rate))]
    for start, end in pauses:
        audio[start:end] = 0.0
    pieces = split_at_pauses(audio, 30 * rate)
    assert pieces[0][0] == 0 and pieces[-1][1] == len(audio)
    assert all(a[1] == b[0] for a, b in pairwise(pieces))
    assert all(0 < end - start <= 30 * rate for start, end in pieces)
    cuts = [end for _, end in pieces[:-1]]
    assert len(cuts) == 2
    for cut, (start, end) in zip(cuts, pauses, strict=True):
        assert start <= cut <= end
    assert split_at_pauses(audio[: 30 * rate], 30 * rate) == [(0, 30 * rate)]
    assert split_at_pauses(audio[:0], 30 * rate) == [(0, 0)]
