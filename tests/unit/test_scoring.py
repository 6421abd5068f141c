"""Per-utterance scoring, paired bootstrap intervals and wrong-word labels (relisten.scoring)."""

from __future__ import annotations

import numpy as np

from relisten.dataset import Recording, Utterance
from relisten.scoring import UnitErrors, paired_bootstrap, unit_errors, wer_of, wrong_words


def _recording() -> Recording:
    utterances = (Utterance(0.0, 2.0, "the cat sat"), Utterance(3.0, 5.0, "on the mat"))
    return Recording("r", np.zeros(5 * 16000, np.float32), "the cat sat on the mat", utterances=utterances)


def test_words_are_scored_in_the_utterance_holding_their_midpoint() -> None:
    words = [(0.1, 0.3, "the"), (0.4, 0.8, "cat"), (0.9, 1.2, "sat"), (3.1, 3.3, "on"), (3.4, 3.6, "a")]
    words.append((3.7, 4.0, "mat"))
    units = unit_errors(_recording(), words)
    assert [(u.group, u.errors, u.words) for u in units] == [("r#0", 0, 3), ("r#1", 1, 3)]
    # A word in the pause belongs to the nearer utterance (the boundary is halfway through the pause).
    units = unit_errors(_recording(), [*words, (2.2, 2.4, "uh")])
    assert [u.errors for u in units] == [1, 1]
    assert wer_of(units) == 2 / 6


def test_degraded_copies_are_resampled_with_their_original() -> None:
    copy = unit_errors(Recording("r~tel", np.zeros(1, np.float32), "a b", utterances=()), [])
    assert copy[0].group == "r#0"


def test_bootstrap_interval_of_identical_systems_is_zero_and_not_a_win() -> None:
    units = [UnitErrors(f"u{i}", i % 3, 10) for i in range(40)]
    interval = paired_bootstrap(units, units)
    assert (interval.difference, interval.low, interval.high) == (0.0, 0.0, 0.0)
    assert interval.verdict == "not a win"


def test_bootstrap_tells_a_consistent_gain_from_noise() -> None:
    worse = [UnitErrors(f"u{i}", 3, 10) for i in range(40)]
    better = [UnitErrors(f"u{i}", 1 + (i % 2), 10) for i in range(40)]
    gain = paired_bootstrap(better, worse)
    assert gain.win and gain.high < 0 and abs(gain.difference - (-0.15)) < 1e-9
    assert paired_bootstrap(worse, better).verdict == "worse"
    # One lucky utterance among many equal ones: the interval includes zero.
    noisy = [UnitErrors(f"u{i}", 3 - 3 * (i == 0), 10) for i in range(40)]
    assert paired_bootstrap(noisy, worse).verdict == "not a win"


def test_wrong_words_marks_substitutions_and_insertions_only() -> None:
    assert wrong_words("the cat sat on the mat", ["The", "cat", "sat", "on", "a", "mat."]) == [
        False,
        False,
        False,
        False,
        True,
        False,
    ]
    assert wrong_words("the cat sat", ["the", "big", "cat", "sat"]) == [False, True, False, False]
    assert wrong_words("the cat sat", ["the", "sat"]) == [False, False]


def test_the_bench_report_prints_intervals_of_its_pairs() -> None:
    from relisten.bench import RecordingResult, Report, SystemResult

    recording = _recording()
    right = [(0.1, 0.3, "the"), (0.4, 0.8, "cat"), (0.9, 1.2, "sat"), (3.1, 3.3, "on")]
    right += [(3.4, 3.6, "the"), (3.7, 4.0, "mat")]
    wrong = [*right[:4], (3.4, 3.6, "a"), (3.7, 4.0, "mat")]

    def system(key: str, words: list[tuple[float, float, str]]) -> SystemResult:
        text = " ".join(w for _, _, w in words)
        result = RecordingResult(
            name="r", duration_s=5.0, hypothesis=text, wer=0.0, compute_s=1.0, wall_s=1.0
        )
        result.words = words
        return SystemResult(key, key, pipeline=False, recordings=[result])

    report = Report(
        date="",
        data_dir="",
        first_model="",
        second_model="",
        threshold=None,
        env={},
        machine={"cpus": 2, "cpu_model": "", "platform": ""},
        audio_s=5.0,
        recordings=["r"],
        references={"r": recording.reference},
        systems=[system("a", wrong), system("b", right), system("c", right)],
        sources={"r": recording},
    )
    intervals = dict(report.intervals())
    assert set(intervals) == {"WER(c) - WER(a)", "WER(c) - WER(b)", "WER(b) - WER(a)"}
    assert abs(intervals["WER(c) - WER(a)"].difference - (-1 / 6)) < 1e-9
    assert intervals["WER(c) - WER(b)"].difference == 0.0
    assert "WER(c) - WER(a)" in report.to_markdown()
