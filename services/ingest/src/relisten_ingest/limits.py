"""Limits of one ingest process: requests per minute per client, and how many uploads, event streams
and OpenAI-route waits it holds at once.

* ``RELISTEN_RATE_LIMIT_PER_MIN``: a token bucket per API key (per client address on an open API)
  over every ``/v1`` route; an empty bucket answers 429 ``rate_limited`` with ``Retry-After``. Off by
  default: the web page and a polling script on a single-user box would trip a low limit.
* ``RELISTEN_MAX_CONCURRENT_UPLOADS``, ``RELISTEN_MAX_EVENT_STREAMS``, ``RELISTEN_MAX_OPENAI_WAITS``:
  one more than the limit answers 503 (``too_many_uploads``, ``too_many_streams``,
  ``too_many_waits``) with ``Retry-After``, before anything is read or stored.

The limits are per process: with several ingest replicas behind a balancer each replica counts its
own (a shared count would cost a NATS round trip on every request).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from relisten_ingest import openai_compat

API_KEY_SCOPE: Final = "relisten.api_key"
"""Where :class:`~relisten_ingest.access.ApiKeyMiddleware` leaves the request's valid API key."""
MAX_TRACKED: Final = 10_000
"""Clients remembered by the rate limiter; the least recently seen are forgotten first (a forgotten
client starts again with a full bucket, which errs on the side of letting it through)."""


class RateLimiter:
    """A token bucket per client: ``per_minute`` requests, refilled continuously, bursts of as many."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.refill_per_s = per_minute / 60.0
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, client: str) -> float | None:
        """Spend one token of ``client``'s; None when there was one, else seconds until there is."""
        now = self.clock()
        tokens, at = self._buckets.pop(client, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - at) * self.refill_per_s)
        if tokens >= 1.0:
            self._buckets[client] = (tokens - 1.0, now)
            wait = None
        else:
            self._buckets[client] = (tokens, now)
            wait = (1.0 - tokens) / self.refill_per_s
        while len(self._buckets) > MAX_TRACKED:
            self._buckets.popitem(last=False)
        return wait


class Slots:
    """A count of things held at once, refused beyond ``limit`` (0: unlimited). Not a queue: a
    request that finds no slot is answered at once, so the client's retry decides when to come back."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def try_take(self) -> bool:
        if self.limit and self.held >= self.limit:
            return False
        self.held += 1
        return True

    def give_back(self) -> None:
        self.held = max(0, self.held - 1)


def client_identity(scope: Scope) -> str:
    """Whom a request counts against: its API key (hashed), else its client address."""
    api_key = scope.get(API_KEY_SCOPE)
    if api_key:
        return "key:" + hashlib.sha256(str(api_key).encode()).hexdigest()
    client = scope.get("client")
    return "client:" + (str(client[0]) if client else "unknown")


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


def refusal(path: str, status: int, code: str, message: str, wait_s: float) -> JSONResponse:
    """A limit's answer, in OpenAI's error shape on the OpenAI route."""
    if path == "/v1/audio/transcriptions":
        body = openai_compat.error_body(message, status=status, code=code)
    else:
        body = {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers={"Retry-After": retry_after(wait_s)})


class RateLimitMiddleware:
    """429 ``rate_limited`` once a client has spent its requests per minute on ``/v1`` routes."""

    def __init__(
        self,
        app: ASGIApp,
        per_minute: int,
        on_refusal: Callable[[str], None] | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.app = app
        # Shared with the realtime route (a WebSocket session spends one token when it opens).
        self.limiter = limiter or RateLimiter(per_minute)
        self.on_refusal = on_refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not (path == "/v1" or path.startswith("/v1/")):
            await self.app(scope, receive, send)
            return
        wait = self.limiter.take(client_identity(scope))
        if wait is None:
            await self.app(scope, receive, send)
            return
        if self.on_refusal is not None:
            self.on_refusal("rate_limited")
        per_minute = int(self.limiter.capacity)
        message = f"more than {per_minute} requests a minute; retry after {retry_after(wait)} s"
        await refusal(path, 429, "rate_limited", message, wait)(scope, receive, send)
