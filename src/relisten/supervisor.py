"""`relisten up`: the embedded default on one machine.

Starts nats-server (unless ``RELISTEN_NATS_URL`` points elsewhere) and one process per service, restarts
a service that dies (with backoff), and stops everything on Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from relisten_runtime.embedded import EmbeddedNats

from relisten.services import SERVICES


@dataclass
class Child:
    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = field(default=0.0)

    def start(self) -> None:
        log_file = open(self.log_path, "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            self.command, env=self.env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        log_file.close()
        self.started_at = time.monotonic()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout_s: float) -> None:
        if self.process is None:
            return
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def service_command(name: str) -> list[str]:
    return [sys.executable, "-m", "relisten", "worker", name]


def run_stack(data_dir: Path, port: int, nats_port: int, replicas: dict[str, int] | None = None) -> int:
    """Run NATS and the services until interrupted; returns the exit code."""
    data_dir.mkdir(parents=True, exist_ok=True)
    logs = data_dir / "logs"
    logs.mkdir(exist_ok=True)
    env = dict(os.environ)
    env.setdefault("RELISTEN_DATA_DIR", str(data_dir))
    env["RELISTEN_PORT"] = str(port)
    nats: EmbeddedNats | None = None
    if not env.get("RELISTEN_NATS_URL"):
        nats = EmbeddedNats(data_dir / "nats", port=nats_port).start(log_file=logs / "nats-server.log")
        env["RELISTEN_NATS_URL"] = nats.url
        print(f"nats-server (JetStream, store {data_dir / 'nats'}) on {nats.url}", flush=True)
    else:
        print(f"using NATS at {env['RELISTEN_NATS_URL']}", flush=True)

    children = [
        Child(f"{name}-{i}", service_command(name), env, logs / f"{name}-{i}.log")
        for name in SERVICES
        for i in range((replicas or {}).get(name, 1))
    ]
    stopping = False

    def request_stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    for child in children:
        child.start()
    print(f"relisten is starting: API and web page on http://127.0.0.1:{port} (logs in {logs})", flush=True)
    try:
        while not stopping:
            time.sleep(0.5)
            for child in children:
                if child.process is None or child.process.poll() is None:
                    continue
                now = time.monotonic()
                if child.next_start == 0.0:
                    uptime = now - child.started_at
                    child.restarts = 0 if uptime > 60 else child.restarts + 1
                    delay = min(2.0**child.restarts, 30.0)
                    child.next_start = now + delay
                    print(
                        f"{child.name} exited with {child.process.returncode}; restarting in {delay:.0f} s",
                        flush=True,
                    )
                elif now >= child.next_start:
                    child.next_start = 0.0
                    child.start()
    finally:
        print("stopping relisten ...", flush=True)
        for child in children:
            child.stop()
        # The workers drain for up to RELISTEN_SHUTDOWN_GRACE_S before handing events back: wait for that.
        grace_s = float(env.get("RELISTEN_SHUTDOWN_GRACE_S") or 20.0)
        for child in children:
            child.wait(grace_s + 15)
        if nats is not None:
            nats.stop()
    return 0
