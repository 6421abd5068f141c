"""The pure parts of ``relisten.bench_live``: cutting a recording at an utterance, the latencies of a
session (measured from when the audio was sent), and what counts as a sustained number of streams."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from relisten.bench_live import SessionFigures, cut, figures, ramp_step, vad_margins
from relisten.dataset import SAMPLE_RATE, Recording, Utterance
from relisten.live_client import COMPLETED, DELTA, LiveSession, StreamResult


def test_a_recording_is_cut_after_the_last_utterance_that_fits() -> None:
    recording = Recording(
        "r",
        np.zeros(30 * SAMPLE_RATE, dtype=np.float32),
        "one two three",
        utterances=(Utterance(0, 8, "one"), Utterance(8.6, 19, "two"), Utterance(19.6, 29, "three")),
    )
    short = cut(recording, 20)
    assert short.reference == "one two"
    assert short.duration_s == 19.3
    assert cut(recording, 2).reference == "one"  # never empty


def test_latencies_run_from_when_the_audio_was_sent() -> None:
    session = LiveSession()
    events: list[tuple[float, dict[str, Any]]] = [
        (10.0, {"type": "input_audio_buffer.speech_started", "item_id": "a", "audio_start_ms": 1000}),
        (11.4, {"type": DELTA, "item_id": "a", "delta": " hello"}),
        (13.0, {"type": "input_audio_buffer.speech_stopped", "item_id": "a", "audio_end_ms": 2500}),
        (13.1, {"type": "input_audio_buffer.committed", "item_id": "a"}),
        (13.9, {"type": COMPLETED, "item_id": "a", "transcript": "Hello."}),
        (
            13.95,
            {
                "type": "relisten.turn.refined",
                "item_id": "a",
                "words": [{"word": "Hello.", "start": 1.5, "end": 1.9}],
            },
        ),
    ]
    for now, event in events:
        session.apply(event, now)
    # Audio position 0 was sent at t=10, at twice real time. Speech started 0.3 s (the VAD's prefix
    # padding) after 1.0 s, so at 1.3 s, sent at 10.65; it stopped 0.5 s (the VAD's silence) before
    # 2.5 s, so at 2.0 s, sent at 11.0; the VAD decided at 2.5 s, sent at 11.25.
    got = figures("r", StreamResult(session, started_at=10.0, speed=2.0, audio_s=3.0))
    assert got.first_delta_s == [pytest.approx(11.4 - 10.65)]
    assert got.first_delta_from_word_s == [pytest.approx(11.4 - 10.75)]  # the word starts at 1.5 s
    assert got.completed_s == [pytest.approx(13.9 - 11.0)]
    assert got.completed_after_vad_s == [pytest.approx(13.9 - 11.25)]
    assert (got.deltas_text, got.completed_text) == ("hello", "Hello.")


def _session(completed: list[float], **extra: int) -> SessionFigures:
    return SessionFigures("r", 30.0, len(completed), first_delta_s=[0.5], completed_s=completed, **extra)  # type: ignore[arg-type]


def test_streams_are_sustained_while_the_delay_stays_bounded_and_does_not_grow() -> None:
    assert ramp_step(2, [_session([1.0, 1.1, 1.2]), _session([0.9, 1.0, 1.3])], bound_s=3.0).bounded
    # A p90 over the bound, a delay that grows through the session, a failed turn, a degraded session.
    assert not ramp_step(1, [_session([1.0, 4.0, 5.0])], bound_s=3.0).bounded
    assert not ramp_step(1, [_session([0.2, 0.5, 1.0, 1.5, 2.0, 2.5])], bound_s=3.0).bounded
    assert not ramp_step(1, [_session([1.0, 1.0, 1.0], failed_turns=1)], bound_s=3.0).bounded
    assert not ramp_step(1, [_session([1.0, 1.0, 1.0], degraded_events=1)], bound_s=3.0).bounded
    assert not ramp_step(1, [_session([])], bound_s=3.0).bounded  # no turn completed at all


def test_the_vad_margins_come_from_the_session_the_server_confirmed() -> None:
    session = {"audio": {"input": {"turn_detection": {"prefix_padding_ms": 200, "silence_duration_ms": 700}}}}
    assert vad_margins(session) == (0.2, 0.7)
    assert vad_margins({}) == (0.3, 0.5)
