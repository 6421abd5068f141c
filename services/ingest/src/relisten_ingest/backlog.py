"""Admission control: the backlog is the audio, in seconds, of every job not yet completed or failed.

Past ``RELISTEN_INGEST_MAX_BACKLOG_AUDIO_S`` ingest answers 503 ``backlog_full`` with ``Retry-After`` instead
of accepting work the cluster cannot finish in reasonable time (a queue that only grows helps nobody:
clients are better told to come back, or to go to another deployment).

The backlog is summed from the job views (the ``jobs`` KV bucket, every ingest replica's shared truth)
and cached for :data:`REFRESH_S`, so that a burst of uploads costs one scan of the bucket, not one per
upload; a burst inside that window can overshoot the limit by what it brings.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Final

from relisten_contracts import JobView
from relisten_runtime.infra import Infra

from relisten_ingest.adapters import JobViews

REFRESH_S: Final = 2.0
RETRY_AFTER_S: Final = 30
"""What a refused client is told to wait: about the time the pipeline needs to drain a few jobs."""
TERMINAL: Final = frozenset({"completed", "failed"})


def backlog_audio_s(views: Iterable[JobView]) -> float:
    """Seconds of audio in the jobs still to finish."""
    return sum(max(view.duration_s, 0.0) for view in views if view.status not in TERMINAL)


class Backlog:
    """The backlog as last read from the job views, read again when older than ``refresh_s``."""

    def __init__(self, refresh_s: float = REFRESH_S) -> None:
        self.refresh_s = refresh_s
        self.seconds = 0.0
        self._read_at = float("-inf")
        self._lock = asyncio.Lock()

    def set(self, views: Iterable[JobView]) -> float:
        """Take the backlog from ``views`` (every job); returns it."""
        self.seconds = backlog_audio_s(views)
        self._read_at = time.monotonic()
        return self.seconds

    async def current(self, infra: Infra) -> float:
        async with self._lock:  # concurrent uploads share one scan
            if time.monotonic() - self._read_at >= self.refresh_s:
                self.set(await JobViews.of(infra).recent(limit=1_000_000))
            return self.seconds
