"""Log records carry the job they are about."""

from __future__ import annotations

import io
import json
import logging

from relisten_runtime.logs import JobIdFilter, JsonFormatter, job_context, text_formatter


def capture(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(JobIdFilter())
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"test-logs-{id(out)}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return logger, out


def test_text_lines_name_the_job() -> None:
    logger, out = capture(text_formatter("ingest"))
    logger.info("outside")
    with job_context("abc123"):
        logger.info("inside")
    logger.info("explicit", extra={"job_id": "xyz"})
    lines = out.getvalue().splitlines()
    assert "ingest" in lines[0] and "job=-: outside" in lines[0]
    assert "job=abc123: inside" in lines[1]
    assert "job=xyz: explicit" in lines[2]


def test_json_lines() -> None:
    logger, out = capture(JsonFormatter("ingest"))
    with job_context("abc123"):
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
    record = json.loads(out.getvalue())
    assert record["job_id"] == "abc123" and record["service"] == "ingest"
    assert record["level"] == "ERROR" and record["message"] == "failed"
    assert "ValueError: boom" in record["exception"]
