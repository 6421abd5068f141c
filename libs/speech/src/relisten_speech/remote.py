"""HTTP plumbing of the remote speech engines (asr) and backends (corrector): POSTs with bounded,
classified retries, and the OpenAI-compatible transcriptions client.

What is retried: timeouts, connection errors, 408, 429 and 5xx (a busy or restarting GPU server), with
exponential backoff and jitter, and never sooner than the server's ``Retry-After``. What is not: any
other 4xx (a bad request or a wrong key does not get better by asking again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
import numpy as np
from relisten_runtime.audio import wav_from_float
from relisten_runtime.retry_after import retry_after_seconds

from relisten_speech.errors import SpeechError
from relisten_speech.settings import SpeechModelSettings

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def api_root(base_url: str) -> str:
    """``http://host:8000``, whether the setting was given with or without a trailing ``/v1``."""
    root = base_url.strip().rstrip("/")
    return root.removesuffix("/v1")


def retry_after_s(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or HTTP-date), None when absent or unreadable."""
    return retry_after_seconds(response.headers.get("retry-after"), time.time())


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    backoff_s: float
    max_backoff_s: float = 30.0
    max_retry_after_s: float = 120.0
    """A server asking for a longer pause than this is treated as down for now."""

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Pause after failed attempt ``attempt`` (1-based): exponential, in its upper half at random."""
        ceiling = min(self.backoff_s * 2.0 ** (attempt - 1), self.max_backoff_s)
        return ceiling * rng.uniform(0.5, 1.0)


def new_client(timeout_s: float, api_key: str | None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
        headers=headers,
        limits=httpx.Limits(max_keepalive_connections=8),
    )


async def post_with_retries(
    client: httpx.AsyncClient,
    url: str,
    *,
    policy: RetryPolicy,
    gate: asyncio.Semaphore | None = None,
    rng: random.Random | None = None,
    **request: Any,
) -> httpx.Response:
    """POST until a 2xx answer, a permanent error or the last attempt; returns the 2xx response.

    ``gate``, when given, bounds the requests in flight; a pause between attempts does not hold it.
    """
    rng = rng or random.Random()
    last: SpeechError | None = None
    for attempt in range(1, policy.max_attempts + 1):
        wait_at_least = 0.0
        try:
            async with gate or contextlib.nullcontext():
                response = await client.post(url, **request)
        except httpx.TimeoutException as exc:
            last = SpeechError(
                "timeout", f"no answer from {url} within the timeout ({exc!r})", retryable=True
            )
        except httpx.TransportError as exc:
            last = SpeechError("unreachable", f"cannot reach {url}: {exc!r}", retryable=True)
        else:
            if response.is_success:
                return response
            detail = response.text[:300].strip()
            if response.status_code not in RETRYABLE_STATUS:
                raise SpeechError(
                    f"http_{response.status_code}", f"{url} refused the request: {detail}", retryable=False
                )
            code = "rate_limited" if response.status_code == 429 else f"http_{response.status_code}"
            last = SpeechError(code, f"{url} answered {response.status_code}: {detail}", retryable=True)
            asked = retry_after_s(response)
            if asked is not None:
                if asked > policy.max_retry_after_s:
                    raise SpeechError(code, f"{url} asked to wait {asked:.0f} s: giving up", retryable=True)
                wait_at_least = asked
        if attempt == policy.max_attempts:
            break
        pause = max(policy.delay(attempt, rng), wait_at_least)
        log.info(
            "attempt %d/%d on %s failed (%s); retrying in %.2f s",
            attempt,
            policy.max_attempts,
            url,
            last,
            pause,
        )
        await asyncio.sleep(pause)
    assert last is not None
    raise SpeechError(last.code, f"{last.message} (after {policy.max_attempts} attempts)", retryable=True)


def json_body(response: httpx.Response) -> dict[str, Any]:
    """The response's JSON object, or a ``bad_response`` error."""
    try:
        body = response.json()
    except ValueError as exc:
        raise SpeechError("bad_response", f"answer is not JSON: {response.text[:200]!r}") from exc
    if not isinstance(body, dict):
        raise SpeechError("bad_response", f"answer is not a JSON object: {response.text[:200]!r}")
    return body


@dataclass(frozen=True)
class SpeechServer:
    """Where a remote speech server is and how hard to try it: a service's base URL, key, timeout,
    attempts and backoff (:class:`~relisten_speech.settings.SpeechModelSettings`)."""

    base_url: str
    api_key: str | None = None
    timeout_s: float = 60.0
    max_attempts: int = 3
    backoff_s: float = 1.0

    @classmethod
    def of(cls, settings: SpeechModelSettings) -> SpeechServer:
        return cls(
            base_url=settings.base_url,
            api_key=settings.api_key_value(),
            timeout_s=settings.timeout_s,
            max_attempts=settings.max_attempts,
            backoff_s=settings.backoff_s,
        )


class SpeechServerClient:
    """One endpoint (``path``) of a speech server for one model: POSTs with bounded, classified retries
    (:func:`post_with_retries`), at most ``max_concurrency`` in flight, JSON objects back."""

    path: ClassVar[str] = ""

    def __init__(self, server: SpeechServer, *, model: str, max_concurrency: int | None = None) -> None:
        self.model = model
        self.url = f"{api_root(server.base_url)}{self.path}"
        self._policy = RetryPolicy(max_attempts=server.max_attempts, backoff_s=server.backoff_s)
        self._gate = asyncio.Semaphore(max_concurrency) if max_concurrency else None
        self._client = new_client(server.timeout_s, server.api_key)

    async def post_json(self, **request: Any) -> dict[str, Any]:
        """POST ``request`` (httpx keywords: ``json``, ``data``, ``files``) and return the JSON answer."""
        response = await post_with_retries(
            self._client, self.url, policy=self._policy, gate=self._gate, **request
        )
        return json_body(response)

    async def aclose(self) -> None:
        await self._client.aclose()


class TranscriptionsClient(SpeechServerClient):
    """An OpenAI-compatible ``/v1/audio/transcriptions`` endpoint (speaches, OpenAI, vLLM's Whisper):
    one multipart WAV per request, ``verbose_json`` with word timestamps back. The asr engine and the
    corrector backend read the answer each their way."""

    path = "/v1/audio/transcriptions"

    def __init__(
        self,
        server: SpeechServer,
        *,
        model: str,
        granularities: tuple[str, ...],
        max_concurrency: int | None = None,
    ) -> None:
        super().__init__(server, model=model, max_concurrency=max_concurrency)
        self._granularities = list(granularities)

    def form_fields(self, *, language: str | None, prompt: str | None) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "model": self.model,
            "response_format": "verbose_json",
            "timestamp_granularities[]": self._granularities,
            "temperature": "0",
        }
        if language:
            fields["language"] = language
        if prompt and prompt.strip():
            fields["prompt"] = prompt.strip()
        return fields

    async def transcribe(
        self, samples: np.ndarray, *, language: str | None, prompt: str | None, filename: str = "audio.wav"
    ) -> dict[str, Any]:
        """The server's JSON answer for ``samples`` (16 kHz mono floats)."""
        return await self.post_json(
            data=self.form_fields(language=language, prompt=prompt),
            files={"file": (filename, wav_from_float(samples), "audio/wav")},
        )
