"""The benchmark's long-form recordings and their joined form, from the bundled development set."""

from __future__ import annotations

from pathlib import Path

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


def test_split_is_by_speaker_deterministic_and_never_uses_the_held_out_speakers() -> None:
    from relisten.dataset import HELD_OUT_SPEAKERS, development_recordings, split_of

    everything = development_recordings(short=True)
    tuning = development_recordings(split="tuning", short=True)
    validation = development_recordings(split="validation", short=True)
    assert {r.name for r in tuning} | {r.name for r in validation} == {r.name for r in everything}
    assert not {r.speaker for r in tuning} & {r.speaker for r in validation}
    assert not {r.speaker for r in everything} & HELD_OUT_SPEAKERS
    # Both parts hold test-other chapters, the kind of speech the system is judged on.
    assert sum(r.name.startswith("chapter-") for r in tuning) == 2
    assert sum(r.name.startswith("chapter-") for r in validation) == 3
    assert [r.name for r in development_recordings(split="validation", short=True)] == [
        r.name for r in validation
    ]
    copies = development_recordings(split="validation", names=["chapter-1688-142285"], degraded=["speed1.1"])
    assert [split_of(r) for r in copies] == ["validation", "validation"]


def test_degraded_copies_are_deterministic_and_keep_utterances_in_place() -> None:
    from relisten.dataset import degrade, development_recordings

    (recording,) = development_recordings(names=["chapter-2414-128291"])
    assert len(recording.utterances) == 10
    faster = degrade(recording, "speed1.1")
    assert abs(faster.duration_s - recording.duration_s / 1.1) < 0.01
    assert abs(faster.utterances[-1].end_s - recording.utterances[-1].end_s / 1.1) < 1e-6
    phone = degrade(recording, "tel")
    assert np.array_equal(phone.audio, degrade(recording, "tel").audio)
    spectrum = np.abs(np.fft.rfft(phone.audio))
    freqs = np.fft.rfftfreq(len(phone.audio), 1 / SAMPLE_RATE)
    assert spectrum[freqs > 4200].sum() < 0.01 * spectrum[(freqs > 300) & (freqs < 3400)].sum()
    for kind in ("mp3", "opus"):
        coded = degrade(recording, kind)
        assert len(coded.audio) == len(recording.audio)
        assert np.array_equal(coded.audio, degrade(recording, kind).audio)
        # Aligned with the original (the codec's priming delay removed), yet not the same signal.
        correlation = float(np.corrcoef(coded.audio, recording.audio)[0, 1])
        assert 0.5 < correlation < 0.999  # unaligned, it would be near 0


def test_a_held_out_speaker_in_the_material_stops_the_load(tmp_path: Path) -> None:
    import json

    import pytest

    from relisten.dataset import degrade, long_form_recordings

    item = {"id": "ls-test-other-367-130732-0000", "audio": "x.flac", "reference": "x", "subset": "s"}
    (tmp_path / "manifest.jsonl").write_text(json.dumps(item) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="held out"):
        long_form_recordings(tmp_path)
    with pytest.raises(ValueError, match="unknown degradation"):
        degrade(long_form_recordings()[0], "underwater")


def test_a_joined_recording_with_copies_is_grouped_by_channel() -> None:
    from relisten.dataset import development_recordings

    names = ["speaker-61", "speaker-1272"]
    separate = development_recordings(names=names, short=True, degraded=["speed1.1"])
    assert [r.name for r in separate] == [
        "speaker-1272",
        "speaker-1272~speed1.1",
        "speaker-61",
        "speaker-61~speed1.1",
    ]
    (joined,) = development_recordings(names=names, short=True, degraded=["speed1.1"], join=True)
    # No recording next to its own copy: the same sentences never come back to back.
    by_name = {r.name: r for r in separate}
    order = ["speaker-1272", "speaker-61", "speaker-1272~speed1.1", "speaker-61~speed1.1"]
    assert [u.reference for u in joined.utterances] == [
        u.reference for name in order for u in by_name[name].utterances
    ]
    assert abs(joined.duration_s - sum(r.duration_s for r in separate) - 3 * 2.0) < 0.01
