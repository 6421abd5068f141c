"""The pure parts of ``relisten live``: decoding to the protocol's pcm16 24 kHz, the URL and the
``session.update`` sent, how the server's events fold into turns, and how a refined turn is shown.
(The WebSocket itself is tested against the real server in tests/e2e/test_live_client.py.)"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from relisten.live_client import (
    COMPLETED,
    DELTA,
    REALTIME_RATE,
    REFINED,
    TRAILING_SILENCE_S,
    LiveError,
    LiveSession,
    append_event,
    decode_pcm24,
    file_source,
    float_to_pcm24,
    pcm_chunks,
    realtime_url,
    render_turn,
    session_update,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "audio" / "ls-dev-clean-1272-128104-0000.wav"


def test_a_recording_decodes_to_pcm16_at_24_khz() -> None:
    pcm = decode_pcm24(FIXTURE)
    samples = np.frombuffer(pcm, dtype="<i2")
    # The fixture is 16 kHz: 1.5 samples out for each in, within the resampler's edge.
    import wave

    with wave.open(str(FIXTURE)) as wav:
        expected = wav.getnframes() * REALTIME_RATE / wav.getframerate()
    assert abs(len(samples) - expected) < REALTIME_RATE * 0.01
    assert np.abs(samples).max() > 1000  # speech, not silence


def test_a_file_that_is_not_audio_is_refused_with_exit_code_2(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.wav"
    bogus.write_text("not audio at all")
    with pytest.raises(LiveError) as raised:
        decode_pcm24(bogus)
    assert raised.value.exit_code == 2


def test_float_audio_is_resampled_to_24_khz() -> None:
    one_second = np.sin(np.arange(16000) / 16000 * 2 * np.pi * 440).astype(np.float32)
    pcm = float_to_pcm24(one_second, 16000)
    assert len(pcm) == REALTIME_RATE * 2
    assert float_to_pcm24(one_second, REALTIME_RATE) == (one_second * 32767).astype("<i2").tobytes()


def test_chunks_cover_the_audio_and_are_a_tenth_of_a_second() -> None:
    pcm = bytes(range(256)) * 1000
    chunks = pcm_chunks(pcm)
    assert b"".join(chunks) == pcm
    assert {len(chunk) for chunk in chunks[:-1]} == {REALTIME_RATE // 10 * 2}
    event = json.loads(append_event(chunks[0]))
    assert event["type"] == "input_audio_buffer.append"
    assert base64.b64decode(event["audio"]) == chunks[0]


def test_the_file_source_sends_the_audio_then_trailing_silence() -> None:
    pcm = bytes(REALTIME_RATE * 2 // 2)  # half a second

    async def collect() -> list[bytes]:
        return [chunk async for chunk in file_source(pcm, speed=1e9)]

    sent = b"".join(asyncio.run(collect()))
    assert len(sent) == len(pcm) + int(REALTIME_RATE * TRAILING_SILENCE_S) * 2


@pytest.mark.parametrize(
    ("server", "url"),
    [
        ("http://127.0.0.1:8000", "ws://127.0.0.1:8000/v1/realtime?intent=transcription"),
        ("https://asr.example/", "wss://asr.example/v1/realtime?intent=transcription"),
        ("127.0.0.1:9000", "ws://127.0.0.1:9000/v1/realtime?intent=transcription"),
        ("ws://h/v1/realtime?intent=transcription", "ws://h/v1/realtime?intent=transcription"),
    ],
)
def test_the_realtime_url_is_derived_from_the_server(server: str, url: str) -> None:
    assert realtime_url(server) == url


def test_a_url_that_is_not_http_or_ws_is_refused() -> None:
    with pytest.raises(LiveError):
        realtime_url("ftp://example/")


def test_the_session_update_asks_for_a_transcription_session_in_pcm16_24_khz() -> None:
    update = session_update(language="en", prompt="NATS")
    session = update["session"]
    assert update["type"] == "session.update"
    assert session["type"] == "transcription"
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["input"]["transcription"] == {"language": "en", "prompt": "NATS"}
    assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert session["include"] == ["item.input_audio_transcription.logprobs"]
    assert "transcription" not in json.dumps(session_update()["session"]["audio"]["input"]["transcription"])


def _turn_events(item_id: str, start_ms: int, deltas: list[str], completed: str) -> list[dict[str, Any]]:
    return [
        {"type": "input_audio_buffer.speech_started", "item_id": item_id, "audio_start_ms": start_ms},
        *({"type": DELTA, "item_id": item_id, "delta": delta} for delta in deltas),
        {"type": "input_audio_buffer.speech_stopped", "item_id": item_id, "audio_end_ms": start_ms + 900},
        {"type": "input_audio_buffer.committed", "item_id": item_id},
        {"type": COMPLETED, "item_id": item_id, "transcript": completed},
    ]


def test_events_fold_into_turns_in_spoken_order() -> None:
    session = LiveSession()
    events = [
        {"type": "session.created", "session": {"type": "transcription", "relisten": {"job_id": "job-1"}}},
        *_turn_events("b", 2000, [" second", " turn"], "Second turn."),
        *_turn_events("a", 0, [" the", " frist"], "The first."),
        {"type": "input_audio_buffer.speech_started", "item_id": "c", "audio_start_ms": 4000},
        {"type": DELTA, "item_id": "c", "delta": " still talking"},
        {"type": "input_audio_buffer.committed", "item_id": "c"},
    ]
    for index, event in enumerate(events):
        session.apply(event, float(index))
    assert session.job_id == "job-1"
    assert [turn.item_id for turn in session.ordered] == ["a", "b", "c"]
    assert session.turns["a"].delta_text == "the frist"
    assert session.transcript() == "The first. Second turn. still talking"
    assert session.transcript(completed_only=True) == "The first. Second turn."
    assert session.deltas_transcript() == "the frist second turn still talking"
    assert session.turns["b"].first_delta_at == 2.0  # the first delta was the third event
    assert [turn.item_id for turn in session.pending(want_refined=False)] == ["c"]
    # Once the server refines, turns completed but not refined count as pending too.
    assert {t.item_id for t in session.pending(want_refined=True)} == {"a", "b", "c"}


def test_a_refined_event_brings_words_and_corrections() -> None:
    session = LiveSession()
    for event in _turn_events("a", 0, [" the", " frist"], "The first."):
        session.apply(event)
    turn = session.apply(
        {
            "type": REFINED,
            "item_id": "a",
            "words": [{"word": " The", "start": 0.1, "end": 0.3, "probability": 0.9, "source": "first"}],
            "corrections": [
                {"before": "frist", "after": "first", "status": "accepted", "start": 0.3, "end": 0.7},
                {"original_text": "The", "corrected_text": "A", "status": "rejected"},
            ],
        }
    )
    assert turn is not None and turn.refined is not None
    assert [(c.before, c.after, c.status) for c in turn.corrections] == [
        ("frist", "first", "accepted"),
        ("The", "A", "rejected"),
    ]
    assert not session.pending(want_refined=True)


def test_errors_other_than_an_empty_final_commit_are_fatal() -> None:
    session = LiveSession()
    session.apply({"type": "error", "error": {"code": "input_audio_buffer_commit_empty", "message": "empty"}})
    assert not session.fatal_errors
    session.apply({"type": "error", "error": {"code": "invalid_api_key", "message": "no"}})
    assert [error["code"] for error in session.fatal_errors] == ["invalid_api_key"]


def test_a_refined_turn_shows_the_correction_struck_through_then_bold() -> None:
    session = LiveSession()
    for event in _turn_events("a", 0, [" the", " frist", " word"], "The first word."):
        session.apply(event)
    session.apply(
        {
            "type": REFINED,
            "item_id": "a",
            "words": [{"word": " word", "probability": 0.2}],
            "corrections": [{"before": "frist", "after": "first", "status": "accepted"}],
        }
    )
    text = render_turn(session.turns["a"])
    assert text.plain == "The frist first word."
    styles = {text.plain[span.start : span.end]: str(span.style) for span in text.spans}
    assert styles["frist"] == "dim strike"
    assert styles["first"] == "bold green"
    assert "underline" in styles["word."]
    console = Console(record=True, width=80, color_system=None)
    console.print(text)
    assert "first" in console.export_text()


def test_an_open_turn_shows_its_deltas() -> None:
    session = LiveSession()
    session.apply({"type": DELTA, "item_id": "x", "delta": " hello"})
    session.apply({"type": DELTA, "item_id": "x", "delta": " there"})
    assert render_turn(session.turns["x"]).plain == "hello there"


def _printed(terminal: bool, events: list[dict[str, Any]]) -> tuple[str, str]:
    import io

    from relisten.live_client import _Printer

    out, err = io.StringIO(), io.StringIO()
    printer = _Printer(
        Console(file=out, force_terminal=terminal, width=100, color_system="standard" if terminal else None),
        Console(file=err, force_terminal=False, width=100),
    )
    session = LiveSession()
    with printer:
        for event in events:
            printer.show(session, session.apply(event), event)
    printer.finish(session)
    return out.getvalue(), err.getvalue()


REFINED_TURN = [
    *_turn_events("a", 0, [" the", " frist"], "The first."),
    {"type": "conversation.item.done", "item": {"id": "a"}},  # about no turn by item_id: in between
    {
        "type": REFINED,
        "item_id": "a",
        "words": [],
        "corrections": [{"original_text": "frist", "corrected_text": "first.", "status": "accepted"}],
    },
    *_turn_events("b", 2000, [" and", " more"], "And more."),
]


def test_piped_output_is_one_plain_line_per_finished_turn() -> None:
    out, err = _printed(False, REFINED_TURN)
    # Turn b's refinement never came (as from a server that does not refine): printed at the end.
    assert out.splitlines() == ["The first.", "And more."]
    assert "accepted: 'frist' -> 'first.'" in err


def test_on_a_terminal_the_refined_line_replaces_the_deltas_with_the_correction_struck() -> None:
    turn_a = REFINED_TURN[:8]  # its six protocol events, item.done and its refinement
    out, _ = _printed(True, [*turn_a, {"type": DELTA, "item_id": "c", "delta": " still"}])
    last_frame = out[out.rfind("\r\x1b[2K") :]  # each redraw starts by clearing its lines
    assert "first." in last_frame and "still" in last_frame
    assert "\x1b[2;9mfrist" in last_frame  # the first-pass word dim and struck through
    assert "\x1b[3;37mthe frist" in out  # earlier: the deltas, in grey italics


def test_after_the_final_commit_an_open_turn_is_waited_for_unless_the_commit_was_empty() -> None:
    session = LiveSession()
    session.apply({"type": "input_audio_buffer.speech_started", "item_id": "z", "audio_start_ms": 0})
    session.apply({"type": DELTA, "item_id": "z", "delta": " last words"})
    assert not session.pending(want_refined=False)  # still being spoken: nothing to wait for yet
    session.audio_ended = True
    assert [turn.item_id for turn in session.pending(want_refined=False)] == ["z"]
    session.apply({"type": "error", "error": {"code": "input_audio_buffer_commit_empty", "message": "short"}})
    assert not session.pending(want_refined=False)
