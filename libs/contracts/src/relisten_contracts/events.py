"""Pipeline events. Frozen, keyword-only, tagged with a version; additive changes only.

Payloads carry Object Store references (object names), never audio.
"""

from typing import Literal

import msgspec

Stage = Literal["queued", "transcribing", "correcting", "merging", "completed", "failed"]
Correction = Literal["auto", "off"]
Task = Literal["transcribe", "translate"]


class JobOptions(msgspec.Struct, frozen=True, kw_only=True):
    """What the client asked for when it submitted the job; travels with every event."""

    language: str | None = None
    prompt: str | None = None
    correction: Correction = "auto"
    confidence_threshold: float = 0.6
    callback_url: str | None = None
    task: Task = "transcribe"
    """``translate``: English text out (Whisper's translate task with a multilingual model)."""


class ErrorInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A machine-readable code and a human message."""

    code: str
    message: str


class JobWarning(msgspec.Struct, frozen=True, kw_only=True):
    """Something the user should know about a transcript that still completed.

    ``code`` is machine-readable (``mostly_unsure``, ``language_mismatch``, ``possible_hallucination``, ...),
    ``message`` says it to a person.
    """

    code: str
    message: str


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every pipeline event."""

    job_id: str
    occurred_at: float = 0.0
    """Unix time at which the producer built the event (informational; not part of the message id)."""
    attempt: int = 0
    """0 for a job's first run; ``POST /v1/jobs/{id}/retry`` re-drives a failed job as attempt 1, 2, ...
    and every event of that run carries it (it is part of the message id, so a re-run's events are not
    dropped as duplicates of the failed run's)."""


class JobCreated(Event, frozen=True, kw_only=True, tag="job.created.v1"):
    """An upload passed validation and its normalised audio is stored."""

    filename: str
    original_ref: str
    audio_ref: str
    duration_s: float
    sample_rate: int = 16000
    options: JobOptions = JobOptions()
    created_at: float = 0.0
    source: Literal["upload", "live"] = "upload"
    """``live``: a finished realtime session (``GET /v1/realtime``); its first pass and transcript
    are stored already and its ``job.merged`` follows from ingest, so the pipeline does not run it."""


class JobProgress(Event, frozen=True, kw_only=True, tag="job.progress.v1"):
    """A stage started or moved on; progress is the fraction of that stage done (0..1)."""

    stage: Stage
    progress: float = 0.0
    message: str = ""


class WordsScored(Event, frozen=True, kw_only=True, tag="words.scored.v1"):
    """The first pass is done: every word with timestamps and probability is in ``words_ref``."""

    audio_ref: str
    words_ref: str
    language: str
    duration_s: float
    word_count: int
    first_pass_seconds: float
    engine: str
    options: JobOptions = JobOptions()


class ClipSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One stretch to re-listen to. Times are seconds in the job's audio; samples at 16 kHz."""

    index: int
    start_s: float
    end_s: float
    start_sample: int
    end_sample: int
    audio_ref: str
    flagged_word_indices: list[int]
    trigger_confidence: float
    context_prompt: str = ""
    word_first: int = 0
    word_last: int = 0
    """First-pass words ``[word_first, word_last)`` lie inside the clip."""
    whole: bool = False
    """A doubtful stretch: its second-pass words replace all of its first-pass words, not only the
    flagged ones (the merger's guards against a failed or empty answer still hold)."""


class ClipsReady(Event, frozen=True, kw_only=True, tag="clips.ready.v1"):
    """The uncertain stretches are cut. ``clips`` may be empty (nothing to correct)."""

    audio_ref: str
    words_ref: str
    plan_ref: str
    language: str
    duration_s: float
    first_pass_seconds: float
    words_flagged: int
    clips: list[ClipSpec]
    options: JobOptions = JobOptions()


class ClipCorrected(Event, frozen=True, kw_only=True, tag="clip.corrected.v1"):
    """The second pass answered for one clip (or finally failed: ``ok`` is False)."""

    clip_index: int
    clip_count: int
    plan_ref: str
    ok: bool
    backend: str
    result_key: str
    seconds: float = 0.0
    error: ErrorInfo | None = None
    options: JobOptions = JobOptions()


class JobMerged(Event, frozen=True, kw_only=True, tag="job.merged.v1"):
    """The final transcript is stored in ``transcript_ref``."""

    transcript_ref: str
    language: str
    duration_s: float
    text_preview: str
    corrections_accepted: int
    corrections_rejected: int
    corrections_unresolved: int
    words_flagged: int
    first_pass_seconds: float
    second_pass_seconds: float
    audio_redecoded_seconds: float
    options: JobOptions = JobOptions()
    warnings: list[JobWarning] = msgspec.field(default_factory=list)


class JobFailed(Event, frozen=True, kw_only=True, tag="job.failed.v1"):
    """A stage gave up on the job; it will not complete."""

    stage: str
    error: ErrorInfo
    options: JobOptions = JobOptions()


DeletionReason = Literal["requested", "retention"]


class JobDeleted(Event, frozen=True, kw_only=True, tag="job.deleted.v1"):
    """A finished job's audio, artefacts and view were removed: asked for by a client
    (``requested``) or because it outlived ``RELISTEN_INGEST_RETENTION_DAYS`` (``retention``)."""

    reason: DeletionReason
    status: Stage
    """What the job had come to (``completed`` or ``failed``) when it was deleted."""


class JobRetried(Event, frozen=True, kw_only=True, tag="job.retried.v1"):
    """A failed job is run again from its last stored artefact (``attempt`` is the new run's number).

    ``resume_from`` names the event republished to re-drive it: ``job.created`` (from the audio),
    ``words.scored`` (from the stored first pass) or ``clips.ready`` (from the stored clip plan).
    """

    resume_from: str
    previous_error: ErrorInfo | None = None


AnyEvent = (
    JobCreated
    | JobProgress
    | WordsScored
    | ClipsReady
    | ClipCorrected
    | JobMerged
    | JobFailed
    | JobDeleted
    | JobRetried
)
