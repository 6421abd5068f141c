"""The yardstick's router line and windows' oracle (relisten.yardstick), on hand-made first passes."""

from __future__ import annotations

import numpy as np
import pytest
from relisten_clipper.domain import Window
from relisten_contracts import ClipResult, FirstPass, TranscriptWord, Word

from relisten import yardstick
from relisten.dataset import Recording, Utterance
from relisten.replay import Replayed
from relisten.scoring import unit_errors
from relisten.yardstick import _key, decodes_first_pass, oracle_words, print_first_pass_times, router_wer


def test_router_line_interpolates_between_the_two_models_and_clamps_at_its_ends() -> None:
    assert router_wer(0.10, 10.0, 0.08, 20.0, 15.0) == 0.09
    assert router_wer(0.10, 10.0, 0.08, 20.0, 5.0) == 0.10
    assert router_wer(0.10, 10.0, 0.08, 20.0, 40.0) == 0.08


def _word(text: str, start: float) -> Word:
    return Word(word=f" {text}", start=start, end=start + 0.3, probability=0.5)


def test_oracle_takes_each_window_from_whichever_pass_was_right() -> None:
    reference = "one two three four five six"
    recording = Recording(
        "r", np.zeros(16000 * 4, np.float32), reference, utterances=(Utterance(0.0, 4.0, reference),)
    )
    heard = ["one", "too", "three", "four", "fife", "six"]
    first = FirstPass(
        language="en",
        duration_s=4.0,
        words=[_word(text, 0.5 * i) for i, text in enumerate(heard)],
        segments=[],
        engine="test",
        seconds=0.0,
    )
    windows = (
        Window(start_s=0.4, end_s=1.0, flagged=(1,), trigger_confidence=0.5, word_first=1, word_last=2),
        Window(start_s=1.4, end_s=1.9, flagged=(3,), trigger_confidence=0.5, word_first=3, word_last=4),
        Window(start_s=1.9, end_s=2.4, flagged=(4,), trigger_confidence=0.5, word_first=4, word_last=5),
    )

    def answer(index: int, texts: list[str], start: float) -> ClipResult:
        words = [_word(t, start + 0.1 * i) for i, t in enumerate(texts)]
        return ClipResult(clip_index=index, ok=True, backend="t", text=" ".join(texts), words=words)

    # Window 0's answer is right, window 1's is wrong (first pass was right), window 2's is right.
    results = {0: answer(0, ["two"], 0.5), 1: answer(1, ["floor"], 1.5), 2: answer(2, ["five"], 2.0)}
    # The merger rejected every answer: its words are the first pass's.
    merged = tuple(
        TranscriptWord(word=w.word, start=w.start, end=w.end, probability=w.probability) for w in first.words
    )
    replayed = Replayed("r", windows, results, merged, 0.0)
    best = oracle_words(recording, first, replayed)
    assert [w for _, _, w in best] == ["one", "two", "three", "four", "five", "six"]
    assert unit_errors(recording, best)[0].errors == 0


def test_later_decode_settings_keep_the_cache_key_at_their_old_value() -> None:
    recording = Recording("r", np.zeros(160, np.float32), "x")
    before = {"batch_size": 8, "beam_size": 5}
    assert _key(recording, "asr", before) == _key(
        recording, "asr", {**before, "vad_threshold": 0.5, "vad_fallback_threshold": 0.0}
    )
    assert _key(recording, "asr", before) != _key(
        recording, "asr", {**before, "vad_fallback_threshold": 0.25}
    )
    assert _key(recording, "asr", before) != _key(recording, "asr", {**before, "batch_size": 0})
    assert _key(recording, "asr", before) == _key(recording, "asr", {**before, "calibrate_probability": True})


def test_variants_that_change_the_first_pass_decode_their_own() -> None:
    assert decodes_first_pass({"RELISTEN_ASR_VAD_FALLBACK_THRESHOLD": "0.25"})
    assert decodes_first_pass({"RELISTEN_ASR_BATCH_SIZE": "0", "RELISTEN_MERGER_MAX_DRIFT": "0.3"})
    assert not decodes_first_pass({"RELISTEN_MERGER_MAX_DRIFT": "0.3"})
    # applied to the cached first passes by the replay itself
    assert not decodes_first_pass({"RELISTEN_ASR_CALIBRATE_PROBABILITY": "true"})


def test_first_pass_times_are_summed_per_part_and_channel_as_ratios_to_the_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rich.console import Console

    made = [Recording(name, np.zeros(160, np.float32), "x") for name in ("a", "a~tel", "b", "b~tel")]
    monkeypatch.setattr(yardstick, "split_of", lambda r: "tuning" if r.name.startswith("b") else "validation")
    seconds = {
        "defaults": {"a": 2.0, "a~tel": 4.0, "b": 1.0, "b~tel": 3.0},
        "lever": {"a": 2.0, "a~tel": 2.0, "b": 1.5, "b~tel": 3.0},
    }
    data = print_first_pass_times(seconds, made, Console(quiet=True))
    assert data["validation/all"] == {"defaults": 6.0, "lever": 4.0}
    assert data["validation/tel"] == {"defaults": 4.0, "lever": 2.0}
    assert data["tuning/original"] == {"defaults": 1.0, "lever": 1.5}
