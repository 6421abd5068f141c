"""The HTTP API of relisten: submit audio, follow the job (polling or live), fetch its transcript and
audio; plus the operational routes (health, readiness, ``/metrics``, ``/asyncapi.json``).

Every error answers ``{"error": {"code": ..., "message": ...}}`` — except on the OpenAI-compatible
route, which answers OpenAI's ``{"error": {"message", "type", "param", "code"}}``. A rejected
upload stores nothing and publishes nothing: it is received into a scratch directory, validated by
decoding, and only then stored (see :func:`relisten_ingest.adapters.admit_job`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import aclosing
from pathlib import Path
from typing import Annotated, Any, Final

import anyio
import msgspec
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST
from relisten_contracts import STREAM_NAME, JobCreated, JobOptions, JobView, Task, encode
from relisten_runtime.addresses import scrub_credentials
from relisten_runtime.infra import Infra
from relisten_runtime.logs import bind_job
from relisten_runtime.store import NatsJobStore
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from relisten_ingest import backlog, idempotency, live, openai_compat, recovery
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
from relisten_ingest.asyncapi import build_asyncapi
from relisten_ingest.audio import AudioRejected, AudioTooLong, NoAudio, normalise_to_wav
from relisten_ingest.deletion import JobRunning, delete_job
from relisten_ingest.domain import OptionError, apply_event, parse_options, present_view, safe_filename
from relisten_ingest.feed import JobFeed
from relisten_ingest.formats import to_srt, to_text, to_vtt
from relisten_ingest.limits import API_KEY_SCOPE, Slots
from relisten_ingest.runtime import IngestRuntime, NotReady
from relisten_ingest.uploads import (
    FILE_FIELD,
    InvalidForm,
    NotMultipart,
    ReceivedForm,
    UploadIdle,
    UploadTooLarge,
    idle_limited,
    receive_form,
)

log = logging.getLogger(__name__)

JOBS_PATH: Final = "/v1/jobs"
OPENAI_TRANSCRIPTIONS_PATH: Final = "/v1/audio/transcriptions"
OPENAI_TRANSLATIONS_PATH: Final = "/v1/audio/translations"
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

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        *,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.param = param
        """The request field at fault, when there is one (OpenAI's error shape names it)."""


def error_response(
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    *,
    path: str = "",
    param: str | None = None,
) -> JSONResponse:
    """An error in relisten's shape, or in OpenAI's on the OpenAI-compatible route (``path``)."""
    if path in (OPENAI_TRANSCRIPTIONS_PATH, OPENAI_TRANSLATIONS_PATH):
        body = openai_compat.error_body(message, status=status, code=code, param=param)
    else:
        body = {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Make FastAPI's own errors (validation, 404, 405, crashes) use the API's error shape."""

    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(
            exc.status, exc.code, exc.message, exc.headers, path=request.url.path, param=exc.param
        )

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, f"http_{exc.status_code}")
        return error_response(exc.status_code, code, str(exc.detail), exc.headers, path=request.url.path)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error.get('loc', ()))}: {error.get('msg', 'invalid')}"
            for error in exc.errors()
        )
        return error_response(422, "invalid_request", problems or "invalid request", path=request.url.path)

    async def on_crash(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", exc_info=exc)
        return error_response(
            500, "internal_error", "the server failed to handle the request", path=request.url.path
        )

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_crash)


def runtime_of(request: Request) -> IngestRuntime:
    runtime: IngestRuntime = request.app.state.ingest
    return runtime


def infra_of(request: Request) -> Infra:
    try:
        return runtime_of(request).infra
    except NotReady as exc:
        raise ApiError(503, "not_ready", str(exc), headers={"Retry-After": "2"}) from None


async def _view_or_404(infra: Infra, job_id: str) -> JobView:
    found = await JobViews.of(infra).get(job_id) if _JOB_ID.match(job_id) else None
    if found is None:
        raise ApiError(404, "job_not_found", f"there is no job {job_id[:80]!r}")
    bind_job(job_id)
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


async def _refuse_when_backlogged(runtime: IngestRuntime, infra: Infra) -> None:
    """503 ``backlog_full`` once the unfinished jobs hold more audio than the configured limit."""
    limit = runtime.settings.max_backlog_audio_s
    if limit <= 0:
        return
    try:
        waiting = await runtime.backlog.current(infra)
    except Exception as exc:  # cannot read the views: storing the upload would fail and answer that
        log.warning("backlog unknown, admitting: %r", exc)
        return
    if waiting > limit:
        raise ApiError(
            503,
            "backlog_full",
            f"{waiting:.0f} s of audio are waiting to be transcribed, more than the limit of {limit:.0f} s; "
            "try again later",
            headers={"Retry-After": str(backlog.RETRY_AFTER_S)},
        )


def take_slot(runtime: IngestRuntime, slots: Slots, code: str, held: str, retry_after_s: int) -> None:
    """Hold one of ``slots`` (the caller gives it back) or answer 503 ``code`` with ``Retry-After``."""
    if slots.try_take():
        return
    runtime.metrics.refused.labels(code).inc()
    raise ApiError(
        503,
        code,
        f"{slots.limit} {held} already; retry shortly",
        headers={"Retry-After": str(retry_after_s)},
    )


FormCheck = Callable[[ReceivedForm], None]


def _no_check(_: ReceivedForm) -> None:
    return None


async def admit_upload(
    request: Request, check: FormCheck = _no_check, *, task: Task | None = None
) -> JobView:
    """Receive, validate and store an upload, publish ``job.created``; the new job's view.

    The one admission path of every route that creates jobs. ``check`` sees the form's fields
    before the audio is decoded and raises :class:`ApiError` for fields its route does not accept;
    ``task`` is the route's own task (the OpenAI translations route), over the form's.
    """
    runtime = runtime_of(request)
    settings = runtime.settings
    # Reject by the declared size before touching NATS or reading a byte of the body.
    _declared_length(request, settings.max_upload_bytes)
    try:
        idempotency_key = idempotency.parse_key(request.headers.get(idempotency.HEADER))
    except idempotency.IdempotencyError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None
    # 503 not_ready before reading the body when NATS is not there, then admission control.
    await _refuse_when_backlogged(runtime, infra_of(request))
    take_slot(runtime, runtime.upload_slots, "too_many_uploads", "uploads are being received", 5)
    try:
        return await _receive_and_admit(request, check, idempotency_key, task)
    finally:
        runtime.upload_slots.give_back()


async def _receive_and_admit(
    request: Request, check: FormCheck, idempotency_key: str | None, task: Task | None
) -> JobView:
    runtime = runtime_of(request)
    settings = runtime.settings
    infra = infra_of(request)
    workdir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="relisten-ingest-", dir=settings.tmp_dir))
    try:
        try:
            form = await receive_form(
                request.headers.get("content-type"),
                idle_limited(request.stream(), settings.upload_idle_timeout_s),
                workdir / "upload",
                max_bytes=settings.max_upload_bytes,
            )
        except UploadIdle as exc:
            raise ApiError(408, "upload_timeout", str(exc), headers={"Connection": "close"}) from None
        except UploadTooLarge as exc:
            raise ApiError(413, "upload_too_large", str(exc)) from None
        except NotMultipart as exc:
            raise ApiError(400, "missing_file", str(exc), param=FILE_FIELD) from None
        except InvalidForm as exc:
            raise ApiError(400, "invalid_form", str(exc)) from None
        except ClientDisconnect:
            raise ApiError(400, "incomplete_upload", "the client went away during the upload") from None

        try:
            options = parse_options(
                form.fields,
                max_prompt_chars=settings.max_prompt_chars,
                deny_internal_callbacks=settings.callback_private_addresses == "deny",
            )
        except OptionError as exc:
            raise ApiError(422, "invalid_option", exc.message, param=exc.field) from None
        if task is not None:
            options = msgspec.structs.replace(options, task=task)
        check(form)
        if (refusal := await runtime.languages.refusal(NatsJobStore(lambda: infra), options)) is not None:
            raise ApiError(422, "unsupported_language", refusal, param="language") from None
        if form.file is None:
            raise ApiError(
                400,
                "missing_file",
                f"send the audio as the multipart form field {FILE_FIELD!r}",
                param=FILE_FIELD,
            )
        if form.file.size == 0:
            raise ApiError(400, "empty_file", "the uploaded file is empty", param=FILE_FIELD)

        job_id = uuid.uuid4().hex
        claimed: idempotency.Claimed | None = None
        if idempotency_key is not None:
            outcome = await _claim(request, idempotency_key, form, job_id)
            if isinstance(outcome, idempotency.Existing):
                request.state.idempotent_replay = True
                bind_job(outcome.view.id)
                log.info(
                    "job %s: the same %s again, answered with the job", outcome.view.id, idempotency.HEADER
                )
                return outcome.view
            claimed = outcome
        try:
            view = await _admit_decoded(request, form, job_id, options, workdir)
        except BaseException:
            if claimed is not None:
                await idempotency.IdempotencyStore(infra.idempotency, JobViews.of(infra)).release(claimed)
            raise
        if claimed is not None:
            fingerprint = _fingerprint(request, form)
            await idempotency.IdempotencyStore(infra.idempotency, JobViews.of(infra)).admitted(
                claimed, fingerprint
            )
        return view
    finally:
        await asyncio.to_thread(shutil.rmtree, workdir, ignore_errors=True)


def _fingerprint(request: Request, form: ReceivedForm) -> str:
    assert form.file is not None
    return idempotency.fingerprint(request.url.path, form.repeated, form.file.filename, form.file.sha256)


async def _claim(
    request: Request, key: str, form: ReceivedForm, job_id: str
) -> idempotency.Claimed | idempotency.Existing:
    """Take the Idempotency-Key for job ``job_id`` or find the job it already stands for."""
    infra = infra_of(request)
    settings = runtime_of(request).settings
    api_key = request.scope.get(API_KEY_SCOPE) if settings.api_keys else None
    scope = idempotency.scope_of(api_key, request.client.host if request.client else None)
    store = idempotency.IdempotencyStore(infra.idempotency, JobViews.of(infra))
    try:
        return await store.claim(idempotency.entry_key(scope, key), _fingerprint(request, form), job_id)
    except idempotency.IdempotencyError as exc:
        headers = {"Retry-After": "5"} if exc.status == 409 else None
        raise ApiError(exc.status, exc.code, exc.message, headers) from None


async def _admit_decoded(
    request: Request, form: ReceivedForm, job_id: str, options: JobOptions, workdir: Path
) -> JobView:
    """Decode and normalise the received file, store the job and publish ``job.created``."""
    runtime = runtime_of(request)
    settings = runtime.settings
    infra = infra_of(request)
    assert form.file is not None
    normalised = workdir / "audio.wav"
    try:
        async with runtime.decode_slots:
            audio = await asyncio.to_thread(
                normalise_to_wav, form.file.path, normalised, max_samples=settings.max_samples
            )
    except AudioRejected as exc:
        status = {AudioTooLong: 413, NoAudio: 400}.get(type(exc), 415)
        raise ApiError(status, exc.code, exc.message, param=FILE_FIELD) from None

    bind_job(job_id)
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
    runtime.metrics.admitted(view)
    log.info(
        "job %s accepted: %r, %.1f s of %s/%s audio, %d bytes",
        job_id,
        event.filename,
        audio.duration_s,
        audio.container,
        audio.codec,
        form.file.size,
    )
    return view


@router.post(
    JOBS_PATH,
    status_code=202,
    summary="Submit audio for transcription",
    openapi_extra=_UPLOAD_SCHEMA,
    response_class=JSONResponse,
)
async def create_job(request: Request) -> Response:
    view = await admit_upload(request)
    headers = {"Location": f"{JOBS_PATH}/{view.id}"}
    if getattr(request.state, "idempotent_replay", False):
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(present_view(view, JOBS_PATH), status_code=202, headers=headers)


@router.get(JOBS_PATH, summary="Recent jobs, newest first")
async def list_jobs(
    request: Request, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> dict[str, list[dict[str, Any]]]:
    views = await JobViews.of(infra_of(request)).recent(limit)
    return {"jobs": [present_view(v, JOBS_PATH) for v in views]}


@router.get(JOBS_PATH + "/{job_id}", summary="A job's status and progress")
async def get_job(request: Request, job_id: str) -> dict[str, Any]:
    view = await _view_or_404(infra_of(request), job_id)
    return present_view(view, JOBS_PATH)


@router.delete(JOBS_PATH + "/{job_id}", summary="Delete a finished job: audio, artefacts and view")
async def delete_job_route(request: Request, job_id: str) -> dict[str, Any]:
    infra = infra_of(request)
    await _view_or_404(infra, job_id)
    try:
        view = await delete_job(infra, job_id, "requested")
    except JobRunning as exc:
        raise ApiError(409, "job_running", str(exc)) from None
    if view is None:  # deleted meanwhile by another request
        raise ApiError(404, "job_not_found", f"there is no job {job_id[:80]!r}")
    runtime_of(request).metrics.deleted.labels("requested").inc()
    return {"id": job_id, "deleted": True, "status": view.status}


@router.post(
    JOBS_PATH + "/{job_id}/retry",
    summary="Run a failed job again from its last stored artefact",
    status_code=202,
)
async def retry_job(request: Request, job_id: str) -> JSONResponse:
    infra = infra_of(request)
    view = await _view_or_404(infra, job_id)
    try:
        reopened = await recovery.redrive(infra, view)
    except recovery.RetryRefused as exc:
        raise ApiError(409, exc.code, exc.message) from None
    return JSONResponse(
        present_view(reopened, JOBS_PATH),
        status_code=202,
        headers={"Location": f"{JOBS_PATH}/{job_id}"},
    )


@router.get(JOBS_PATH + "/{job_id}/transcript", summary="The transcript: json, text, srt or vtt")
async def get_transcript(request: Request, job_id: str, format: str = "json") -> Response:
    if format not in _TRANSCRIPT_MEDIA:
        raise ApiError(
            400, "invalid_option", f"format: {format[:20]!r} is not one of {', '.join(_TRANSCRIPT_MEDIA)}"
        )
    infra = infra_of(request)
    view = await _view_or_404(infra, job_id)
    if view.status != "completed":
        message = f"job {job_id} is {view.status}, not completed"
        if view.status == "failed" and view.error is not None:
            message = f"job {job_id} failed: {view.error.code}: {view.error.message}"
        raise ApiError(409, "job_not_completed", message)
    if not view.transcript_ref:
        raise ApiError(500, "transcript_missing", f"job {job_id} is completed but names no transcript")
    try:
        transcript = await load_transcript(NatsJobStore(lambda: infra), view.transcript_ref)
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
    infra = infra_of(request)
    await _view_or_404(infra, job_id)
    workdir = Path(
        await asyncio.to_thread(
            tempfile.mkdtemp, prefix="relisten-audio-", dir=runtime_of(request).settings.tmp_dir
        )
    )
    path = workdir / "audio.wav"
    try:
        found = await get_to_file(infra, audio_name(job_id), path)
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


class EventStreamResponse(StreamingResponse):
    """``text/event-stream`` that always closes its frame generator, also when the client went away
    mid-stream (Starlette leaves the iterator to the garbage collector then)."""

    def __init__(self, frames: AsyncGenerator[bytes, None]) -> None:
        super().__init__(
            frames,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._frames = frames

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._frames.aclose()


@router.get(
    JOBS_PATH + "/{job_id}/events",
    summary="Follow a job live (Server-Sent Events)",
    description=live.__doc__,
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def job_events(request: Request, job_id: str) -> Response:
    """With API keys set, also accepts ``?access_token=<key>`` (EventSource cannot send headers)."""
    infra = infra_of(request)
    view = await _view_or_404(infra, job_id)
    runtime = runtime_of(request)
    settings = runtime.settings
    take_slot(runtime, runtime.stream_slots, "too_many_streams", "event streams are open", 5)
    feed = JobFeed(
        infra,
        view,
        heartbeat_s=settings.events_heartbeat_s,
        replay_margin_s=settings.events_replay_margin_s,
        jobs_path=JOBS_PATH,
    )

    async def frames() -> AsyncGenerator[bytes, None]:
        try:
            yield b"retry: 3000\n\n"
            async with aclosing(feed.frames()) as followed:
                number = 0
                async for frame in followed:
                    if frame.event:
                        number += 1
                    yield frame.encode(number)
        finally:
            runtime.stream_slots.give_back()

    return EventStreamResponse(frames())


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    runtime = runtime_of(request)
    try:
        infra = runtime.infra
    except NotReady:
        pass
    else:
        await runtime.metrics.refresh(infra)
    return Response(runtime.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/asyncapi.json", summary="AsyncAPI document of the pipeline events")
async def asyncapi(request: Request) -> dict[str, Any]:
    settings = runtime_of(request).settings
    return build_asyncapi(version=request.app.version, nats_url=settings.nats_url, stream=STREAM_NAME)


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="NATS is connected and the stream and buckets exist")
async def readyz(request: Request) -> Response:
    runtime = runtime_of(request)
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
        problem = scrub_credentials(f"{type(exc).__name__}: {exc}", runtime.settings.nats_url)
        return error_response(503, "not_ready", f"stream or buckets unavailable: {problem}")
    return JSONResponse({"status": "ready"})
