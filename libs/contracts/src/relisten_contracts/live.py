"""Live transcription over core NATS request/reply: ingest asks, any asr or corrector replica answers.

A live session (``GET /v1/realtime``) lives in one ingest process, but its decoding does not: every
request carries the audio of the turn it is about, so whichever replica of the queue group takes it
can answer, and no replica keeps a session's state. Requests are core NATS (not JetStream): a live
answer that comes too late is worth nothing, so nothing is stored or redelivered; the asker gives up
after its timeout and the turn is reported failed (or keeps its first pass).

The subjects are outside the pipeline stream's ``relisten.>``: a request published on a subject the
stream captures would be answered by the stream's own publish acknowledgement first.

Audio is 16 kHz mono signed 16-bit little-endian PCM, raw bytes; payloads are MessagePack (JSON would
base64 the audio, a third more bytes). A turn is capped by ingest (``RELISTEN_LIVE_MAX_TURN_S``) so a
request stays well under NATS's default 1 MiB payload limit: 15 s of audio is 480 kB.
"""

from typing import Final, TypeVar

import msgspec

from relisten_contracts.documents import Correction, FirstPass, TranscriptWord
from relisten_contracts.events import ErrorInfo

LIVE_FIRST_PASS_SUBJECT: Final = "relisten-live.first_pass"
"""asr replicas answer here (queue group :data:`LIVE_ASR_QUEUE`) with a :class:`LiveFirstPassReply`."""
LIVE_REFINE_SUBJECT: Final = "relisten-live.refine"
"""corrector replicas answer here (queue group :data:`LIVE_CORRECTOR_QUEUE`) with a :class:`LiveRefineReply`."""
LIVE_ASR_QUEUE: Final = "relisten-asr"
LIVE_CORRECTOR_QUEUE: Final = "relisten-corrector"

LIVE_SAMPLE_RATE: Final = 16000


class LiveFirstPassRequest(msgspec.Struct, frozen=True, kw_only=True):
    """The first pass of one turn as heard so far (``final`` False: a partial, while the speaker talks)."""

    session_id: str
    turn_id: str
    audio: bytes
    """The turn's audio from its start, after ``context_s`` of the audio before it: 16 kHz mono pcm16."""
    context_s: float = 0.0
    """Seconds of session audio before the turn that lead ``audio``: decoded with the turn (Whisper
    hears the whole window anyway) so the turn's first words are heard in context, then dropped from
    the answer."""
    language: str | None = None
    prompt: str | None = None
    final: bool = False
    """The turn has ended: this answer is the turn's first pass (partials may be decoded more cheaply)."""
    expires_at: float = 0.0
    """Unix time after which the asker no longer waits (0: no deadline); a replica that gets to a
    request later answers ``expired`` without decoding, so an overloaded replica sheds stale work."""


class LiveFirstPassReply(msgspec.Struct, frozen=True, kw_only=True):
    """The turn's words only (midpoint at or after the context), times in seconds from the start of the
    turn's audio; ``duration_s`` is the turn's."""

    first_pass: FirstPass | None = None
    error: ErrorInfo | None = None


class LiveRefineRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Re-listen to the doubtful stretches of one finished turn."""

    session_id: str
    turn_id: str
    audio: bytes
    first_pass: FirstPass
    """The turn's final first pass (times relative to the turn's audio)."""
    prompt: str | None = None
    confidence_threshold: float = 0.6
    expires_at: float = 0.0
    """As in :class:`LiveFirstPassRequest`."""
    previous_text: str = ""
    """The session's text before this turn (its tail): the second pass is prompted with the words
    before each window, as a file's is, and for a window early in the turn those are the previous
    turns' words."""
    session_audio_s: float = 0.0
    """Seconds of session audio up to the end of this turn, and ``session_redecoded_s`` the seconds
    its earlier turns had re-listened to: the re-decode budget is the session's (the clip policy's
    fraction of all the audio so far, less what was spent), as a file's is the whole job's, so a
    short turn can spend what quiet turns before it left. 0: the turn's own fraction."""
    session_redecoded_s: float = 0.0


class LiveRefineReply(msgspec.Struct, frozen=True, kw_only=True):
    """The turn's words after reconciliation (times relative to the turn's audio) and one correction
    record per re-listened window."""

    words: list[TranscriptWord] = msgspec.field(default_factory=list)
    corrections: list[Correction] = msgspec.field(default_factory=list)
    words_flagged: int = 0
    seconds: float = 0.0
    """Time the second pass took."""
    audio_redecoded_seconds: float = 0.0
    backend: str = ""
    error: ErrorInfo | None = None


_encoder = msgspec.msgpack.Encoder()
T = TypeVar("T")


def encode_live(message: msgspec.Struct) -> bytes:
    return _encoder.encode(message)


def decode_live(data: bytes, type: type[T]) -> T:
    """Raises ``msgspec.DecodeError`` / ``msgspec.ValidationError`` on a malformed message."""
    return msgspec.msgpack.decode(data, type=type)
