"""What ``relisten transcribe`` prints after a transcript: the corrections table, kept readable for
an hour-long recording (the JSON format still carries every correction)."""

from __future__ import annotations

from typing import Any

import pytest

from relisten.cli import CORRECTIONS_SHOWN, _print_corrections


def transcript(corrections: int) -> dict[str, Any]:
    return {
        "corrections": [
            {
                "start": float(i),
                "end": i + 0.5,
                "status": "accepted",
                "original_text": f"before{i}",
                "corrected_text": f"after{i}",
                "reason": "second pass agrees",
            }
            for i in range(corrections)
        ],
        "stats": {"first_pass_seconds": 1.0, "corrections_accepted": corrections},
    }


def test_a_few_corrections_are_all_shown(capsys: pytest.CaptureFixture[str]) -> None:
    _print_corrections(transcript(3))
    shown = " ".join(capsys.readouterr().err.split())  # rich wraps at the terminal width
    assert all(f"after{i}" in shown for i in range(3))
    assert "more corrections" not in shown
    assert "3 corrections accepted" in shown


def test_a_long_recordings_table_stops_and_says_how_many_are_left(capsys: pytest.CaptureFixture[str]) -> None:
    _print_corrections(transcript(CORRECTIONS_SHOWN + 45))
    shown = " ".join(capsys.readouterr().err.split())  # rich wraps at the terminal width
    assert f"after{CORRECTIONS_SHOWN - 1}" in shown
    assert f"after{CORRECTIONS_SHOWN}" not in shown
    assert "... and 45 more corrections (--format json lists every one)" in shown
