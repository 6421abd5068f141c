"""The clip plan carries the clipper's windows to the merger unchanged."""

from __future__ import annotations

import msgspec
from relisten_contracts import ClipSpec, Window, window_of_clip


def test_a_planned_clip_reads_back_as_its_window() -> None:
    clip = ClipSpec(
        index=3,
        start_s=1.25,
        end_s=2.5,
        start_sample=20000,
        end_sample=40000,
        audio_ref="job/clips/3.wav",
        flagged_word_indices=[4, 6],
        trigger_confidence=0.31,
        word_first=4,
        word_last=7,
    )
    window = window_of_clip(clip)
    assert window == Window(
        index=3, start_s=1.25, end_s=2.5, flagged=(4, 6), trigger_confidence=0.31, word_first=4, word_last=7
    )
    assert window.duration_s == 1.25


def test_a_whole_stretch_stays_whole_across_the_plan() -> None:
    clip = ClipSpec(
        index=0,
        start_s=0.0,
        end_s=12.0,
        start_sample=0,
        end_sample=192000,
        audio_ref="job/clips/0.wav",
        flagged_word_indices=[1, 2],
        trigger_confidence=0.2,
        word_first=0,
        word_last=4,
        whole=True,
    )
    assert window_of_clip(clip).whole
    assert not window_of_clip(msgspec.structs.replace(clip, whole=False)).whole
    # A plan written before the field existed reads as usual windows.
    old = msgspec.json.encode(clip).replace(b',"whole":true', b"")
    assert not msgspec.json.decode(old, type=ClipSpec).whole
