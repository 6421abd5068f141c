"""``relisten.replay_live`` cuts a recording into the turns a realtime session with server VAD would."""

from __future__ import annotations

import itertools

import numpy as np
from relisten_ingest.realtime_audio import VadSettings

from relisten.replay_live import SAMPLE_RATE, turns_of


def _tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32)


def test_pauses_cut_turns_with_the_vad_padding() -> None:
    audio = np.concatenate([_silence(1.0), _tone(1.0), _silence(1.0), _tone(2.0), _silence(1.0)])
    turns = turns_of(audio, VadSettings(), max_turn_s=15.0)
    assert len(turns) == 2
    (a_start, a_end), (b_start, b_end) = turns
    # speech begins at 1 s and 3 s; a turn starts 300 ms before and ends after 500 ms of silence
    assert abs(a_start / SAMPLE_RATE - 0.7) < 0.1 and abs(a_end / SAMPLE_RATE - 2.5) < 0.1
    assert abs(b_start / SAMPLE_RATE - 2.7) < 0.1 and abs(b_end / SAMPLE_RATE - 5.5) < 0.1


def test_long_speech_is_cut_at_the_turn_limit_and_the_tail_kept() -> None:
    audio = np.concatenate([_tone(7.0), _silence(0.2), _tone(4.0)])  # no pause long enough for the VAD
    turns = turns_of(audio, VadSettings(), max_turn_s=5.0)
    assert len(turns) == 3
    assert all(end - start <= 5 * SAMPLE_RATE for start, end in turns)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(turns))  # no audio lost between
    assert turns[-1][1] == len(audio)
