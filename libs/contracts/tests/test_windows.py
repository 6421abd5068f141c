"""The clip plan carries the clipper's windows to the merger unchanged."""

from __future__ import annotations

import msgspec
from relisten_contracts import ClipSpec, Window, window_of_clip

PLANNED = ClipSpec(
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


def test_a_planned_clip_reads_back_as_its_window() -> None:
    window = window_of_clip(PLANNED)
    assert window == Window(
        index=3, start_s=1.25, end_s=2.5, flagged=(4, 6), trigger_confidence=0.31, word_first=4, word_last=7
    )
    assert window.duration_s == 1.25


def test_a_whole_stretch_stays_whole_across_the_plan() -> None:
    assert not PLANNED.whole
    clip = msgspec.structs.replace(PLANNED, whole=True)
    assert window_of_clip(clip).whole
    assert not window_of_clip(PLANNED).whole
    # A plan written before the field existed reads as usual windows.
    old = msgspec.json.encode(clip).replace(b',"whole":true', b"")
    assert old != msgspec.json.encode(clip)
    assert not msgspec.json.decode(old, type=ClipSpec).whole
