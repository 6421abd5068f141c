"""``POST /v1/audio/transcriptions``: OpenAI's transcription endpoint on top of relisten's jobs.

The upload is admitted exactly like ``POST /v1/jobs`` (same validation, same storage, same
``job.created``); the request then follows its job (:class:`~relisten_ingest.feed.JobFeed`) until
it completes or fails, and answers in the shape ``response_format`` asks for. The job stays
visible under ``/v1/jobs/{id}`` like any other (its id is in the ``X-Relisten-Job-Id`` header).

Errors use OpenAI's shape. A job that fails answers 500 with the job's error code. That, a job
still running after ``openai_timeout_s`` (504) and losing NATS while waiting (503) carry
``x-should-retry: false`` and ``X-Relisten-Job-Id``, so the OpenAI SDKs don't resubmit the audio as
a second job (the pipeline already retries internally, and the job can still be followed).
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import aclosing
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from relisten_contracts import Task

from relisten_ingest import openai_compat
from relisten_ingest.api import (
    OPENAI_TRANSCRIPTIONS_PATH,
    OPENAI_TRANSLATIONS_PATH,
    ApiError,
    admit_upload,
    infra_of,
    runtime_of,
    take_slot,
)
from relisten_ingest.domain import OptionError
from relisten_ingest.feed import JobFeed
from relisten_ingest.formats import to_srt, to_text, to_vtt
from relisten_ingest.live import FINAL_EVENTS
from relisten_ingest.uploads import FILE_FIELD, ReceivedForm

log = logging.getLogger(__name__)

router = APIRouter()

NO_RETRY: Final = {"x-should-retry": "false"}

_OPENAI_SCHEMA: Final[dict[str, Any]] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FILE_FIELD],
                    "properties": {
                        FILE_FIELD: {"type": "string", "format": "binary"},
                        "model": {"type": "string", "description": "Accepted whatever it names."},
                        "language": {"type": "string", "description": "ISO 639-1 code; absent: detect."},
                        "prompt": {"type": "string", "description": "Glossary or context for both passes."},
                        "response_format": {
                            "type": "string",
                            "enum": list(openai_compat.RESPONSE_FORMATS),
                            "default": "json",
                        },
                        "timestamp_granularities[]": {
                            "type": "array",
                            "items": {"type": "string", "enum": list(openai_compat.GRANULARITIES)},
                            "description": "verbose_json: word and/or segment (default segment).",
                        },
                        "temperature": {"type": "number", "minimum": 0, "maximum": 1},
                    },
                }
            }
        },
    }
}


@router.post(
    OPENAI_TRANSCRIPTIONS_PATH,
    summary="Transcribe audio (OpenAI-compatible)",
    description=__doc__,
    openapi_extra=_OPENAI_SCHEMA,
    response_class=JSONResponse,
)
async def create_transcription(request: Request) -> Response:
    return await serve_openai_job(request, "transcribe")


@router.post(
    OPENAI_TRANSLATIONS_PATH,
    summary="Translate audio into English (OpenAI-compatible)",
    description="``POST /v1/audio/translations``: the same as the transcription route, with Whisper's "
    "translate task (English text out, words timed against the audio) on the multilingual model.",
    openapi_extra=_OPENAI_SCHEMA,
    response_class=JSONResponse,
)
async def create_translation(request: Request) -> Response:
    return await serve_openai_job(request, "translate")


async def serve_openai_job(request: Request, task: Task) -> Response:
    """Admit the upload as a job with ``task``, follow it to its end, answer in OpenAI's shapes."""
    runtime = runtime_of(request)
    take_slot(runtime, runtime.wait_slots, "too_many_waits", "transcriptions are being waited for", 10)
    try:
        return await _serve(request, task)
    finally:
        runtime.wait_slots.give_back()


async def _serve(request: Request, task: Task) -> Response:
    parsed: list[openai_compat.TranscriptionRequest] = []

    def check(form: ReceivedForm) -> None:
        # Runs before the audio is decoded: a bad field costs no decoding and stores nothing.
        try:
            parsed.append(openai_compat.parse_transcription_request(form.repeated))
        except OptionError as exc:
            raise ApiError(400, "invalid_value", exc.message, param=exc.field) from None

    view = await admit_upload(request, check, task=task)
    asked = parsed[0]
    log.info(
        "job %s: OpenAI %s, model %r, response_format %s",
        view.id,
        "translation" if task == "translate" else "transcription",
        asked.model,
        asked.response_format,
    )
    settings = runtime_of(request).settings
    feed = JobFeed(
        infra_of(request),
        view,
        heartbeat_s=min(settings.events_heartbeat_s, 5.0),
        replay_margin_s=settings.events_replay_margin_s,
    )
    job_header = {"X-Relisten-Job-Id": view.id}
    ending = None
    try:
        async with aclosing(feed.frames()) as frames, asyncio.timeout(settings.openai_timeout_s):
            async for frame in frames:
                if frame.event in FINAL_EVENTS:
                    ending = frame
                    break
                if not frame.event and await request.is_disconnected():
                    log.info("job %s: the client went away; the job goes on", view.id)
                    return Response(status_code=499)
    except TimeoutError:
        raise ApiError(
            504,
            "job_timeout",
            f"job {view.id} is still running after {settings.openai_timeout_s:.0f} s; "
            f"follow it at /v1/jobs/{view.id}",
            headers={**NO_RETRY, **job_header},
        ) from None
    except Exception as exc:
        # Lost NATS while waiting: the job itself goes on; a retry would submit the audio again.
        log.exception("job %s: lost track of the job while waiting for it", view.id)
        raise ApiError(
            503,
            "job_unfollowable",
            f"lost track of job {view.id} ({type(exc).__name__}); follow it at /v1/jobs/{view.id}",
            headers={**NO_RETRY, **job_header},
        ) from None

    if ending is None or ending.event == "failed":
        error = (ending.data or {}).get("error", {}) if ending is not None else {}
        raise ApiError(
            500,
            str(error.get("code", "job_failed")),
            f"job {view.id} failed: {error.get('message', 'no reason given')}",
            headers={**NO_RETRY, **job_header},
        )
    transcript = feed.transcript
    if transcript is None:
        raise ApiError(
            500,
            "transcript_missing",
            f"job {view.id} completed but its transcript cannot be read",
            headers={**NO_RETRY, **job_header},
        )

    media_type = openai_compat.MEDIA_TYPES[asked.response_format]
    if asked.response_format == "json":
        return JSONResponse(openai_compat.json_body(transcript), headers=job_header)
    if asked.response_format == "verbose_json":
        body = openai_compat.verbose_json_body(transcript, asked, feed.first_pass, task=task)
        return JSONResponse(body, headers=job_header)
    render = {"text": to_text, "srt": to_srt, "vtt": to_vtt}[asked.response_format]
    return Response(render(transcript), media_type=media_type, headers=job_header)
