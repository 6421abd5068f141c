"""The in-process replay of the pipeline's decisions, on one real chapter with the bundled models."""

from __future__ import annotations

import os

import pytest

from relisten.dataset import Recording, long_form_recordings
from relisten.replay import decode_first_passes, main, replay


@pytest.fixture(scope="module")
def chapter() -> list[Recording]:
    # The first 40 s of one chapter: enough speech for the first pass to doubt a few words.
    recording = long_form_recordings()[0]
    cut = recording.audio[: 40 * 16000]
    words = recording.reference.split()
    return [Recording(recording.name, cut, " ".join(words[: len(words) * 40 // int(recording.duration_s)]))]


def test_no_budget_means_no_second_pass_and_the_first_pass_stands(chapter: list[Recording]) -> None:
    first = decode_first_passes(chapter, "bundled:tiny.en")
    before = dict(os.environ)

    nothing = replay("off", chapter, first, {"RELISTEN_CLIPPER_MAX_REDECODE_FRACTION": "0"})
    assert dict(os.environ) == before
    assert nothing.clips == 0 and nothing.words_decoded == 0 and nothing.redecoded_s == 0.0
    assert nothing.wer == nothing.first_pass_wer

    everything = replay("all", chapter, first, {"RELISTEN_CLIPPER_MAX_REDECODE_FRACTION": "1"}, threshold=0.9)
    assert everything.clips > 0 and everything.words_decoded > 0
    assert 0.0 < everything.redecoded_fraction <= 1.0
    assert everything.accepted <= everything.clips
    assert everything.first_pass_wer == nothing.first_pass_wer
    assert everything.wer < 0.3


def test_a_malformed_variant_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--variant", "bad:RELISTEN_CLIPPER_MAX_REDECODE_FRACTION"])
    assert exit_info.value.code == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
