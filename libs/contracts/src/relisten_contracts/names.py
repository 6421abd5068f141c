"""Names shared by every service: the stream, its subjects, the KV and Object Store buckets, and the
name of every object and key a job leaves behind (so that deleting a job can find all of them)."""

import base64
import re
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
as a failed attempt) and of ingest (jobs deleted lately); entries expire after a week."""
AUDIO_BUCKET = "relisten-audio"
"""Object Store: original uploads, normalised audio and clips."""
DATA_BUCKET = "relisten-data"
"""Object Store: first-pass words, clip plans and final transcripts."""
IDEMPOTENCY_BUCKET = "relisten-idempotency"
"""KV: ``Idempotency-Key`` claims of ingest (which job a client's key created); entries expire."""
IDEMPOTENCY_TTL_S = 24 * 3600
"""How long an ``Idempotency-Key`` is remembered."""


class Subject(StrEnum):
    """Subjects of the pipeline events, one per event type."""

    JOB_CREATED = f"{SUBJECT_PREFIX}.job.created"
    JOB_PROGRESS = f"{SUBJECT_PREFIX}.job.progress"
    WORDS_SCORED = f"{SUBJECT_PREFIX}.words.scored"
    CLIPS_READY = f"{SUBJECT_PREFIX}.clips.ready"
    CLIP_CORRECTED = f"{SUBJECT_PREFIX}.clip.corrected"
    JOB_MERGED = f"{SUBJECT_PREFIX}.job.merged"
    JOB_FAILED = f"{SUBJECT_PREFIX}.job.failed"
    JOB_DELETED = f"{SUBJECT_PREFIX}.job.deleted"
    JOB_RETRIED = f"{SUBJECT_PREFIX}.job.retried"


def subject_for(tag: str) -> Subject:
    """Subject of an event given its versioned tag (``"words.scored.v1"`` -> ``relisten.words.scored``)."""
    base = tag.rsplit(".v", 1)[0]
    return Subject(f"{SUBJECT_PREFIX}.{base}")


ASR_CAPABILITIES_REF = "service/asr-capabilities.json"
"""Object (in the data store) where the asr service records what languages and tasks it can do."""


# ---------------------------------------------------------------------------------------------
# What one job stores. Every object name starts with ``<job id>/`` and every KV key of the clips and
# notify buckets with ``<job token>.``; deletion (ingest) uses these same functions.


def original_object(job_id: str) -> str:
    """``relisten-audio``: the upload as received."""
    return f"{job_id}/original"


def audio_object(job_id: str) -> str:
    """``relisten-audio``: the normalised 16 kHz mono WAV."""
    return f"{job_id}/audio.wav"


def clip_object(job_id: str, index: int) -> str:
    """``relisten-audio``: one clip cut for the second pass."""
    return f"{job_id}/clips/{index:04d}.wav"


def first_pass_object(job_id: str) -> str:
    """``relisten-data``: the first pass (words, segments, signals)."""
    return f"{job_id}/first_pass.json"


def plan_object(job_id: str) -> str:
    """``relisten-data``: the clip plan (the ``clips.ready`` event as stored)."""
    return f"{job_id}/plan.json"


def transcript_object(job_id: str) -> str:
    """``relisten-data``: the final transcript."""
    return f"{job_id}/transcript.json"


def clip_result_key(job_id: str, clip_index: int) -> str:
    """``relisten-clips``: the second pass's answer for one clip."""
    return f"{job_id}.{clip_index}"


_PLAIN_TOKEN = re.compile(r"[A-Za-z0-9_-]+")


def job_token(job_id: str) -> str:
    """``job_id`` itself when it is made of ``[A-Za-z0-9_-]`` only, otherwise ``=`` + its unpadded
    URL-safe base64: a valid KV key token (no ``.``) that no other job id shares."""
    if _PLAIN_TOKEN.fullmatch(job_id):
        return job_id
    return "=" + base64.urlsafe_b64encode(job_id.encode()).decode("ascii").rstrip("=")


def notify_key_prefix(job_id: str) -> str:
    """``relisten-notify``: every delivery latch of a job starts with this (``<token>.``)."""
    return f"{job_token(job_id)}."


def deleted_marker_key(job_id: str) -> str:
    """``relisten-runtime``: left by a deletion, so that a replayed ``job.created`` of that job (JetStream
    delivers at least once) does not bring its view back."""
    return f"deleted.{job_token(job_id)}"
