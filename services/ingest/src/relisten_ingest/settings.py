"""Settings of the ingest service (``RELISTEN_INGEST_<FIELD>``; the old ``RELISTEN_<FIELD>`` names still
work, deprecated): where the API listens and what it accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode
from relisten_runtime.settings import CommonSettings

GIB = 1024**3


# relisten_runtime has no py.typed: checked on its own, this package sees CommonSettings as Any.
class IngestSettings(CommonSettings):
    """HTTP listener, upload limits and scratch space of the ingest API."""

    service: ClassVar[str | None] = "ingest"
    deprecated_unprefixed: ClassVar[bool] = True

    host: str = Field("127.0.0.1", description="Address the HTTP API binds to (0.0.0.0 in a container).")
    port: int = Field(8000, ge=0, le=65535, description="Port of the HTTP API.")
    max_upload_bytes: int = Field(
        2 * GIB,
        gt=0,
        json_schema_extra={"shown_default": "`2147483648` (2 GiB)"},
        description=(
            "Largest accepted request body in bytes (the file plus the few form fields); checked "
            "against Content-Length first and again while the body streams in."
        ),
    )
    max_duration_s: float = Field(
        4 * 3600.0,
        gt=0,
        json_schema_extra={"shown_default": "`14400` (4 h)"},
        description="Longest accepted audio in seconds, measured by counting decoded samples.",
    )
    tmp_dir: Path | None = Field(
        None,
        description=(
            "Scratch directory for uploads being received and normalised (needs room for about "
            "twice the largest upload); unset: the system temporary directory."
        ),
    )
    decode_concurrency: int = Field(
        2, ge=1, description="Uploads decoded at the same time; decoding is CPU-bound and runs in threads."
    )
    max_backlog_audio_s: float = Field(
        0.0,
        ge=0,
        description=(
            "Admission control: once the audio of unfinished jobs exceeds this many seconds, uploads get "
            "503 backlog_full with Retry-After. 0: no limit."
        ),
    )
    max_prompt_chars: int = Field(
        4000, ge=0, description="Longest accepted glossary/context prompt, in characters."
    )
    ready_timeout_s: float = Field(
        2.0,
        gt=0,
        description="How long /readyz waits for NATS to describe the stream and buckets.",
        json_schema_extra={"internal": True},
    )
    access_log: bool = Field(True, description="Log one line per HTTP request.")
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description=(
            "Comma-separated bearer keys. When set, every /v1 route asks for "
            "``Authorization: Bearer <key>``; the event stream also takes ``?access_token=<key>``. "
            "Unset: the API is open."
        ),
    )
    openai_timeout_s: float = Field(
        3600.0,
        gt=0,
        description=(
            "How long POST /v1/audio/transcriptions waits for its job; after that it answers 504 "
            "naming the job, which goes on and can be followed under /v1/jobs."
        ),
    )
    events_heartbeat_s: float = Field(
        15.0,
        gt=0,
        description="Seconds between keep-alive comments on an idle job event stream.",
        json_schema_extra={"internal": True},
    )
    events_replay_margin_s: float = Field(
        60.0,
        ge=0,
        description=(
            "An event stream replays the pipeline events from this long before the job was created "
            "(allows for clock skew between hosts)."
        ),
        json_schema_extra={"internal": True},
    )

    job_deadline_base_s: float = Field(
        3600.0,
        gt=0,
        description=(
            "The watchdog fails a job (code ``stuck``) still running this long after its run began, "
            "plus RELISTEN_INGEST_JOB_DEADLINE_PER_AUDIO_S per second of its audio."
        ),
    )
    job_deadline_per_audio_s: float = Field(
        3.0,
        ge=0,
        description="Seconds of deadline per second of audio, added to RELISTEN_INGEST_JOB_DEADLINE_BASE_S.",
    )
    job_sweep_interval_s: float = Field(
        60.0, gt=0, description="How often the watchdog looks for jobs past their deadline."
    )
    watchdog: bool = Field(
        True,
        description=(
            "Run the watchdog in this ingest process (JetStream max-deliveries and terminated "
            "advisories, and the deadline sweep). Replicas may all run it."
        ),
    )

    rate_limit_per_min: int = Field(
        0,
        ge=0,
        description=(
            "Requests a minute to /v1 routes per API key (per client address without keys), in "
            "bursts of as many; beyond it 429 rate_limited with Retry-After. 0: no limit (the default: the "
            "web page and a polling script on a one-person box would trip a low limit). Per ingest process."
        ),
    )
    max_concurrent_uploads: int = Field(
        16,
        ge=0,
        description=(
            "Uploads received at once by this process; one more answers 503 too_many_uploads with "
            "Retry-After before its body is read. 0: no limit."
        ),
    )
    max_event_streams: int = Field(
        256,
        ge=0,
        description="Open GET /v1/jobs/{id}/events streams; one more answers 503 too_many_streams. 0: no limit.",
    )
    max_openai_waits: int = Field(
        64,
        ge=0,
        description=(
            "POST /v1/audio/transcriptions requests waiting for their job at once; one more answers "
            "503 too_many_waits before its upload is read. 0: no limit."
        ),
    )
    upload_idle_timeout_s: float = Field(
        60.0,
        gt=0,
        description="An upload whose body sends nothing for this long is dropped with 408 upload_timeout.",
    )
    retention_days: float | None = Field(
        None,
        gt=0,
        description=(
            "Finished jobs (completed or failed) whose last change is older than this many days are "
            "deleted (audio, artefacts, view), each recorded as job.deleted with reason retention. "
            "Unset: keep everything."
        ),
    )
    retention_sweep_interval_s: float = Field(
        3600.0,
        gt=0,
        description=(
            "How often ingest looks for jobs past RELISTEN_INGEST_RETENTION_DAYS, and for second-pass answers "
            "and delivery latches written for a job after its deletion."
        ),
    )

    # --- live sessions (GET /v1/realtime) -------------------------------------------------------
    max_live_sessions: int = Field(
        16,
        ge=0,
        description=(
            "Realtime sessions (GET /v1/realtime) open at once in this process; one more gets an error "
            "event too_many_sessions and is closed (1013). 0: no limit."
        ),
    )
    live_partial_interval_s: float = Field(
        0.3,
        gt=0,
        description=(
            "While a turn is spoken, its (cheap) partial pass is asked for again after this much new "
            "audio. At most one is in flight per session: audio that comes meanwhile goes with the next. "
            "On make bench-live, 0.3 against 0.6 took the first delta's median from 1.10 s to 0.84 s."
        ),
    )
    live_first_partial_s: float = Field(
        0.5,
        gt=0,
        le=5.0,
        description=(
            "A turn's first partial pass is asked for after this much speech (counted from where the VAD "
            "heard it start, after the prefix padding; from the turn's start without server VAD). A partial "
            "pass is cheap (greedy, the encoder sized to the audio), so an early one costs little."
        ),
    )
    live_partial_context_s: float = Field(
        2.0,
        ge=0,
        le=20.0,
        description=(
            "Seconds of the session's audio before a turn that its partial passes are decoded with (the "
            "final pass gets RELISTEN_LIVE_CONTEXT_S): a partial only makes deltas, and every second of "
            "context makes its encoder pass longer."
        ),
    )
    live_first_partial_context_s: float = Field(
        0.0,
        ge=0,
        le=20.0,
        description=(
            "Seconds of context (as RELISTEN_INGEST_LIVE_PARTIAL_CONTEXT_S) of a turn's partial passes until its "
            "first delta went out. With the earlier speech before a turn's first half second, tiny.en often "
            "wrote only that speech, or timed the turn's first words into it, and the turn sent nothing for a "
            "second or more. Replayed (python -m relisten.replay_deltas), 0 against 2: first delta p90 0.93 s -> "
            "0.66 s on tuning, 1.20 s -> 0.90 s on validation; deltas-only WER +0.59 and +0.56 points (intervals "
            "include zero)."
        ),
    )
    live_sure_probability: float = Field(
        0.8,
        ge=0,
        le=1.0,
        description=(
            "A word of a partial pass is also sent at once when it and every word before it have at least "
            "this probability and a word follows it in the same pass (the last word heard may be cut off). "
            "1: only agreement or RELISTEN_LIVE_SETTLE_S sends words."
        ),
    )
    live_first_delta_s: float = Field(
        0.5,
        ge=0,
        le=10.0,
        description=(
            "Once a turn's speech has lasted this long and nothing of it was sent, a partial pass's words "
            "but its last are sent whatever their probability, so the first words of a turn do not wait on "
            "agreement (the completed text still comes from the final pass). On make bench-live, same "
            "load, 0.5 against off took the first delta's median from 0.98 s to 0.80 s (p90 1.48 s and "
            "1.45 s: the slow turns wait on the previous turn's final pass) and the deltas-only WER from "
            "21.8 % to 22.4 %. 0: off."
        ),
    )
    live_context_s: float = Field(
        10.0,
        ge=0,
        le=20.0,
        description=(
            "Seconds of the session's audio before a turn that its first passes are decoded with (and "
            "whose words are then dropped): measured on three validation recordings cut into turns by the "
            "VAD, tiny.en's WER was 15.6 % without and 12.6 % with 10 s (12.3 % decoding each recording whole)."
        ),
    )
    live_settle_s: float = Field(
        0.3,
        ge=0,
        description=(
            "A word of a partial pass is sent as a delta at once when at least this much audio follows "
            "it; otherwise once two partial passes in a row agree on it."
        ),
    )
    live_max_turn_s: float = Field(
        15.0,
        ge=2.0,
        le=28.0,
        description=(
            "A turn (speech between pauses, or between manual commits) is committed when it reaches this "
            "length, cut at its quietest point: each request then carries at most this much audio."
        ),
    )
    live_request_timeout_s: float = Field(
        10.0,
        gt=0,
        description=(
            "How long a live first pass or refinement is waited for over NATS; past it the turn gets "
            "conversation.item.input_audio_transcription.failed (or keeps its first pass) and the session goes on."
        ),
    )
    live_max_delay_s: float = Field(
        3.0,
        gt=0,
        description=(
            "When a finished turn has waited this long (or two more turns are queued behind it), the session "
            "sends relisten.session.degraded and completes turns with first-pass text until it catches up."
        ),
    )
    live_refine: bool = Field(
        True,
        description=(
            "Re-listen to the doubtful stretches of each finished turn (second pass) before "
            "completing it; off: turns complete with first-pass text."
        ),
    )
    live_session_budget: bool = Field(
        True,
        description=(
            "A turn's refinement may spend what the session has left of its re-decode budget (the clip "
            "policy's fraction, a fifth, of all the audio so far, less what earlier turns re-listened to), as "
            "a file's windows share the whole job's; off: each turn only its own fraction, which leaves a "
            "turn of a few seconds no room for a single window."
        ),
    )
    live_session_idle_s: float = Field(
        300.0,
        gt=0,
        description="A realtime session that sends nothing for this long is closed (1000).",
    )

    @field_validator("tmp_dir", "retention_days", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @property
    def max_samples(self) -> int:
        """The duration limit in samples of the normalised 16 kHz audio."""
        return int(self.max_duration_s * 16000)
