"""Delivery against real loopback HTTP receivers, and the whole service against a real nats-server.

The receivers are ``http.server`` instances in background threads that answer from a script and record
every request with its arrival time, so retries and waits are observed from the receiving side.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
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
    JobOptions,
    Subject,
    encode,
)
from relisten_notifier.adapters import MAX_RESPONSE_BYTES, DeliveryLatch, HttpPoster
from relisten_notifier.app import build_worker
from relisten_notifier.domain import (
    GREEN,
    DeliveryRecord,
    DisabledDestination,
    destination_key,
    latch_key,
)
from relisten_notifier.handlers import NotifyHandler
from relisten_notifier.settings import NotifierSettings
from relisten_runtime.embedded import EmbeddedNats, free_port
from relisten_runtime.store import MemoryJobStore
from relisten_runtime.worker import RetryLater, Worker

from relisten.testing import job_merged

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

    def __init__(self, *script: Reply, port: int = 0) -> None:
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

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
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


# --- the HTTP adapter: one attempt, a capped read ---------------------------------------------------


async def test_an_answer_is_read_with_a_size_cap() -> None:
    huge = b"x" * (5 * MAX_RESPONSE_BYTES)
    with Receiver(Reply(500, {"x-test": "1"}, huge)) as server:
        answer = await HttpPoster(5.0).send(server.url, b"{}", {"content-type": "application/json"})
    assert answer.status == 500 and answer.headers["x-test"] == "1"
    assert answer.body == b"x" * MAX_RESPONSE_BYTES
    assert len(server.requests) == 1  # one attempt: retrying is the schedule's job


async def test_no_response_and_invalid_urls_are_told_apart() -> None:
    refused = await HttpPoster(2.0).send(f"http://127.0.0.1:{free_port()}/hook", b"{}", {})
    assert refused.status is None and "ConnectError" in refused.error and not refused.invalid_url
    invalid = await HttpPoster(2.0).send("ftp://example/x", b"{}", {})
    assert invalid.status is None and invalid.invalid_url


async def test_a_slow_receiver_times_out() -> None:
    with Receiver(Reply(200, delay_s=1.0)) as server:
        answer = await HttpPoster(0.3).send(server.url, b"{}", {})
    assert answer.status is None and "Timeout" in answer.error


# --- the handler against the in-memory job store (no NATS) ----------------------------------------


async def test_the_handler_delivers_once_and_schedules_a_failed_target_on_its_latch() -> None:
    now = [1_000.0]
    job_id = "job-memory"
    with Receiver(Reply(200, body=b'{"id": "1"}')) as discord, Receiver(Reply(503), Reply(204)) as callback:
        store = MemoryJobStore()
        handler = NotifyHandler(
            store=store,
            settings=notifier_settings("nats://127.0.0.1:9", discord, notify_schedule="30,60"),
            discord=HttpPoster(5.0),
            callbacks=HttpPoster(5.0),
            clock=lambda: now[0],
        )
        event = failure(job_id, f"{callback.url}/hook")
        with pytest.raises(RetryLater) as first:
            await handler(event)
        assert first.value.delay_s == pytest.approx(30.0)  # the callback's next attempt is due then
        assert (len(discord.requests), len(callback.requests)) == (1, 1)
        latch = DeliveryLatch(store)
        delivered = await latch.recorded(latch_key(job_id, "failed", "discord"))
        pending = await latch.recorded(latch_key(job_id, "failed", "callback"))
        assert delivered is not None and delivered.outcome == "delivered"
        assert pending is not None and (pending.outcome, pending.next_at) == ("pending", 1_030.0)

        now[0] += 10  # redelivered early: nothing is sent, the wait is what is left
        with pytest.raises(RetryLater) as early:
            await handler(event)
        assert early.value.delay_s == pytest.approx(20.0)
        assert (len(discord.requests), len(callback.requests)) == (1, 1)

        now[0] += 20  # due: the callback is sent again and answered; Discord is not sent twice
        assert await handler(event) == ()
        assert (len(discord.requests), len(callback.requests)) == (1, 2)
        done = await latch.recorded(latch_key(job_id, "failed", "callback"))
        assert done is not None and (done.outcome, done.attempts) == ("delivered", 2)
        assert await handler(event) == ()
        assert len(callback.requests) == 2


# --- the service against a real nats-server ------------------------------------------------------


@pytest.fixture
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A JetStream nats-server per test: a notice left pending on its schedule (an hour away) must not
    hold up the next test's acknowledgements."""
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


def notifier_settings(nats_url: str, discord: Receiver | None, **changes: Any) -> NotifierSettings:
    values: dict[str, Any] = {
        "nats_url": nats_url,
        "discord_webhook_url": f"{discord.url}/api/webhooks/1/token?thread_id=7" if discord else None,
        "webhook_secret": SECRET,
        "public_url": "https://relisten.example",
        "notify_schedule": "0.2,0.2,0.2",
    }
    values.update(changes)
    return NotifierSettings(**values)


async def wait_acked(worker: Worker, durable: str, stream_seq: int, timeout_s: float = 30.0) -> None:
    """Until the consumer has acknowledged everything up to ``stream_seq``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = await worker.infra.js.consumer_info(STREAM_NAME, durable)
        if info.ack_floor is not None and (info.ack_floor.stream_seq or 0) >= stream_seq:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{durable} did not ack stream sequence {stream_seq} within {timeout_s} s")


def failure(job_id: str, callback_url: str | None) -> JobFailed:
    return JobFailed(
        job_id=job_id,
        stage="transcribing",
        error=ErrorInfo(code="bad_audio", message="could not decode the upload"),
        options=JobOptions(callback_url=callback_url),
    )


async def fail_job_twice(worker: Worker, job_id: str, callback_url: str) -> None:
    """Publish a job.failed, then a redelivered copy the stream cannot deduplicate (another message
    id), and wait until the notifier has acknowledged both."""
    event = failure(job_id, callback_url)
    await worker.infra.publish(event)
    ack = await worker.infra.js.publish(
        Subject.JOB_FAILED, encode(event), stream=STREAM_NAME, headers={"Nats-Msg-Id": uuid.uuid4().hex}
    )
    await wait_acked(worker, "notifier-failed", ack.seq)


async def latch(worker: Worker, key: str) -> DeliveryRecord:
    entry = await worker.infra.notify.get(key)
    return msgspec.json.decode(entry.value or b"", type=DeliveryRecord)


async def until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            if condition():
                return
            await asyncio.sleep(0.05)


@pytest.mark.nats
async def test_job_merged_is_announced_once_per_target(
    nats_url: str, receivers: tuple[Receiver, Receiver]
) -> None:
    discord, callback = receivers
    job_id = f"job-{uuid.uuid4().hex[:8]}"
    event = job_merged(
        job_id,
        duration_s=60.0,
        text_preview="the quick brown fox",
        corrections_accepted=2,
        corrections_rejected=1,
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
async def test_a_receiver_down_for_a_while_gets_the_notice_when_it_is_back(nats_url: str) -> None:
    """Nothing listens on the callback's port for the first attempts; then a receiver starts there.
    Each attempt is a redelivery of the event from NATS (the schedule's waits are nacks with delay)."""
    job_id = f"job-{uuid.uuid4().hex[:8]}"
    port = free_port()
    worker = build_worker(notifier_settings(nats_url, None, notify_schedule="0.3,0.3,0.3,0.3,0.3,0.3"))
    await worker.start()
    try:
        await worker.infra.publish(failure(job_id, f"http://127.0.0.1:{port}/hook"))
        key = latch_key(job_id, "failed", "callback")

        async def failed_attempts() -> int:
            try:
                return (await latch(worker, key)).attempts
            except Exception:
                return 0

        async with asyncio.timeout(30):
            while True:
                if await failed_attempts() >= 2:
                    break
                await asyncio.sleep(0.05)
        with Receiver(Reply(204), port=port) as callback:
            await until(lambda: len(callback.requests) == 1)
            info = await worker.infra.js.consumer_info(STREAM_NAME, "notifier-failed")
            record = await latch(worker, key)
    finally:
        await worker.stop()
    assert record.outcome == "delivered" and record.attempts >= 3
    assert info.delivered.consumer_seq >= 3  # each attempt was a delivery from NATS, not a handler loop
    verify_standard_webhook(SECRET, callback.requests[0])


@pytest.mark.nats
async def test_one_receivers_429_does_not_delay_another_jobs_notice(nats_url: str) -> None:
    slow_job, other_job = (f"job-{uuid.uuid4().hex[:8]}" for _ in range(2))
    with (
        Receiver(Reply(429, {"Retry-After": "3600"})) as limited,
        Receiver(Reply(204)) as fine,
    ):
        worker = build_worker(notifier_settings(nats_url, None))
        await worker.start()
        try:
            await worker.infra.publish(failure(slow_job, f"{limited.url}/hook"))
            await worker.infra.publish(failure(other_job, f"{fine.url}/hook"))
            # Bounded far below the hour the first receiver asked for.
            await until(lambda: len(fine.requests) == 1, timeout_s=20)
            pending = await latch(worker, latch_key(slow_job, "failed", "callback"))
        finally:
            await worker.stop()
    assert len(limited.requests) == 1
    assert pending.outcome == "pending" and pending.attempts == 1 and pending.status == 429
    assert pending.next_at - pending.at == pytest.approx(3600.0)


@pytest.mark.nats
async def test_a_gone_destination_is_disabled_and_not_called_again(nats_url: str) -> None:
    first_job, second_job = (f"job-{uuid.uuid4().hex[:8]}" for _ in range(2))
    with (
        Receiver(Reply(404, body=b'{"message": "Unknown Webhook", "code": 10015}')) as discord,
        Receiver(Reply(410, body=b"gone")) as callback,
    ):
        worker = build_worker(notifier_settings(nats_url, discord))
        await worker.start()
        try:
            await fail_job_twice(worker, first_job, f"{callback.url}/gone")
            await fail_job_twice(worker, second_job, f"{callback.url}/gone")
            disabled = {
                key: msgspec.json.decode(
                    (await worker.infra.notify.get(key)).value or b"", type=DisabledDestination
                )
                for key in ("disabled.discord", destination_key("callback", f"{callback.url}/gone"))
            }
            second = await latch(worker, latch_key(second_job, "failed", "callback"))
        finally:
            await worker.stop()
    assert len(discord.requests) == 1 and len(callback.requests) == 1  # the second job called neither
    assert [d.status for d in disabled.values()] == [404, 410]
    assert all(d.until - d.at == pytest.approx(86400.0) for d in disabled.values())
    assert second.outcome == "gave_up" and second.reason == "destination disabled"


@pytest.mark.nats
async def test_the_schedule_bounds_the_attempts(nats_url: str) -> None:
    job_id = f"job-{uuid.uuid4().hex[:8]}"
    with Receiver(Reply(503)) as callback:
        worker = build_worker(notifier_settings(nats_url, None, notify_schedule="0.1,0.1"))
        await worker.start()
        try:
            await worker.infra.publish(failure(job_id, f"{callback.url}/hook"))
            key = latch_key(job_id, "failed", "callback")
            async with asyncio.timeout(30):
                while True:
                    with contextlib.suppress(Exception):
                        if (await latch(worker, key)).outcome == "gave_up":
                            break
                    await asyncio.sleep(0.05)
            record = await latch(worker, key)
        finally:
            await worker.stop()
    assert len(callback.requests) == 3  # the first attempt and one per wait of the schedule
    assert record.attempts == 3 and record.status == 503


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
