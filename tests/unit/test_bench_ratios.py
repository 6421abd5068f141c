"""``relisten.bench``'s cost ratios: the pipeline's first pass against base on everything, and one
re-decoded second against one second of base on everything (issue-level targets, printed by the bench)."""

from __future__ import annotations

from relisten.bench import RecordingResult, Report, SystemResult


def _result(name: str, **fields: float) -> RecordingResult:
    return RecordingResult(name=name, duration_s=100.0, hypothesis="a", wer=0.0, **fields)  # type: ignore[arg-type]


def test_cost_ratios_against_base_everywhere() -> None:
    base = SystemResult("b", "(b)", pipeline=False, recordings=[_result("r", compute_s=20.0, wall_s=20.0)])
    relisten = SystemResult(
        "c",
        "(c)",
        pipeline=True,
        recordings=[
            _result("r", compute_s=12.0, wall_s=14.0, first_pass_s=8.0, second_pass_s=4.0, redecoded_s=10.0)
        ],
    )
    report = Report(
        date="d",
        data_dir="x",
        first_model="tiny.en",
        second_model="base",
        threshold=None,
        env={},
        machine={},
        audio_s=100.0,
        recordings=["r"],
        references={"r": "a"},
        systems=[base, relisten],
    )
    ratios = report.ratios()
    assert ratios["first_pass_c_over_b"] == 0.4  # 8 s against 20 s
    # 4 s for 10 re-decoded seconds (0.4 s each) against 20 s for 100 s of base (0.2 s each)
    assert ratios["redecoded_second_over_b_second"] == 2.0
