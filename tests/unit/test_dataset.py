"""The benchmark's long-form recordings and their joined form, from the bundled development set."""

from __future__ import annotations

import numpy as np

from relisten.dataset import SAMPLE_RATE, joined, long_form_recordings, word_error_rate


def test_chapters_and_sonnets_join_into_one_recording_with_gaps() -> None:
    recordings = long_form_recordings()
    assert len(recordings) == 8
    assert all(60 < r.duration_s < 100 for r in recordings if r.name.startswith("chapter-"))
    one = joined(recordings, gap_s=2.0)
    gaps = 2.0 * (len(recordings) - 1)
    assert abs(one.duration_s - (sum(r.duration_s for r in recordings) + gaps)) < 1e-6
    assert one.reference.split() == [word for r in recordings for word in r.reference.split()]
    second = int(recordings[0].duration_s * SAMPLE_RATE)
    assert not np.any(one.audio[second : second + 2 * SAMPLE_RATE])
    assert word_error_rate(one.reference, one.reference) == 0.0
