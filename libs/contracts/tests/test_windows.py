"""The clip plan carries the clipper's windows to the merger unchanged."""

from __future__ import annotations

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
