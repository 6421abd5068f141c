"""Failures end visibly: a stage that cannot succeed fails the job with a reason and a notification;
a second pass that cannot answer leaves its clips ``unresolved`` and the job still completes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from relisten_runtime.embedded import free_port

from relisten.dataset import Recording, long_form_recordings
from relisten.services import SERVICES
from relisten.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.nats]


class Receiver:
    """A loopback HTTP server that records every POST and answers with a fixed status and body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                receiver.requests.append((self.path, dict(self.headers), self.rfile.read(length)))
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def recording() -> Recording:
    return next(r for r in long_form_recordings(include_sonnets=False) if r.name == "chapter-1688-142285")


def run_job(stack: Stack, recording: Recording, **form: str) -> dict[str, Any]:
    return stack.wait_for(str(stack.submit(recording, **form)["id"]), timeout_s=300)


@pytest.fixture()
def refusing_first_pass() -> Iterator[Receiver]:
    server = Receiver(400, {"error": {"message": "model not found", "type": "invalid_request_error"}})
    yield server
    server.close()


def test_a_stage_that_cannot_succeed_fails_the_job_and_notifies(
    nats_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    refusing_first_pass: Receiver,
    recording: Recording,
) -> None:
    callback = Receiver(204, {})
    stack = Stack(
        nats_url,
        tmp_path_factory.mktemp("failing-stack"),
        extra_env={
            "RELISTEN_ASR_ENGINE": "openai",
            "RELISTEN_ASR_BASE_URL": refusing_first_pass.url,
            "RELISTEN_NOTIFIER_WEBHOOK_SECRET": "whsec_" + "c2VjcmV0LXNlY3JldC1zZWNyZXQ=",
        },
    ).start(SERVICES)
    try:
        view = run_job(stack, recording, callback_url=f"{callback.url}/hook")
        assert view["status"] == "failed", view
        assert view["error"]["code"] == "http_400", view
        assert "model not found" in view["error"]["message"], view
        transcript = httpx.get(f"{stack.base_url}/v1/jobs/{view['id']}/transcript", timeout=10)
        assert transcript.status_code == 409
        deadline = time.monotonic() + 30
        while not callback.requests and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(callback.requests) == 1, stack.logs()
        path, headers, body = callback.requests[0]
        assert path == "/hook"
        assert {"webhook-id", "webhook-timestamp", "webhook-signature"} <= {k.lower() for k in headers}
        payload = json.loads(body)
        assert payload["type"] == "job.failed"
        assert payload["data"]["job_id"] == view["id"]
        assert len(refusing_first_pass.requests) == 1, "a 4xx from the first pass is permanent: no retries"
    finally:
        stack.stop()
        callback.close()


def test_a_second_pass_that_never_answers_leaves_clips_unresolved(
    tmp_path_factory: pytest.TempPathFactory, recording: Recording
) -> None:
    from relisten_runtime.embedded import EmbeddedNats

    server = EmbeddedNats(tmp_path_factory.mktemp("nats-unresolved"), port=free_port()).start()
    closed_port = free_port()
    stack = Stack(
        server.url,
        tmp_path_factory.mktemp("unresolved-stack"),
        extra_env={
            "RELISTEN_CORRECTOR_BACKEND": "openai",
            "RELISTEN_CORRECTOR_BASE_URL": f"http://127.0.0.1:{closed_port}",
            "RELISTEN_CORRECTOR_MAX_ATTEMPTS": "2",
            "RELISTEN_CORRECTOR_BACKOFF_S": "0.1",
        },
    ).start(("ingest", "asr", "clipper", "corrector", "merger"))
    try:
        view = run_job(stack, recording)
        assert view["status"] == "completed", view
        transcript = httpx.get(f"{stack.base_url}/v1/jobs/{view['id']}/transcript", timeout=10).json()
        assert transcript["corrections"]
        assert {c["status"] for c in transcript["corrections"]} == {"unresolved"}
        assert all(w["source"] == "first" for w in transcript["words"])
        assert transcript["stats"]["corrections_accepted"] == 0
    finally:
        stack.stop()
        server.stop()
