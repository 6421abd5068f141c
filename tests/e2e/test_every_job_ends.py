"""Every job ends, with real processes (nats-server and the six services, real models).

Graceful drain: ``relisten worker asr`` gets SIGTERM in the middle of a first pass.

* With a short ``RELISTEN_SHUTDOWN_GRACE_S`` the unfinished event is handed back (nak without delay):
  the restarted worker takes it at once although the AckWait is ten minutes, and the hand-back is
  not counted as one of the job's attempts.
* With a long grace the worker finishes the first pass, publishes it and only then exits.

A worker killed on the job's last delivery leaves it ``failed`` through ingest's watchdog, and a
failed job retried once its cause is fixed completes as run 1.

Each test prints its figures (how long the worker took to exit, time to terminal).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import nats
import pytest
from relisten_contracts import RUNTIME_BUCKET, Subject

from relisten.dataset import Recording, long_form_recordings
from relisten.services import SERVICES
from relisten.stack import Stack, stream_events

pytestmark = [pytest.mark.e2e, pytest.mark.nats]

ACK_WAIT_S = 600
"""Far longer than the tests wait: a job that goes on after a restart was handed back, not redelivered
by the AckWait."""


@pytest.fixture(scope="module")
def recording() -> Recording:
    return next(r for r in long_form_recordings(include_sonnets=False) if r.name == "chapter-2609-156975")


@pytest.fixture(scope="module")
def stack(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(
        nats_url,
        tmp_path_factory.mktemp("drain"),
        extra_env={"RELISTEN_ACK_WAIT_S": str(ACK_WAIT_S), "RELISTEN_SHUTDOWN_GRACE_S": "1"},
    ).start(SERVICES)
    try:
        yield running
    finally:
        running.stop()


async def handed_back(nats_url: str) -> dict[str, bytes]:
    nc = await nats.connect(nats_url)
    try:
        kv = await nc.jetstream().key_value(RUNTIME_BUCKET)
        try:
            keys = await kv.keys()
        except nats.js.errors.NoKeysError:
            return {}
        return {key: (await kv.get(key)).value or b"" for key in keys}
    finally:
        await nc.close()


def sigterm_and_time(stack: Stack, name: str, timeout_s: float) -> tuple[int, float]:
    """SIGTERM the service; its exit code and how long it took to exit."""
    process = stack.services[name].process
    assert process is not None
    started = time.monotonic()
    process.terminate()
    code = process.wait(timeout=timeout_s)
    return code, time.monotonic() - started


def test_sigterm_mid_job_hands_the_event_back_and_a_restart_takes_it_at_once(
    stack: Stack, recording: Recording, nats_url: str
) -> None:
    job_id = str(stack.submit(recording, correction="off")["id"])
    began = time.monotonic()
    stack.wait_for(job_id, {"transcribing"}, timeout_s=120)
    code, exit_s = sigterm_and_time(stack, "asr", timeout_s=60)
    assert stack.view(job_id)["status"] == "transcribing", "the SIGTERM must land mid-transcription"
    events = stream_events(nats_url, job_id)
    assert Subject.WORDS_SCORED not in [s for s, _ in events], "the first pass was not finished"
    marks = asyncio.run(handed_back(nats_url))
    assert [key for key in marks if key.startswith("handed-back.asr.")], marks

    stack.services["asr"].start()
    view = stack.wait_for(job_id, timeout_s=ACK_WAIT_S / 2)
    terminal_s = time.monotonic() - began
    print(
        f"\ndrain: asr exited {exit_s:.1f} s after SIGTERM (code {code}); job completed {terminal_s:.1f} s after submission"
    )
    assert view["status"] == "completed", view
    subjects = [s for s, _ in stream_events(nats_url, job_id)]
    assert subjects.count(Subject.WORDS_SCORED) == 1
    assert subjects.count(Subject.JOB_MERGED) == 1
    assert Subject.JOB_FAILED not in subjects
    assert exit_s < 30, "the worker must exit within the grace, not after the AckWait"


def test_sigterm_with_a_long_grace_lets_the_first_pass_finish(
    stack: Stack, recording: Recording, nats_url: str
) -> None:
    asr = stack.services["asr"]
    asr.stop()
    asr.env = {**asr.env, "RELISTEN_SHUTDOWN_GRACE_S": "240"}
    asr.start()
    job_id = str(stack.submit(recording, correction="off")["id"])
    stack.wait_for(job_id, {"transcribing"}, timeout_s=180)
    code, exit_s = sigterm_and_time(stack, "asr", timeout_s=300)
    subjects = [s for s, _ in stream_events(nats_url, job_id)]
    print(f"\ndrain: asr finished its first pass and exited {exit_s:.1f} s after SIGTERM (code {code})")
    assert subjects.count(Subject.WORDS_SCORED) == 1, "the in-flight first pass finished before the exit"
    asr.env = {**asr.env, "RELISTEN_SHUTDOWN_GRACE_S": "1"}
    asr.start()
    view = stack.wait_for(job_id, timeout_s=300)
    assert view["status"] == "completed", view
    subjects = [s for s, _ in stream_events(nats_url, job_id)]
    assert subjects.count(Subject.WORDS_SCORED) == 1
    assert Subject.JOB_FAILED not in subjects


def test_a_worker_killed_on_the_last_delivery_leaves_a_failed_job_not_a_stuck_one(
    stack: Stack, recording: Recording, nats_url: str
) -> None:
    """kill -9 of asr on the job's only delivery: nothing can publish job.failed from inside the worker.
    The server gives up on the event, announces it, and ingest's watchdog fails the job."""
    asr = stack.services["asr"]
    asr.stop()
    normal = dict(asr.env)
    # One delivery, none spare for hand-backs, a short AckWait (applied to the existing consumer).
    asr.env = {
        **normal,
        "RELISTEN_MAX_DELIVER": "1",
        "RELISTEN_SHUTDOWN_DELIVERIES": "0",
        "RELISTEN_ACK_WAIT_S": "5",
    }
    asr.start()
    try:
        job_id = str(stack.submit(recording, correction="off")["id"])
        began = time.monotonic()
        stack.wait_for(job_id, {"transcribing"}, timeout_s=180)
        asr.kill()
        asr.start()  # pulls again: the server finds the event out of deliveries
        view = stack.wait_for(job_id, timeout_s=120)
        terminal_s = time.monotonic() - began
        print(
            f"\nlast delivery killed: job {view['status']} ({view['error']['code']}) {terminal_s:.1f} s after submission"
        )
        assert view["status"] == "failed", view
        assert view["error"]["code"] == "deliveries_exhausted", view
        failures = [e for s, e in stream_events(nats_url, job_id) if s == Subject.JOB_FAILED]
        assert [f.stage for f in failures] == ["watchdog"]
    finally:
        asr.stop()
        asr.env = normal
        asr.start()


class Refusing:
    """A loopback OpenAI-compatible server that refuses every transcription (HTTP 400)."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                payload = json.dumps(
                    {"error": {"message": "model not found", "type": "invalid_request_error"}}
                )
                self.send_response(400)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload.encode())

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_failed_job_retried_after_the_cause_is_fixed_completes(
    stack: Stack, recording: Recording, nats_url: str
) -> None:
    """asr pointed at a first-pass server that refuses: the job fails. asr back on its own model, then
    POST /v1/jobs/{id}/retry: the job runs again as attempt 1 and completes."""
    asr = stack.services["asr"]
    normal = dict(asr.env)
    refusing = Refusing()
    asr.stop()
    asr.env = {**normal, "RELISTEN_ASR_ENGINE": "openai", "RELISTEN_ASR_BASE_URL": refusing.url}
    asr.start()
    try:
        job_id = str(stack.submit(recording, correction="off")["id"])
        failed = stack.wait_for(job_id, timeout_s=180)
        assert failed["status"] == "failed" and failed["error"]["code"] == "http_400", failed
    finally:
        asr.stop()
        asr.env = normal
        asr.start()
        refusing.close()
    answer = httpx.post(f"{stack.base_url}/v1/jobs/{job_id}/retry", timeout=30)
    assert answer.status_code == 202, answer.text
    assert (answer.json()["status"], answer.json()["attempt"]) == ("queued", 1)
    again = httpx.post(f"{stack.base_url}/v1/jobs/{job_id}/retry", timeout=30)
    assert again.status_code == 409 and again.json()["error"]["code"] == "job_not_failed"
    view = stack.wait_for(job_id, timeout_s=300)
    assert view["status"] == "completed" and view["attempt"] == 1, view
    transcript = httpx.get(f"{stack.base_url}/v1/jobs/{job_id}/transcript", timeout=30).json()
    assert transcript["text"].strip()
    runs = [(s, e.attempt) for s, e in stream_events(nats_url, job_id)]
    assert (Subject.JOB_FAILED, 0) in runs and (Subject.JOB_MERGED, 1) in runs
    assert (Subject.JOB_CREATED, 1) in runs and (Subject.WORDS_SCORED, 1) in runs
    assert Subject.JOB_RETRIED in [s for s, _ in runs]
