"""Log records that carry the job they are about, in every service.

Code that works on one job runs inside :func:`job_context` (the worker wraps every event handler in
it; ingest binds each request that names a job); a filter on the root handlers stamps
every record with ``job_id`` (``-`` outside a job), and the formatters show it: text lines get a
``job=`` field, JSON lines (``RELISTEN_LOG_FORMAT=json``) a ``job_id`` key, ready for a log
pipeline to index. The context is a ``ContextVar``, so concurrent requests and events don't mix.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Final, Literal

_current_job: ContextVar[str | None] = ContextVar("relisten_job_id", default=None)
NO_JOB: Final = "-"


@contextmanager
def job_context(job_id: str) -> Iterator[None]:
    """Log records made inside carry ``job_id``."""
    token = _current_job.set(job_id)
    try:
        yield
    finally:
        _current_job.reset(token)


def current_job() -> str | None:
    """The job the running code works on, if any."""
    return _current_job.get()


def bind_job(job_id: str) -> None:
    """Tag the rest of the current task (one HTTP request) with ``job_id``."""
    _current_job.set(job_id)


class JobIdFilter(logging.Filter):
    """Adds ``record.job_id`` (an explicit ``extra={"job_id": ...}`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "job_id", None):
            record.job_id = _current_job.get() or NO_JOB
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, service, logger, job_id, message (and the traceback)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        body = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "job_id": getattr(record, "job_id", NO_JOB),
            "message": record.getMessage(),
        }
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return json.dumps(body, ensure_ascii=False)


def text_formatter(service: str) -> logging.Formatter:
    return logging.Formatter(f"%(asctime)s %(levelname)s {service} %(name)s job=%(job_id)s: %(message)s")


def configure_logging(level: str, service: str, log_format: Literal["text", "json"] = "text") -> None:
    """Log to stderr at ``level``, every line naming the service and the job (once per process)."""
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO))
    install_job_logging(service, log_format)


def install_job_logging(service: str, log_format: Literal["text", "json"] = "text") -> None:
    """Stamp and show the job id on every handler of the root logger (configure logging first)."""
    formatter = JsonFormatter(service) if log_format == "json" else text_formatter(service)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, JobIdFilter) for f in handler.filters):
            handler.addFilter(JobIdFilter())
        handler.setFormatter(formatter)
