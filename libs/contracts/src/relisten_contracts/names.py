"""Names shared by every service: the stream, its subjects, the KV and Object Store buckets."""

from enum import StrEnum

STREAM_NAME = "RELISTEN"
SUBJECT_PREFIX = "relisten"
STREAM_SUBJECTS = [f"{SUBJECT_PREFIX}.>"]

JOBS_BUCKET = "relisten-jobs"
"""KV: the job view (written by ingest only)."""
CLIPS_BUCKET = "relisten-clips"
"""KV: second-pass results per clip (written by the corrector, read by the merger)."""
NOTIFY_BUCKET = "relisten-notify"
"""KV: delivery latches of the notifier, so a redelivered event is not announced twice."""
RUNTIME_BUCKET = "relisten-runtime"
"""KV: bookkeeping of the workers (deliveries handed back on shutdown, so a restart does not count
as a failed attempt)."""
AUDIO_BUCKET = "relisten-audio"
"""Object Store: original uploads, normalised audio and clips."""
DATA_BUCKET = "relisten-data"
"""Object Store: first-pass words, clip plans and final transcripts."""


class Subject(StrEnum):
    """Subjects of the pipeline events, one per event type."""

    JOB_CREATED = f"{SUBJECT_PREFIX}.job.created"
    JOB_PROGRESS = f"{SUBJECT_PREFIX}.job.progress"
    WORDS_SCORED = f"{SUBJECT_PREFIX}.words.scored"
    CLIPS_READY = f"{SUBJECT_PREFIX}.clips.ready"
    CLIP_CORRECTED = f"{SUBJECT_PREFIX}.clip.corrected"
    JOB_MERGED = f"{SUBJECT_PREFIX}.job.merged"
    JOB_FAILED = f"{SUBJECT_PREFIX}.job.failed"
    JOB_RETRIED = f"{SUBJECT_PREFIX}.job.retried"


def subject_for(tag: str) -> Subject:
    """Subject of an event given its versioned tag (``"words.scored.v1"`` -> ``relisten.words.scored``)."""
    base = tag.rsplit(".v", 1)[0]
    return Subject(f"{SUBJECT_PREFIX}.{base}")
