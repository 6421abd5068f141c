"""The HTTP API of relisten: submit audio, follow the job, fetch its transcript and audio.

Every error answers ``{"error": {"code": ..., "message": ...}}``. A rejected upload stores nothing
and publishes nothing: it is received into a scratch directory, validated by decoding, and only
then stored (see :func:`relisten_ingest.adapters.admit_job`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from relisten_contracts import STREAM_NAME, JobCreated, JobView, encode
from relisten_runtime.infra import Infra
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from relisten_ingest.adapters import (
    AdmissionFailed,
    JobViews,
    TranscriptMissing,
    admit_job,
    audio_name,
    get_to_file,
    load_transcript,
    original_name,
)
from relisten_ingest.audio import AudioRejected, AudioTooLong, NoAudio, normalise_to_wav
from relisten_ingest.domain import OptionError, apply_event, parse_options, present_view, safe_filename
from relisten_ingest.formats import to_srt, to_text, to_vtt
from relisten_ingest.runtime import IngestRuntime, NotReady
from relisten_ingest.uploads import FILE_FIELD, InvalidForm, NotMultipart, UploadTooLarge, receive_form

log = logging.getLogger(__name__)

JOBS_PATH: Final = "/v1/jobs"
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_TRANSCRIPT_MEDIA: Final = {
    "json": "application/json",
    "text": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
}
_TRANSCRIPT_SUFFIX: Final = {"json": "json", "text": "txt", "srt": "srt", "vtt": "vtt"}

router = APIRouter()


class ApiError(Exception):
    """An answer other than success, in the API's error shape."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Make FastAPI's own errors (validation, 404, 405, crashes) use the API's error shape."""

    async def on_api_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    async def on_http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, f"http_{exc.status_code}")
        return error_response(exc.status_code, code, str(exc.detail), exc.headers)

    async def on_validation_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error.get('loc', ()))}: {error.get('msg', 'invalid')}"
            for error in exc.errors()
        )
        return error_response(422, "invalid_request", problems or "invalid request")

    async def on_crash(_: Request, exc: Exception) -> Response:
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal_error", "the server failed to handle the request")

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_crash)


def _runtime(request: Request) -> IngestRuntime:
    runtime: IngestRuntime = request.app.state.ingest
    return runtime


def _infra(request: Request) -> Infra:
    try:
        return _runtime(request).infra
    except NotReady as exc:
        raise ApiError(503, "not_ready", str(exc), headers={"Retry-After": "2"}) from None


async def _view_or_404(infra: Infra, job_id: str) -> JobView:
    found = await JobViews(infra.jobs).get(job_id) if _JOB_ID.match(job_id) else None
    if found is None:
        raise ApiError(404, "job_not_found", f"there is no job {job_id[:80]!r}")
    return found[0]


_UPLOAD_SCHEMA: Final[dict[str, Any]] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FILE_FIELD],
                    "properties": {
                        FILE_FIELD: {
                            "type": "string",
                            "format": "binary",
                            "description": "Audio or video in any common container; validated by decoding.",
                        },
                        "language": {
                            "type": "string",
                            "description": "Language code such as 'en' (ISO 639-1); absent or 'auto': detect.",
                        },
                        "prompt": {"type": "string", "description": "Glossary or context for both passes."},
                        "correction": {"type": "string", "enum": ["auto", "off"], "default": "auto"},
                        "confidence_threshold": {
                            "type": "number",
                            "minimum": 0,
                            "maximum": 1,
                            "default": 0.6,
                            "description": "Words the first pass is less sure of than this are re-listened to.",
                        },
                        "callback_url": {
                            "type": "string",
                            "format": "uri",
                            "description": "http(s) URL called when the job completes or fails.",
                        },
                    },
                }
            }
        },
    }
}


def _declared_length(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared is None:
        return
    try:
        length = int(declared)
    except ValueError:
        raise ApiError(400, "invalid_form", "Content-Length is not a number") from None
    if length > limit:
        raise ApiError(413, "upload_too_large", f"the upload is larger than the limit of {limit} bytes")


@router.post(
    JOBS_PATH,
    status_code=202,
    summary="Submit audio for transcription",
    openapi_extra=_UPLOAD_SCHEMA,
    response_class=JSONResponse,
)
async def create_job(request: Request) -> Response:
    runtime = _runtime(request)
    settings = runtime.settings
    # Reject by the declared size before touching NATS or reading a byte of the body.
    _declared_length(request, settings.max_upload_bytes)
    infra = _infra(request)

    workdir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="relisten-ingest-", dir=settings.tmp_dir))
    try:
        try:
            form = await receive_form(
                request.headers.get("content-type"),
                request.stream(),
                workdir / "upload",
                max_bytes=settings.max_upload_bytes,
            )
        except UploadTooLarge as exc:
            raise ApiError(413, "upload_too_large", str(exc)) from None
        except NotMultipart as exc:
            raise ApiError(400, "missing_file", str(exc)) from None
        except InvalidForm as exc:
            raise ApiError(400, "invalid_form", str(exc)) from None
        except ClientDisconnect:
            raise ApiError(400, "incomplete_upload", "the client went away during the upload") from None

        try:
            options = parse_options(form.fields, max_prompt_chars=settings.max_prompt_chars)
        except OptionError as exc:
            raise ApiError(422, "invalid_option", exc.message) from None
        if form.file is None:
            raise ApiError(400, "missing_file", f"send the audio as the multipart form field {FILE_FIELD!r}")
        if form.file.size == 0:
            raise ApiError(400, "empty_file", "the uploaded file is empty")

        normalised = workdir / "audio.wav"
        try:
            async with runtime.decode_slots:
                audio = await asyncio.to_thread(
                    normalise_to_wav, form.file.path, normalised, max_samples=settings.max_samples
                )
        except AudioRejected as exc:
            status = {AudioTooLong: 413, NoAudio: 400}.get(type(exc), 415)
            raise ApiError(status, exc.code, exc.message) from None

        job_id = uuid.uuid4().hex
        now = time.time()
        event = JobCreated(
            job_id=job_id,
            occurred_at=now,
            filename=safe_filename(form.file.filename),
            original_ref=original_name(job_id),
            audio_ref=audio_name(job_id),
            duration_s=audio.duration_s,
            sample_rate=16000,
            options=options,
            created_at=now,
        )
        view = apply_event(None, event)
        assert view is not None
        try:
            await admit_job(infra, view, event, original=form.file.path, normalised=normalised)
        except AdmissionFailed as exc:
            raise ApiError(503, "storage_unavailable", str(exc), headers={"Retry-After": "5"}) from None
        log.info(
            "job %s accepted: %r, %.1f s of %s/%s audio, %d bytes",
            job_id,
            event.filename,
            audio.duration_s,
            audio.container,
            audio.codec,
            form.file.size,
        )
        location = f"{JOBS_PATH}/{job_id}"
        return JSONResponse(present_view(view, JOBS_PATH), status_code=202, headers={"Location": location})
    finally:
        await asyncio.to_thread(shutil.rmtree, workdir, ignore_errors=True)


@router.get(JOBS_PATH, summary="Recent jobs, newest first")
async def list_jobs(
    request: Request, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> dict[str, list[dict[str, Any]]]:
    views = await JobViews.of(_infra(request)).recent(limit)
    return {"jobs": [present_view(v, JOBS_PATH) for v in views]}


@router.get(JOBS_PATH + "/{job_id}", summary="A job's status and progress")
async def get_job(request: Request, job_id: str) -> dict[str, Any]:
    view = await _view_or_404(_infra(request), job_id)
    return present_view(view, JOBS_PATH)


@router.get(JOBS_PATH + "/{job_id}/transcript", summary="The transcript: json, text, srt or vtt")
async def get_transcript(request: Request, job_id: str, format: str = "json") -> Response:
    if format not in _TRANSCRIPT_MEDIA:
        raise ApiError(
            400, "invalid_option", f"format: {format[:20]!r} is not one of {', '.join(_TRANSCRIPT_MEDIA)}"
        )
    infra = _infra(request)
    view = await _view_or_404(infra, job_id)
    if view.status != "completed":
        message = f"job {job_id} is {view.status}, not completed"
        if view.status == "failed" and view.error is not None:
            message = f"job {job_id} failed: {view.error.code}: {view.error.message}"
        raise ApiError(409, "job_not_completed", message)
    if not view.transcript_ref:
        raise ApiError(500, "transcript_missing", f"job {job_id} is completed but names no transcript")
    try:
        transcript = await load_transcript(infra.data, view.transcript_ref)
    except TranscriptMissing as exc:
        raise ApiError(500, "transcript_missing", str(exc)) from None

    body: bytes | str
    if format == "json":
        body = encode(transcript)
    elif format == "text":
        body = to_text(transcript)
    elif format == "srt":
        body = to_srt(transcript)
    else:
        body = to_vtt(transcript)
    disposition = f'inline; filename="{job_id}.{_TRANSCRIPT_SUFFIX[format]}"'
    return Response(body, media_type=_TRANSCRIPT_MEDIA[format], headers={"Content-Disposition": disposition})


@router.get(JOBS_PATH + "/{job_id}/audio", summary="The normalised audio (16 kHz mono WAV)")
async def get_audio(request: Request, job_id: str) -> Response:
    infra = _infra(request)
    await _view_or_404(infra, job_id)
    workdir = Path(
        await asyncio.to_thread(
            tempfile.mkdtemp, prefix="relisten-audio-", dir=_runtime(request).settings.tmp_dir
        )
    )
    path = workdir / "audio.wav"
    try:
        found = await get_to_file(infra.audio, audio_name(job_id), path)
    except BaseException:
        await asyncio.to_thread(shutil.rmtree, workdir, ignore_errors=True)
        raise
    if not found:
        await asyncio.to_thread(shutil.rmtree, workdir, ignore_errors=True)
        raise ApiError(404, "audio_not_found", f"the audio of job {job_id} is no longer stored")
    return FileResponse(
        path,
        media_type="audio/wav",
        filename=f"{job_id}.wav",
        content_disposition_type="inline",
        background=BackgroundTask(shutil.rmtree, workdir, ignore_errors=True),
    )


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="NATS is connected and the stream and buckets exist")
async def readyz(request: Request) -> Response:
    runtime = _runtime(request)
    try:
        infra = runtime.infra
    except NotReady as exc:
        return error_response(503, "not_ready", str(exc))
    if not infra.nc.is_connected:
        return error_response(503, "not_ready", "not connected to NATS")
    try:
        async with asyncio.timeout(runtime.settings.ready_timeout_s):
            await infra.js.stream_info(STREAM_NAME)
            await infra.jobs.status()
            await infra.audio.status()
            await infra.data.status()
    except Exception as exc:
        return error_response(503, "not_ready", f"stream or buckets unavailable: {type(exc).__name__}: {exc}")
    return JSONResponse({"status": "ready"})
