"""``serve()`` as a real process under uvicorn, configured from the environment, over real HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from relisten_runtime.embedded import free_port

from .conftest import SPEECH_WAV

pytestmark = pytest.mark.nats


@pytest.fixture
def server(nats_url: str, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "RELISTEN_NATS_URL": nats_url,
        "RELISTEN_INGEST_PORT": str(port),
        "RELISTEN_INGEST_HOST": "127.0.0.1",
        "RELISTEN_INGEST_MAX_UPLOAD_BYTES": "300000",
        "RELISTEN_INGEST_TMP_DIR": str(tmp_path),
    }
    code = "import asyncio; from relisten_ingest.app import serve; asyncio.run(serve())"
    log = (tmp_path.parent / "ingest-serve.log").open("wb")
    process = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert process.poll() is None, "ingest exited during startup"
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            pytest.fail("ingest never became ready")
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            log.close()
    output = (tmp_path.parent / "ingest-serve.log").read_text()
    # uvicorn re-raises the signal after its graceful shutdown: -SIGTERM is a clean exit here.
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "ingest stopped" in output, output


def test_serve_accepts_an_upload_over_http(server: str) -> None:
    with httpx.Client(base_url=server, timeout=30) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        response = client.post(
            "/v1/jobs", files={"file": ("quilter.wav", SPEECH_WAV.read_bytes(), "audio/wav")}
        )
        assert response.status_code == 202, response.text
        job = client.get(response.headers["location"]).json()
        assert job["status"] == "queued"
        assert job["duration_s"] == pytest.approx(5.855)
        audio = client.get(f"/v1/jobs/{job['id']}/audio")
        assert audio.status_code == 200 and audio.content[:4] == b"RIFF"


def test_declared_length_over_the_limit_is_refused_before_the_body(server: str) -> None:
    """The body is never read: a client that declares 3 GiB gets its 413 after sending only headers.

    Raw socket, because HTTP clients refuse to send less than the Content-Length they declare.
    """
    host, port = server.removeprefix("http://").split(":")
    request = (
        "POST /v1/jobs HTTP/1.1\r\n"
        f"Host: {host}\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\n"
        f"Content-Length: {3 * 1024**3}\r\n"
        "\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request + b"--x\r\n")
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), reply
    assert json.loads(body)["error"]["code"] == "upload_too_large"


def test_environment_limit_applies(server: str) -> None:
    """RELISTEN_INGEST_MAX_UPLOAD_BYTES=300000 in the child: a body over it is refused."""
    payload = SPEECH_WAV.read_bytes() * 2  # 375 kB
    with httpx.Client(base_url=server, timeout=30) as client:
        response = client.post("/v1/jobs", files={"file": ("big.wav", payload, "audio/wav")})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "upload_too_large"
