"""Pure rules of ingest: job options from form fields, the job view projection, and how a view is shown.

No I/O, no asyncio, no broker imports: everything here is a function of its arguments.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

from msgspec.structs import replace
from relisten_contracts import (
    ClipCorrected,
    ClipsReady,
    Event,
    JobCreated,
    JobFailed,
    JobMerged,
    JobOptions,
    JobProgress,
    JobRetried,
    JobView,
    Stage,
    WordsScored,
)
from relisten_runtime.addresses import literal_internal_host, redact_url

# ---------------------------------------------------------------------------------------------
# Job options
# ---------------------------------------------------------------------------------------------

OPTION_FIELDS: Final = ("language", "prompt", "correction", "confidence_threshold", "callback_url", "task")
DEFAULT_CONFIDENCE_THRESHOLD: Final = 0.6
MAX_CALLBACK_URL_CHARS: Final = 2048
MAX_FILENAME_CHARS: Final = 255

# ISO 639-1/-3 primary subtag with optional BCP 47 region/script subtags ("en", "yue", "en-US",
# "zh-Hant"); the recognisers take the primary subtag only.
_LANGUAGE = re.compile(r"^([A-Za-z]{2,3})(?:[-_][A-Za-z0-9]{2,8})*$")
_AUTO_LANGUAGE: Final = frozenset({"", "auto", "detect"})


class OptionError(ValueError):
    """A form field holds a value the pipeline cannot honour."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = f"{field}: {message}"


def normalise_language(value: str) -> str | None:
    """``"en-US"`` -> ``"en"``; ``""``/``"auto"`` -> None (let the first pass detect it)."""
    text = value.strip()
    if text.lower() in _AUTO_LANGUAGE:
        return None
    match = _LANGUAGE.match(text)
    if not match:
        raise OptionError(
            "language", f"{text[:40]!r} is not a language code (ISO 639-1 such as 'en', or 'auto')"
        )
    return match.group(1).lower()


def parse_confidence_threshold(value: str) -> float:
    text = value.strip()
    if not text:
        return DEFAULT_CONFIDENCE_THRESHOLD
    try:
        number = float(text)
    except ValueError:
        raise OptionError("confidence_threshold", f"{text[:40]!r} is not a number") from None
    if not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise OptionError("confidence_threshold", f"{text[:40]} is not between 0 and 1")
    return number


def parse_callback_url(value: str, *, deny_internal: bool = False) -> str | None:
    text = value.strip()
    if not text:
        return None
    if len(text) > MAX_CALLBACK_URL_CHARS:
        raise OptionError("callback_url", f"longer than {MAX_CALLBACK_URL_CHARS} characters")
    if any(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in text):
        raise OptionError("callback_url", "contains whitespace or control characters")
    try:
        parts = urlsplit(text)
        _ = parts.port  # raises ValueError for a port out of range or not a number
    except ValueError as exc:
        raise OptionError("callback_url", f"not a valid URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise OptionError("callback_url", "must be an absolute http:// or https:// URL with a host")
    if deny_internal and (host := literal_internal_host(text)) is not None:
        raise OptionError(
            "callback_url", f"{host} is an internal address; this server sends callbacks to public hosts only"
        )
    return text


def parse_options(
    fields: Mapping[str, str], *, max_prompt_chars: int = 4000, deny_internal_callbacks: bool = False
) -> JobOptions:
    """The :class:`JobOptions` asked for by the form fields; raises :class:`OptionError`.

    Absent and empty fields take their defaults. Fields this API does not know are ignored, so
    that clients built for a later version still work.
    """
    language = normalise_language(fields.get("language", ""))

    prompt: str | None = fields.get("prompt", "").strip() or None
    if prompt is not None and len(prompt) > max_prompt_chars:
        raise OptionError("prompt", f"longer than {max_prompt_chars} characters")

    correction = fields.get("correction", "").strip().lower() or "auto"
    if correction not in ("auto", "off"):
        raise OptionError("correction", f"{correction[:40]!r} is neither 'auto' nor 'off'")

    task = fields.get("task", "").strip().lower() or "transcribe"
    if task not in ("transcribe", "translate"):
        raise OptionError("task", f"{task[:40]!r} is neither 'transcribe' nor 'translate'")

    return JobOptions(
        task="translate" if task == "translate" else "transcribe",
        language=language,
        prompt=prompt,
        correction="auto" if correction == "auto" else "off",
        confidence_threshold=parse_confidence_threshold(fields.get("confidence_threshold", "")),
        callback_url=parse_callback_url(
            fields.get("callback_url", ""), deny_internal=deny_internal_callbacks
        ),
    )


def safe_filename(name: str | None) -> str:
    """The client's file name reduced to something safe to show and log: no path, no control chars."""
    if not name:
        return ""
    base = re.split(r"[\\/]", name)[-1]
    cleaned = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C").strip()
    return cleaned[:MAX_FILENAME_CHARS]


# ---------------------------------------------------------------------------------------------
# Job view projection
# ---------------------------------------------------------------------------------------------

TERMINAL: Final[frozenset[Stage]] = frozenset({"completed", "failed"})

_RANK: Final[dict[Stage, int]] = {
    "queued": 0,
    "transcribing": 1,
    "correcting": 2,
    "merging": 3,
    "completed": 4,
    "failed": 4,
}

STAGE_SPAN: Final[dict[Stage, tuple[float, float]]] = {
    "queued": (0.0, 0.05),
    "transcribing": (0.05, 0.6),
    "correcting": (0.6, 0.9),
    "merging": (0.9, 0.99),
}
"""The share of the overall progress each running stage covers: a stage at fraction p of its own
work puts the job at ``low + p * (high - low)``."""


def overall_progress(stage: Stage, fraction: float) -> float:
    """Overall progress (0..1) of a job whose ``stage`` is ``fraction`` done."""
    if stage == "completed":
        return 1.0
    span = STAGE_SPAN.get(stage)
    if span is None:
        return 0.0
    if not math.isfinite(fraction):
        fraction = 0.0
    low, high = span
    return low + min(max(fraction, 0.0), 1.0) * (high - low)


def _later(current: Stage, proposed: Stage) -> Stage:
    return proposed if _RANK[proposed] > _RANK[current] else current


def _advance(view: JobView, stage: Stage, progress: float, **changes: Any) -> JobView:
    """Move forward only: the later of the two stages and the larger of the two progresses."""
    return replace(
        view,
        status=_later(view.status, stage),
        progress=max(view.progress, progress),
        **changes,
    )


def _clip_stage(view: JobView, clip_count: int, done: list[int]) -> tuple[Stage, float]:
    finished = len([i for i in done if 0 <= i < clip_count]) if clip_count else 0
    if finished >= clip_count:
        return "merging", STAGE_SPAN["merging"][0]
    return "correcting", overall_progress("correcting", finished / clip_count)


def _project(view: JobView, event: Event) -> JobView:
    if isinstance(event, JobProgress):
        if event.stage not in STAGE_SPAN or _RANK[event.stage] < _RANK[view.status]:
            return view
        return _advance(view, event.stage, overall_progress(event.stage, event.progress))
    if isinstance(event, WordsScored):
        return _advance(view, "correcting", STAGE_SPAN["correcting"][0])
    if isinstance(event, ClipsReady):
        count = len(event.clips)
        stage, progress = _clip_stage(view, count, view.clips_done)
        return _advance(view, stage, progress, clip_count=count)
    if isinstance(event, ClipCorrected):
        count = view.clip_count if view.clip_count is not None else event.clip_count
        done = sorted({*view.clips_done, event.clip_index})
        stage, progress = _clip_stage(view, count, done)
        return _advance(view, stage, progress, clip_count=count, clips_done=done)
    if isinstance(event, JobMerged):
        return replace(
            view, status="completed", progress=1.0, transcript_ref=event.transcript_ref, error=None
        )
    if isinstance(event, JobFailed):
        return replace(view, status="failed", error=event.error)
    return view


RESUME_STAGE: Final[dict[str, Stage]] = {
    "job.created": "queued",
    "words.scored": "correcting",
    "clips.ready": "correcting",
}
"""Where a retried job stands when it is re-driven from each stored artefact."""


def _retry(view: JobView, event: JobRetried) -> JobView:
    if view.status != "failed" or event.attempt <= view.attempt:
        return view  # only a failed run can be retried, and each retry once
    stage = RESUME_STAGE.get(event.resume_from, "queued")
    keep_clips = event.resume_from == "clips.ready"
    return replace(
        view,
        status=stage,
        progress=STAGE_SPAN[stage][0],
        error=None,
        transcript_ref=None,
        clip_count=view.clip_count if keep_clips else None,
        clips_done=[],
        attempt=event.attempt,
        attempt_started_at=event.occurred_at,
    )


def apply_event(view: JobView | None, event: Event) -> JobView | None:
    """The job view after ``event``; None while there is no view to show.

    * ``job.created`` makes the view (or refreshes its upload facts on a replay);
    * other events for a job without a view are dropped: ingest writes the view before it
      publishes ``job.created``, so such a job was never accepted;
    * the status never moves backwards and progress never drops, so a late or redelivered event
      changes nothing; ``completed`` and ``failed`` are final;
    * applying the same event twice gives the same view (``updated_at`` included);
    * ``job.retried`` reopens a ``failed`` job as a new run (``attempt``), the one exception to the two
      rules above; events of earlier runs are ignored from then on.
    """
    if isinstance(event, JobCreated):
        created_at = event.created_at or event.occurred_at
        if view is None:
            return JobView(
                id=event.job_id,
                status="queued",
                progress=0.0,
                error=None,
                created_at=created_at,
                updated_at=max(created_at, event.occurred_at),
                filename=event.filename,
                duration_s=event.duration_s,
                options=event.options,
            )
        changed = replace(
            view,
            filename=event.filename,
            duration_s=event.duration_s,
            options=event.options,
            created_at=view.created_at or created_at,
        )
    elif view is None:
        return None
    elif isinstance(event, JobRetried):
        changed = _retry(view, event)
    elif event.attempt < view.attempt:
        # A late event of a run that failed and was retried: the new run is what the view follows.
        return view
    elif view.status in TERMINAL:
        return view
    else:
        changed = _project(view, event)
    if changed == view:
        return view
    return replace(changed, updated_at=max(view.updated_at, event.occurred_at))


# ---------------------------------------------------------------------------------------------
# Presentation
# ---------------------------------------------------------------------------------------------


def iso_utc(timestamp: float) -> str:
    """Unix seconds as ISO-8601 UTC with milliseconds: ``2024-05-01T12:00:00.250Z``."""
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def present_view(view: JobView, base_path: str = "/v1/jobs") -> dict[str, Any]:
    """The JSON body of ``GET /v1/jobs/{id}``."""
    options = view.options
    body: dict[str, Any] = {
        "id": view.id,
        "status": view.status,
        "progress": round(min(max(view.progress, 0.0), 1.0), 4),
        "error": None if view.error is None else {"code": view.error.code, "message": view.error.message},
        "created_at": iso_utc(view.created_at),
        "updated_at": iso_utc(view.updated_at),
        "filename": view.filename,
        "duration_s": round(view.duration_s, 3),
        "options": {
            "language": options.language,
            "prompt": options.prompt,
            "correction": options.correction,
            "confidence_threshold": options.confidence_threshold,
            # Shown without query, user or password: tokens ride there, and listings are widely read.
            "callback_url": None if options.callback_url is None else redact_url(options.callback_url),
            "task": options.task,
        },
        "attempt": view.attempt,
        "clips": None
        if view.clip_count is None
        else {"total": view.clip_count, "done": len(view.clips_done)},
        "links": {
            "self": f"{base_path}/{view.id}",
            "audio": f"{base_path}/{view.id}/audio",
            "transcript": f"{base_path}/{view.id}/transcript" if view.status == "completed" else None,
        },
    }
    return body


# ---------------------------------------------------------------------------------------------
# Deadlines (the watchdog's sweep)
# ---------------------------------------------------------------------------------------------


def job_deadline_s(duration_s: float, base_s: float, per_audio_s: float) -> float:
    """How long one run of a job may take: a base plus a share per second of its audio."""
    return base_s + per_audio_s * max(duration_s, 0.0)


def stuck_views(
    views: list[JobView], now: float, base_s: float, per_audio_s: float
) -> list[tuple[JobView, float]]:
    """The running views whose current run started longer ago than its deadline, with that deadline.

    A run starts when the job is created, or when ``job.retried`` reopened it.
    """
    stuck = []
    for view in views:
        if view.status in TERMINAL:
            continue
        deadline = job_deadline_s(view.duration_s, base_s, per_audio_s)
        started = view.attempt_started_at or view.created_at
        if now - started > deadline:
            stuck.append((view, deadline))
    return stuck
