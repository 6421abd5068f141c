"""Wiring of the ingest service: the FastAPI app (HTTP API, OpenAI-compatible route, web page, metrics,
plus the job view projector in one process) and a programmatic uvicorn server for the CLI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI
from relisten_runtime.logs import configure_logging

from relisten_ingest import openai_api, realtime, web
from relisten_ingest.access import ApiKeyMiddleware
from relisten_ingest.api import install_error_handlers, router
from relisten_ingest.limits import RateLimitMiddleware
from relisten_ingest.runtime import IngestRuntime
from relisten_ingest.settings import IngestSettings


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    """The ingest app. Its lifespan connects to NATS (in the background, retrying) and runs the
    job view projector beside the API, so one ``uvicorn`` process serves both.

    ``app.state.ingest`` is the :class:`~relisten_ingest.runtime.IngestRuntime` (tests wait on
    ``app.state.ingest.wait_ready``).
    """
    settings = settings or IngestSettings()
    runtime = IngestRuntime(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="relisten",
        summary="Transcription that re-listens to the stretches it is unsure about.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.ingest = runtime
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(openai_api.router)
    app.include_router(realtime.router)
    app.include_router(web.router)
    if settings.rate_limit_per_min:
        # Added first, so it runs inside the key check: only valid keys get a bucket of their own.
        app.add_middleware(
            RateLimitMiddleware,
            per_minute=settings.rate_limit_per_min,
            on_refusal=lambda code: runtime.metrics.refused.labels(code).inc(),
            limiter=runtime.rate_limiter,
        )
    keys = [key.get_secret_value() for key in settings.api_keys]
    if keys:
        app.add_middleware(ApiKeyMiddleware, keys=keys)
    return app


async def serve(settings: IngestSettings | None = None) -> None:
    """Run the API and the projector under uvicorn until SIGINT/SIGTERM.

    uvicorn shuts down gracefully (lifespan: the projector and NATS connection are stopped), then
    re-raises the signal, so the process ends the way an unhandled SIGTERM ends it.
    """
    settings = settings or IngestSettings()
    configure_logging(settings.log_level, "ingest", settings.log_format)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        lifespan="on",
        access_log=settings.access_log,
        # Keep the process's logging configuration (set by the CLI) instead of uvicorn's own.
        log_config=None,
        log_level=settings.log_level.lower(),
        proxy_headers=True,
        timeout_graceful_shutdown=30,
    )
    await uvicorn.Server(config).serve()
