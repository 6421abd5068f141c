"""Delivery against real loopback HTTP receivers, and the whole service against a real nats-server.

The receivers are ``http.server`` instances in background threads that answer from a script and record
every request with its arrival time, so retries and waits are observed from the receiving side.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec
import pytest
from relisten_contracts import (
    STREAM_NAME,
    ErrorInfo,
    JobFailed,
    JobMerged,
    JobOptions,
    Subject,
    encode,
)
from relisten_notifier.adapters import HttpPoster
from relisten_notifier.app import build_worker
from relisten_notifier.domain import (
    GREEN,
    RED,
    DeliveryRecord,
    RetryPolicy,
    discord_execute_url,
    latch_key,
    signing_key,
    webhook_headers,
)
from relisten_notifier.settings import NotifierSettings
from relisten_runtime.embedded import EmbeddedNats, free_port
from relisten_runtime.worker import Worker

SECRET = "whsec_" + base64.b64encode(b"relisten-test-secret-of-32-bytes").decode()


# --- a scripted loopback receiver ----------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay_s: float = 0.0


@dataclass(frozen=True)
class Seen:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """Answers request *n* with ``script[n]`` (the last reply repeats) and records every request."""

    def __init__(self, *script: Reply) -> None:
        self.script = list(script) or [Reply()]
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                parts = urlsplit(self.path)
                with receiver._lock:
                    receiver.requests.append(
                        Seen(
                            path=parts.path,
                            query=parse_qs(parts.query),
                            headers={k.lower(): v for k, v in self.headers.items()},
                            body=body,
                            at=time.monotonic(),
                        )
                    )
                    reply = receiver.script[min(len(receiver.requests), len(receiver.script)) - 1]
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("content-length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def gaps(self) -> list[float]:
        return [
            later.at - earlier.at for earlier, later in zip(self.requests, self.requests[1:], strict=False)
        ]


def verify_standard_webhook(secret: str, seen: Seen) -> None:
    """What a receiver does, written from the spec rather than with the code under test."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    msg_id = seen.headers["webhook-id"]
    timestamp = seen.headers["webhook-timestamp"]
    assert abs(int(timestamp) - time.time()) < 300
    signed = f"{msg_id}.{timestamp}.".encode() + seen.body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    offered = [s.split(",", 1)[1] for s in seen.headers["webhook-signature"].split() if s.startswith("v1,")]
    assert any(hmac.compare_digest(expected, s) for s in offered)


FAST = RetryPolicy(max_attempts=5, backoff_s=0.05, backoff_max_s=0.2, max_retry_after_s=10.0)


# --- the HTTP adapter ------------------------------------------------------------------------------


async def test_discord_429_waits_retry_after_then_posts_again() -> None:
    limited = Reply(
        429,
        {"Retry-After": "1", "content-type": "application/json"},
        b'{"message": "You are being rate limited.", "retry_after": 1.0, "global": false}',
    )
    with Receiver(limited, Reply(204)) as discord:
        url = discord_execute_url(f"{discord.url}/api/webhooks/1/token?thread_id=42")
        result = await HttpPoster(FAST, 5.0).post(url, b'{"embeds": []}', dict, target="discord", job_id="j")
    assert result.delivered and result.attempts == 2 and result.status == 204
    assert len(discord.requests) == 2
    assert discord.gaps()[0] >= 0.95
    for seen in discord.requests:
        assert seen.path == "/api/webhooks/1/token"
        assert seen.query == {"thread_id": ["42"], "wait": ["true"]}


async def test_discord_json_retry_after_is_honoured_without_the_header() -> None:
    limited = Reply(429, {"content-type": "application/json"}, b'{"retry_after": 0.4, "global": false}')
    with Receiver(limited, Reply(200, body=b"{}")) as discord:
        result = await HttpPoster(FAST, 5.0).post(discord.url, b"{}", dict, target="discord", job_id="j")
    assert result.delivered and result.attempts == 2
    assert 0.35 <= discord.gaps()[0] < 2.0


async def test_server_errors_are_retried_with_growing_waits() -> None:
    with Receiver(Reply(500), Reply(500), Reply(200)) as server:
        result = await HttpPoster(FAST, 5.0).post(server.url, b"{}", dict, target="callback", job_id="j")
    assert result.delivered and result.attempts == 3 and result.status == 200
    assert len(server.requests) == 3
    first, second = server.gaps()
    assert first >= 0.045 and second >= 0.095


async def test_client_error_is_not_retried() -> None:
    refused = Reply(
        400, {"content-type": "application/json"}, b'{"message": "Invalid Form Body", "code": 50035}'
    )
    with Receiver(refused) as server:
        result = await HttpPoster(FAST, 5.0).post(server.url, b"{}", dict, target="discord", job_id="j")
        await asyncio.sleep(0.3)
    assert not result.delivered
    assert result.attempts == 1 and result.status == 400
    assert "Invalid Form Body" in result.reason
    assert len(server.requests) == 1


async def test_attempts_are_bounded() -> None:
    with Receiver(Reply(503)) as server:
        policy = RetryPolicy(max_attempts=3, backoff_s=0.01, backoff_max_s=0.01)
        result = await HttpPoster(policy, 5.0).post(server.url, b"{}", dict, target="callback", job_id="j")
    assert not result.delivered and result.attempts == 3 and result.status == 503
    assert len(server.requests) == 3


async def test_a_wait_beyond_the_limit_gives_up_at_once() -> None:
    with Receiver(Reply(429, {"Retry-After": "3600"})) as server:
        result = await HttpPoster(FAST, 5.0).post(server.url, b"{}", dict, target="discord", job_id="j")
    assert not result.delivered and result.attempts == 1 and len(server.requests) == 1


async def test_timeouts_are_retried() -> None:
    with Receiver(Reply(200, delay_s=1.0), Reply(200)) as server:
        result = await HttpPoster(FAST, 0.3).post(server.url, b"{}", dict, target="callback", job_id="j")
    assert result.delivered and result.attempts == 2
    assert len(server.requests) == 2


async def test_refused_connections_are_retried_then_given_up() -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"
    policy = RetryPolicy(max_attempts=2, backoff_s=0.01)
    result = await HttpPoster(policy, 2.0).post(url, b"{}", dict, target="callback", job_id="j")
    assert not result.delivered and result.attempts == 2 and result.status is None
    assert "ConnectError" in result.reason


async def test_an_invalid_url_is_not_retried() -> None:
    result = await HttpPoster(FAST, 2.0).post("ftp://example/x", b"{}", dict, target="callback", job_id="j")
    assert not result.delivered and result.attempts == 1


async def test_callbacks_are_signed_again_on_every_attempt() -> None:
    body = b'{"type":"job.completed"}'
    key = signing_key(SECRET)
    with Receiver(Reply(502), Reply(204)) as server:
        result = await HttpPoster(FAST, 5.0).post(
            server.url,
            body,
            lambda: webhook_headers("msg_j_completed", int(time.time()), body, key),
            target="callback",
            job_id="j",
        )
    assert result.delivered and len(server.requests) == 2
    for seen in server.requests:
        assert seen.body == body
        assert seen.headers["webhook-id"] == "msg_j_completed"
        assert seen.headers["content-type"] == "application/json"
        verify_standard_webhook(SECRET, seen)


# --- the service against a real nats-server ------------------------------------------------------


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A JetStream nats-server of this module (the root tests' fixture is not visible from here)."""
    server = EmbeddedNats(tmp_path_factory.mktemp("notifier-nats"), port=free_port())
    server.start(log_file=tmp_path_factory.getbasetemp() / f"nats-{server.port}.log")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def receivers() -> Iterator[tuple[Receiver, Receiver]]:
    with Receiver(Reply(200, body=b'{"id": "1"}')) as discord, Receiver(Reply(204)) as callback:
        yield discord, callback


def notifier_settings(nats_url: str, discord: Receiver) -> NotifierSettings:
    return NotifierSettings(
        nats_url=nats_url,
        discord_webhook_url=f"{discord.url}/api/webhooks/1/token?thread_id=7",
        webhook_secret=SECRET,
        public_url="https://relisten.example",
        notify_backoff_s=0.01,
        notify_backoff_max_s=0.05,
        callback_max_attempts=2,
    )


async def wait_acked(worker: Worker, durable: str, stream_seq: int, timeout_s: float = 15.0) -> None:
    """Until the consumer has acknowledged everything up to ``stream_seq``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = await worker.infra.js.consumer_info(STREAM_NAME, durable)
        if info.ack_floor is not None and (info.ack_floor.stream_seq or 0) >= stream_seq:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{durable} did not ack stream sequence {stream_seq} within {timeout_s} s")


async def fail_job_twice(worker: Worker, job_id: str, callback_url: str) -> None:
    """Publish a job.failed, then a redelivered copy the stream cannot deduplicate (another message
    id), and wait until the notifier has acknowledged both."""
    event = JobFailed(
        job_id=job_id,
        stage="transcribing",
        error=ErrorInfo(code="bad_audio", message="could not decode the upload"),
        options=JobOptions(callback_url=callback_url),
    )
    await worker.infra.publish(event)
    ack = await worker.infra.js.publish(
        Subject.JOB_FAILED, encode(event), stream=STREAM_NAME, headers={"Nats-Msg-Id": uuid.uuid4().hex}
    )
    await wait_acked(worker, "notifier-failed", ack.seq)


async def latch(worker: Worker, key: str) -> DeliveryRecord:
    entry = await worker.infra.notify.get(key)
    return msgspec.json.decode(entry.value or b"", type=DeliveryRecord)


@pytest.mark.nats
async def test_job_merged_is_announced_once_per_target(
    nats_url: str, receivers: tuple[Receiver, Receiver]
) -> None:
    discord, callback = receivers
    job_id = f"job-{uuid.uuid4().hex[:8]}"
    event = JobMerged(
        job_id=job_id,
        transcript_ref=f"{job_id}/transcript.json",
        language="en",
        duration_s=60.0,
        text_preview="the quick brown fox",
        corrections_accepted=2,
        corrections_rejected=1,
        corrections_unresolved=0,
        words_flagged=5,
        first_pass_seconds=1.5,
        second_pass_seconds=2.5,
        audio_redecoded_seconds=12.0,
        occurred_at=time.time(),
        options=JobOptions(callback_url=f"{callback.url}/hooks/relisten?src=test"),
    )
    worker = build_worker(notifier_settings(nats_url, discord))
    await worker.start()
    try:
        await worker.infra.publish(event)
        # A redelivered copy the stream cannot deduplicate: another message id, another event time.
        again = msgspec.structs.replace(event, occurred_at=event.occurred_at + 5)
        ack = await worker.infra.js.publish(
            Subject.JOB_MERGED, encode(again), stream=STREAM_NAME, headers={"Nats-Msg-Id": uuid.uuid4().hex}
        )
        await wait_acked(worker, "notifier-merged", ack.seq)

        assert len(discord.requests) == 1
        assert len(callback.requests) == 1

        posted = discord.requests[0]
        assert posted.query == {"thread_id": ["7"], "wait": ["true"]}
        embed = posted.json()["embeds"][0]
        assert embed["color"] == GREEN
        assert "the quick brown fox" in embed["description"]
        assert {"name": "Corrections accepted", "value": "2", "inline": True} in embed["fields"]

        called = callback.requests[0]
        assert called.path == "/hooks/relisten" and called.query == {"src": ["test"]}
        verify_standard_webhook(SECRET, called)
        assert called.headers["webhook-id"] == f"msg_{job_id}_completed"
        payload = called.json()
        assert payload["type"] == "job.completed"
        assert payload["data"]["transcript_url"] == f"https://relisten.example/v1/jobs/{job_id}/transcript"

        for target in ("discord", "callback"):
            record = await latch(worker, latch_key(job_id, "merged", target))
            assert record.outcome == "delivered" and record.attempts == 1
    finally:
        await worker.stop()


@pytest.mark.nats
async def test_a_refused_callback_is_given_up_and_the_event_acked(nats_url: str) -> None:
    job_id = f"job-{uuid.uuid4().hex[:8]}"
    with (
        Receiver(Reply(429, {"Retry-After": "0.2"}), Reply(204)) as discord,
        Receiver(Reply(404, body=b"no such hook")) as callback,
    ):
        worker = build_worker(notifier_settings(nats_url, discord))
        await worker.start()
        try:
            await fail_job_twice(worker, job_id, f"{callback.url}/gone")

            assert len(discord.requests) == 2  # the 429, then the post that went through
            embed = discord.requests[1].json()["embeds"][0]
            assert embed["color"] == RED
            assert "could not decode the upload" in embed["description"]
            assert len(callback.requests) == 1
            assert callback.requests[0].json()["data"]["error"]["code"] == "bad_audio"

            gave_up = await latch(worker, latch_key(job_id, "failed", "callback"))
            assert gave_up.outcome == "gave_up" and gave_up.status == 404
            delivered = await latch(worker, latch_key(job_id, "failed", "discord"))
            assert delivered.outcome == "delivered" and delivered.attempts == 2
        finally:
            await worker.stop()


@pytest.mark.nats
async def test_callbacks_to_internal_addresses_are_refused_when_denied(
    nats_url: str, receivers: tuple[Receiver, Receiver]
) -> None:
    # Both receivers are on loopback; only the callback URL, which comes from whoever submitted the
    # job, is checked: Discord's URL is the operator's.
    discord, callback = receivers
    job_id = f"job-{uuid.uuid4().hex[:8]}"
    settings = notifier_settings(nats_url, discord).model_copy(update={"callback_private_addresses": "deny"})
    worker = build_worker(settings)
    await worker.start()
    try:
        await fail_job_twice(worker, job_id, f"{callback.url}/internal")

        assert callback.requests == []
        assert len(discord.requests) == 1
        refused = await latch(worker, latch_key(job_id, "failed", "callback"))
        assert refused.outcome == "gave_up" and refused.attempts == 0
        assert "127.0.0.1" in refused.reason and "RELISTEN_CALLBACK_PRIVATE_ADDRESSES" in refused.reason
    finally:
        await worker.stop()
