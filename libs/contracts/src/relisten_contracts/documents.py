"""Documents stored in the Object Store and KV (too large or too stateful to travel in events)."""

from collections.abc import Sequence
from typing import Any, Literal

import msgspec

from relisten_contracts.events import ErrorInfo, JobMerged, JobOptions, JobWarning, Stage, WordsScored


class Word(msgspec.Struct, frozen=True, kw_only=True):
    """A recognised word; times in seconds from the start of the job's audio."""

    word: str
    start: float
    end: float
    probability: float
    raw_probability: float | None = None
    """The model's own probability when ``probability`` is calibrated (``relisten_contracts.calibration``);
    None when ``probability`` is the model's own."""


class Segment(msgspec.Struct, frozen=True, kw_only=True):
    """A first-pass segment with the decoder's own signals, words ``[first_word, last_word)``."""

    start: float
    end: float
    text: str
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    first_word: int
    last_word: int


class LanguageCandidate(msgspec.Struct, frozen=True, kw_only=True):
    language: str
    probability: float


class LanguageWindow(msgspec.Struct, frozen=True, kw_only=True):
    """What one stretch of speech sounded like; times in seconds of the job's audio."""

    start: float
    end: float
    language: str
    probability: float


class LanguageDetection(msgspec.Struct, frozen=True, kw_only=True):
    """Spoken-language identification over a few speech windows spread through the recording."""

    language: str
    probability: float
    candidates: list[LanguageCandidate]
    """The most likely languages, best first (probabilities averaged over the windows)."""
    windows: list[LanguageWindow]
    """Each window's own answer: windows that disagree confidently mean a mixed-language recording."""
    model: str
    seconds: float
    mixed: bool = False
    segments: list[LanguageWindow] = msgspec.field(default_factory=list)
    """A mixed recording's first-pass segments, each with the language it was heard in."""


class Routing(msgspec.Struct, frozen=True, kw_only=True):
    """Which passes a job goes through and why (decided by the asr service from its language)."""

    task: str
    language: str
    """The spoken language the first pass was told (or detected)."""
    first_pass: str
    """Engine of the first pass."""
    second_pass: bool
    """Whether doubtful stretches go to the second pass (skipped for languages it is not set up for)."""
    reason: str


class FirstPass(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the first pass heard."""

    language: str
    duration_s: float
    words: list[Word]
    segments: list[Segment]
    engine: str
    seconds: float
    warnings: list[JobWarning] = msgspec.field(default_factory=list)
    """What the first pass found suspicious about itself (carried into the transcript)."""
    language_detection: LanguageDetection | None = None
    routing: Routing | None = None


def routed_options(options: JobOptions, first: FirstPass) -> JobOptions:
    """The options the next stages see: the second pass is off where the routing skipped it."""
    if first.routing is not None and not first.routing.second_pass and options.correction != "off":
        return msgspec.structs.replace(options, correction="off")
    return options


def words_scored(
    job_id: str, first: FirstPass, *, audio_ref: str, words_ref: str, options: JobOptions, attempt: int = 0
) -> WordsScored:
    """The ``words.scored`` event that announces a stored first pass: sent by the asr service, and again
    when a retry re-drives a job from its first pass (with the routing's options either way)."""
    return WordsScored(
        job_id=job_id,
        audio_ref=audio_ref,
        words_ref=words_ref,
        language=first.language,
        duration_s=first.duration_s,
        word_count=len(first.words),
        first_pass_seconds=first.seconds,
        engine=first.engine,
        options=routed_options(options, first),
        attempt=attempt,
    )


class ClipResult(msgspec.Struct, frozen=True, kw_only=True):
    """The second pass's answer for one clip; word times are absolute, None when the backend gives none."""

    clip_index: int
    ok: bool
    backend: str
    text: str
    words: list[Word] | None = None
    seconds: float = 0.0
    audio_seconds: float = 0.0
    error: ErrorInfo | None = None


class TranscriptWord(msgspec.Struct, frozen=True, kw_only=True):
    word: str
    start: float
    end: float
    probability: float
    source: Literal["first", "second"] = "first"
    interpolated: bool = False
    raw_probability: float | None = None
    """The first-pass model's own probability when ``probability`` is calibrated; None otherwise."""


class TranscriptSegment(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    start: float
    end: float
    text: str
    first_word: int
    last_word: int


class Correction(msgspec.Struct, frozen=True, kw_only=True):
    start: float
    end: float
    trigger_confidence: float
    original_text: str
    corrected_text: str
    status: Literal["accepted", "rejected", "unresolved"]
    reason: str
    backend: str


class TranscriptStats(msgspec.Struct, frozen=True, kw_only=True):
    first_pass_seconds: float
    second_pass_seconds: float
    audio_redecoded_seconds: float
    words_flagged: int
    corrections_accepted: int
    corrections_rejected: int
    corrections_unresolved: int = 0


def first_pass_words(first: FirstPass) -> list[TranscriptWord]:
    """A first pass's words as transcript words, unchanged (source ``first``): the words of a live
    turn that was not refined, as ingest keeps them and the corrector answers them."""
    return [
        TranscriptWord(
            word=w.word,
            start=w.start,
            end=w.end,
            probability=w.probability,
            raw_probability=w.raw_probability,
        )
        for w in first.words
    ]


def transcript_stats(
    *,
    first_pass_seconds: float,
    second_pass_seconds: float,
    audio_redecoded_seconds: float,
    words_flagged: int,
    corrections: Sequence[Correction],
) -> TranscriptStats:
    """A transcript's stats: the times rounded to milliseconds, the corrections counted by status (the
    file pipeline's merger and a live session's transcript count them alike)."""
    return TranscriptStats(
        first_pass_seconds=round(first_pass_seconds, 3),
        second_pass_seconds=round(second_pass_seconds, 3),
        audio_redecoded_seconds=round(audio_redecoded_seconds, 3),
        words_flagged=words_flagged,
        corrections_accepted=sum(c.status == "accepted" for c in corrections),
        corrections_rejected=sum(c.status == "rejected" for c in corrections),
        corrections_unresolved=sum(c.status == "unresolved" for c in corrections),
    )


def merged_stats(event: JobMerged) -> TranscriptStats:
    """The transcript's stats as ``job.merged`` carries them (flat, one field each, for compatibility
    with the events already written): the one way back from the event to :class:`TranscriptStats`."""
    return TranscriptStats(**{name: getattr(event, name) for name in TranscriptStats.__struct_fields__})


def stats_fields(stats: TranscriptStats) -> dict[str, Any]:
    """``stats`` as the flat fields of a ``job.merged`` (``JobMerged(**stats_fields(stats), ...)``)."""
    return {name: getattr(stats, name) for name in TranscriptStats.__struct_fields__}


class Transcript(msgspec.Struct, frozen=True, kw_only=True):
    """The final, merged transcript of a job."""

    job_id: str
    text: str
    language: str
    duration_s: float
    words: list[TranscriptWord]
    segments: list[TranscriptSegment]
    corrections: list[Correction]
    stats: TranscriptStats
    warnings: list[JobWarning] = msgspec.field(default_factory=list)
    language_detection: LanguageDetection | None = None
    routing: Routing | None = None


class JobView(msgspec.Struct, kw_only=True):
    """What ``GET /v1/jobs/{id}`` shows; kept in KV by ingest, built from the events."""

    id: str
    status: Stage
    progress: float
    error: ErrorInfo | None
    created_at: float
    updated_at: float
    filename: str = ""
    duration_s: float = 0.0
    options: JobOptions = JobOptions()
    transcript_ref: str | None = None
    clip_count: int | None = None
    clips_done: list[int] = msgspec.field(default_factory=list)
    attempt: int = 0
    """The run the view follows: 0, then 1, 2, ... after each ``POST /v1/jobs/{id}/retry``."""
    attempt_started_at: float = 0.0
    """When the current run began (the job's creation for run 0); the watchdog's deadline counts from it."""


class AsrCapabilities(msgspec.Struct, frozen=True, kw_only=True):
    """What the asr service's configuration can do, stored by it at start-up (``ASR_CAPABILITIES_REF`` in
    the data store) so that ingest can refuse, at submission, a language nothing here transcribes."""

    languages: list[str]
    """Whisper language codes some configured first-pass model transcribes."""
    translate: bool
    """Whether a multilingual model is there for ``task=translate``."""
    engines: list[str]
    updated_at: float = 0.0
