"""HTTP plumbing shared by the remote speech engines (asr) and backends (corrector): WAV encoding, and
POSTs with bounded, classified retries.

What is retried: timeouts, connection errors, 408, 429 and 5xx (a busy or restarting GPU server), with
exponential backoff and jitter, and never sooner than the server's ``Retry-After``. What is not: any
other 4xx (a bad request or a wrong key does not get better by asking again).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from relisten_runtime.audio import SAMPLE_RATE, wav_bytes

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class RemoteCallError(Exception):
    """A remote speech server could not answer; ``code`` is short and stable, ``retryable`` says whether
    asking again could help."""

    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


def pcm16_from_float(audio: np.ndarray) -> bytes:
    """Float samples in [-1, 1] as little-endian 16-bit PCM, rounded and clipped.

    The scale is 32768, the inverse of how the services turn stored PCM into floats, so a clip that came
    from PCM goes back to exactly the same samples.
    """
    samples = np.nan_to_num(np.asarray(audio, dtype=np.float64).reshape(-1), nan=0.0, posinf=1.0, neginf=-1.0)
    scaled = np.clip(np.rint(samples * 32768.0), -32768, 32767)
    return scaled.astype("<i2").tobytes()


def wav_from_float(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """A 16 kHz mono 16-bit WAV file of ``audio``."""
    return wav_bytes(pcm16_from_float(audio), sample_rate)


def api_root(base_url: str) -> str:
    """``http://host:8000``, whether the setting was given with or without a trailing ``/v1``."""
    root = base_url.strip().rstrip("/")
    return root.removesuffix("/v1")


def json_number(value: Any, what: str, default: float | None = None) -> float:
    """A number from a server's JSON answer (``default`` when absent and one is given); anything else,
    booleans included, is ``bad_response``."""
    if value is None and default is not None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RemoteCallError("bad_response", f"{what} is {value!r}, not a number")
    return float(value)


def retry_after_s(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or HTTP-date), None when absent or unreadable."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


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
    last: RemoteCallError | None = None
    for attempt in range(1, policy.max_attempts + 1):
        wait_at_least = 0.0
        try:
            async with gate or contextlib.nullcontext():
                response = await client.post(url, **request)
        except httpx.TimeoutException as exc:
            last = RemoteCallError(
                "timeout", f"no answer from {url} within the timeout ({exc!r})", retryable=True
            )
        except httpx.TransportError as exc:
            last = RemoteCallError("unreachable", f"cannot reach {url}: {exc!r}", retryable=True)
        else:
            if response.is_success:
                return response
            detail = response.text[:300].strip()
            if response.status_code not in RETRYABLE_STATUS:
                raise RemoteCallError(
                    f"http_{response.status_code}", f"{url} refused the request: {detail}", retryable=False
                )
            code = "rate_limited" if response.status_code == 429 else f"http_{response.status_code}"
            last = RemoteCallError(code, f"{url} answered {response.status_code}: {detail}", retryable=True)
            asked = retry_after_s(response)
            if asked is not None:
                if asked > policy.max_retry_after_s:
                    raise RemoteCallError(
                        code, f"{url} asked to wait {asked:.0f} s: giving up", retryable=True
                    )
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
    raise RemoteCallError(last.code, f"{last.message} (after {policy.max_attempts} attempts)", retryable=True)


def json_body(response: httpx.Response) -> dict[str, Any]:
    """The response's JSON object, or a ``bad_response`` error."""
    try:
        body = response.json()
    except ValueError as exc:
        raise RemoteCallError("bad_response", f"answer is not JSON: {response.text[:200]!r}") from exc
    if not isinstance(body, dict):
        raise RemoteCallError("bad_response", f"answer is not a JSON object: {response.text[:200]!r}")
    return body


class TranscriptionsClient:
    """An OpenAI-compatible ``/v1/audio/transcriptions`` endpoint (speaches, OpenAI, vLLM's Whisper):
    one multipart WAV per request, ``verbose_json`` with word timestamps back, retried by
    :func:`post_with_retries`. The asr engine and the corrector backend read the answer each their way."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None,
        timeout_s: float,
        max_attempts: int,
        backoff_s: float,
        granularities: tuple[str, ...],
        max_concurrency: int | None = None,
    ) -> None:
        self.model = model
        self.url = f"{api_root(base_url)}/v1/audio/transcriptions"
        self._granularities = list(granularities)
        self._policy = RetryPolicy(max_attempts=max_attempts, backoff_s=backoff_s)
        self._gate = asyncio.Semaphore(max_concurrency) if max_concurrency else None
        self._client = new_client(timeout_s, api_key)

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
        response = await post_with_retries(
            self._client,
            self.url,
            policy=self._policy,
            gate=self._gate,
            data=self.form_fields(language=language, prompt=prompt),
            files={"file": (filename, wav_from_float(samples), "audio/wav")},
        )
        return json_body(response)

    async def aclose(self) -> None:
        await self._client.aclose()
