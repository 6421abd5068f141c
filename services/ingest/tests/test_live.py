"""Which pipeline event becomes which stream event, and how frames look on the wire (pure)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from relisten_contracts import ErrorInfo, JobView
from relisten_ingest.domain import apply_event
from relisten_ingest.live import (
    FeedState,
    Finish,
    Frame,
    LoadFirstPass,
    ending_frames,
    finish_from_view,
    follow,
    words_within,
)

from .fake_pipeline import make_transcript
from .test_projector import Events


def start(job: Events) -> FeedState:
    view = apply_event(None, job.created())
    assert view is not None
    return FeedState(view=view)


def names(actions: Sequence[object]) -> list[str]:
    return [a.event if isinstance(a, Frame) else type(a).__name__ for a in actions]


def test_frames_on_the_wire() -> None:
    frame = Frame("status", {"status": "transcribing", "progress": 0.5})
    assert frame.encode(7) == b'id: 7\nevent: status\ndata: {"status":"transcribing","progress":0.5}\n\n'
    assert Frame("", comment="keep-alive").encode(8) == b": keep-alive\n\n"


def test_a_whole_job() -> None:
    job = Events()
    state = start(job)
    assert names(follow(state, job.progress("transcribing", 0.5))) == ["status"]
    scored = follow(state, job.scored())
    assert names(scored) == ["status", "LoadFirstPass"]
    assert scored[1] == LoadFirstPass("w")
    assert names(follow(state, job.ready(2))) == []
    clip = follow(state, job.corrected(1, 2))
    assert clip[0] == Frame("clip", {"index": 1, "count": 2, "ok": True})
    assert names(follow(state, job.corrected(1, 2))) == []  # duplicate
    assert names(follow(state, job.corrected(0, 2))) == ["clip", "status"]
    assert follow(state, job.merged()) == [Finish(transcript_ref=f"{job.job_id}/transcript.json")]
    assert state.finished
    assert follow(state, job.failed()) == []


def test_events_of_other_jobs_and_old_events_say_nothing() -> None:
    job, other = Events(), Events()
    state = start(job)
    follow(state, job.progress("transcribing", 0.9))
    assert follow(state, other.progress("transcribing", 0.5)) == []
    assert follow(state, job.progress("transcribing", 0.2)) == []


def test_a_snapshot_covers_what_it_already_shows() -> None:
    job = Events()
    view: JobView | None = None
    events = [job.created(), job.scored(), job.ready(2), job.corrected(0, 2)]
    for event in events:
        view = apply_event(view, event)
    assert view is not None
    state = FeedState(view=view)
    replayed = [a for event in events for a in follow(state, event)]
    assert names(replayed) == ["LoadFirstPass"]  # the first pass is not in the view: it is sent


def test_failure() -> None:
    job = Events()
    state = start(job)
    assert follow(state, job.failed()) == [
        Finish(error=ErrorInfo(code="correcting_failed", message="backend down"))
    ]


def test_finishing_from_a_terminal_view() -> None:
    job = Events()
    state = start(job)
    assert finish_from_view(state, state.view) == []
    done = apply_event(state.view, job.merged())
    assert done is not None
    assert finish_from_view(state, done) == [Finish(transcript_ref=done.transcript_ref)]
    assert finish_from_view(state, done) == []


def test_ending_frames() -> None:
    transcript = make_transcript("j")
    frames = ending_frames("j", transcript)
    assert [f.event for f in frames] == ["correction", "correction", "completed"]
    assert frames[0].data["words"] == [
        {
            "word": " Quilter",
            "start": 0.4,
            "end": 0.9,
            "probability": 0.88,
            "source": "second",
            "interpolated": False,
        }
    ]
    assert frames[2].data["transcript_url"] == "/v1/jobs/j/transcript"
    assert json.loads(json.dumps(frames[2].data["stats"])) == {
        "first_pass_seconds": 0.5,
        "second_pass_seconds": 0.8,
        "audio_redecoded_seconds": 1.5,
        "words_flagged": 3,
        "corrections_accepted": 1,
        "corrections_rejected": 1,
        "corrections_unresolved": 0,
    }
    assert ending_frames("j", None) == [
        Frame("completed", {"transcript_url": "/v1/jobs/j/transcript", "stats": None})
    ]


def test_words_within_uses_midpoints() -> None:
    words = make_transcript("j").words
    assert [w.word for w in words_within(words, 0.3, 0.9)] == [" Quilter"]
    assert [w.word for w in words_within(words, 3.5, 10)] == [" Welcome."]
