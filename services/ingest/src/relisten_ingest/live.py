"""The live event stream of a job, ``GET /v1/jobs/{id}/events`` (Server-Sent Events): which pipeline
event becomes which stream event, and every payload. Pure; the I/O is in :mod:`relisten_ingest.feed`.

Events, in the order a client sees them (``data`` is one line of JSON; every event has an ``id``):

``state``
    Sent first, on every connection: the job as ``GET /v1/jobs/{id}`` shows it.
``first_pass``
    ``{"language", "duration_s", "text", "words": [{"word", "start", "end", "probability"}]}``,
    as soon as the first pass is stored (at once for a client that connects later). Word texts are
    the recogniser's own, often with a leading space; times in seconds.
``status``
    ``{"status", "progress"}`` whenever the stage or the overall progress (0..1) moves on.
    ``completed`` and ``failed`` are not sent as ``status``: they have their own events.
``clip``
    ``{"index", "count", "ok"}`` each time the second pass answers for one clip (``ok`` false:
    it failed and the first-pass words will be kept there).
``correction``
    One per re-listened window: ``{"start", "end", "trigger_confidence", "original_text",
    "corrected_text", "status": "accepted"|"rejected"|"unresolved", "reason", "backend", "words"}``
    where ``words`` are the final words whose midpoint lies in ``[start, end]`` (``{"word",
    "start", "end", "probability", "source": "first"|"second", "interpolated"}``). The merger
    reconciles all clips at once when the last one is in, so the corrections arrive together,
    just before ``completed``, not one by one while the clips are decoded (``clip`` events are
    the live signal of that).
``completed``
    ``{"transcript_url", "stats"}`` (stats as in the transcript; null if the transcript could not
    be read). The stream then ends.
``failed``
    ``{"error": {"code", "message"}}``. The stream then ends.

Between events the server sends a comment line (``: keep-alive``) every ``events_heartbeat_s``.
A client that reconnects simply gets ``state`` again and everything from there; there is no
resumption from ``Last-Event-ID``. A browser ``EventSource`` reconnects by itself when the stream
ends, so close it on ``completed`` or ``failed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
from relisten_contracts import (
    ClipCorrected,
    Correction,
    ErrorInfo,
    Event,
    FirstPass,
    JobFailed,
    JobMerged,
    JobView,
    Transcript,
    TranscriptWord,
    Word,
    WordsScored,
)

from relisten_ingest.domain import TERMINAL, apply_event

EVENT_NAMES: Final = ("state", "first_pass", "status", "clip", "correction", "completed", "failed")
FINAL_EVENTS: Final = frozenset({"completed", "failed"})

_json = msgspec.json.Encoder()


@dataclass(frozen=True)
class Frame:
    """One thing to send: a named event with JSON data, or (``event`` empty) a comment."""

    event: str
    data: Any = None
    comment: str = ""

    def encode(self, event_id: int) -> bytes:
        """The frame in the ``text/event-stream`` format."""
        if not self.event:
            return f": {self.comment}\n\n".encode()
        return b"id: %d\nevent: %s\ndata: %s\n\n" % (event_id, self.event.encode(), _json.encode(self.data))


@dataclass(frozen=True)
class LoadFirstPass:
    """Read the first pass from the data store and send it."""

    words_ref: str


@dataclass(frozen=True)
class Finish:
    """Send the job's end: corrections and ``completed`` (from the transcript), or ``failed``."""

    transcript_ref: str | None = None
    error: ErrorInfo | None = None


Action = Frame | LoadFirstPass | Finish


@dataclass
class FeedState:
    """What one client has been told about one job."""

    view: JobView
    first_pass_sent: bool = False
    finished: bool = False
    clips_sent: set[int] = field(default_factory=set)


def status_data(view: JobView) -> dict[str, Any]:
    return {"status": view.status, "progress": round(min(max(view.progress, 0.0), 1.0), 4)}


def follow(state: FeedState, event: Event) -> list[Action]:
    """What ``event`` tells this client, updating ``state``.

    The client's view starts at the snapshot it was sent, and projecting an event never moves a view
    backwards, so replayed events that the snapshot already covers produce nothing.
    """
    if event.job_id != state.view.id or state.finished or event.attempt < state.view.attempt:
        return []
    actions: list[Action] = []
    if isinstance(event, JobMerged):
        state.finished = True
        return [Finish(transcript_ref=event.transcript_ref)]
    if isinstance(event, JobFailed):
        state.finished = True
        return [Finish(error=event.error)]

    before = state.view
    after = apply_event(before, event) or before
    if (
        isinstance(event, ClipCorrected)
        and event.clip_index not in before.clips_done
        and event.clip_index not in state.clips_sent
    ):
        state.clips_sent.add(event.clip_index)
        count = after.clip_count if after.clip_count is not None else event.clip_count
        actions.append(Frame("clip", {"index": event.clip_index, "count": count, "ok": event.ok}))
    if after.status not in TERMINAL and status_data(after) != status_data(before):
        actions.append(Frame("status", status_data(after)))
    state.view = after
    if isinstance(event, WordsScored) and not state.first_pass_sent:
        state.first_pass_sent = True
        actions.append(LoadFirstPass(event.words_ref))
    return actions


def finish_from_view(state: FeedState, view: JobView) -> list[Action]:
    """End the stream from a terminal view when its final event was not (or no longer) in the stream."""
    if state.finished or view.status not in TERMINAL:
        return []
    state.finished = True
    state.view = view
    if view.status == "completed":
        return [Finish(transcript_ref=view.transcript_ref)]
    return [Finish(error=view.error or ErrorInfo(code="failed", message="the job failed"))]


def _plain_text(words: list[Word]) -> str:
    return " ".join(text for text in (w.word.strip() for w in words) if text)


def first_pass_data(first_pass: FirstPass) -> dict[str, Any]:
    return {
        "language": first_pass.language,
        "duration_s": round(first_pass.duration_s, 3),
        "text": _plain_text(first_pass.words),
        "words": [
            {
                "word": w.word,
                "start": round(w.start, 3),
                "end": round(w.end, 3),
                "probability": round(w.probability, 4),
            }
            for w in first_pass.words
        ],
    }


def _transcript_word(word: TranscriptWord) -> dict[str, Any]:
    return {
        "word": word.word,
        "start": round(word.start, 3),
        "end": round(word.end, 3),
        "probability": round(word.probability, 4),
        "source": word.source,
        "interpolated": word.interpolated,
    }


def words_within(words: list[TranscriptWord], start: float, end: float) -> list[TranscriptWord]:
    """The words whose midpoint lies in ``[start, end]``."""
    return [w for w in words if start <= (w.start + w.end) / 2 <= end]


def correction_data(correction: Correction, words: list[TranscriptWord]) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.to_builtins(correction)
    body["words"] = [_transcript_word(w) for w in words_within(words, correction.start, correction.end)]
    return body


def ending_frames(job_id: str, transcript: Transcript | None, *, jobs_path: str = "/v1/jobs") -> list[Frame]:
    """Every correction, then ``completed``."""
    url = f"{jobs_path}/{job_id}/transcript"
    if transcript is None:
        return [Frame("completed", {"transcript_url": url, "stats": None})]
    frames = [Frame("correction", correction_data(c, transcript.words)) for c in transcript.corrections]
    frames.append(Frame("completed", {"transcript_url": url, "stats": msgspec.to_builtins(transcript.stats)}))
    return frames


def failed_frame(error: ErrorInfo) -> Frame:
    return Frame("failed", {"error": {"code": error.code, "message": error.message}})
