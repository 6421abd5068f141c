"""relisten's services as real processes against a nats-server: for end-to-end tests and the benchmark.

Each service runs as ``python -m relisten worker <name>`` (ingest serves the HTTP API) with the
environment of this process plus the stack's own settings, and logs to ``<work_dir>/<name>.log``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from relisten_runtime.embedded import free_port

from relisten.dataset import Recording

if TYPE_CHECKING:
    from relisten_contracts import FirstPass

__all__ = ["ServiceProcess", "Stack", "process_cpu_seconds", "server_sent_events"]


def process_cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds a live process has used so far (Linux ``/proc``), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = stat.rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


@dataclass
class ServiceProcess:
    name: str
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "relisten", "worker", self.name.split("#")[0]],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        """SIGKILL: no chance to ack, nack or clean up — the harshest crash."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def exited(self) -> bool:
        """Started, then ended (crashed, killed or stopped)."""
        return self.process is not None and self.process.poll() is not None

    def cpu_seconds(self) -> float | None:
        """CPU seconds the running process has used (None when it is not running)."""
        if self.process is None or self.process.poll() is not None:
            return None
        return process_cpu_seconds(self.process.pid)


def server_sent_events(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """``(event, data)`` for each event of a ``text/event-stream`` body given line by line (comments,
    ids and events without a name are skipped)."""
    fields: dict[str, str] = {}
    for line in lines:
        if line == "":
            if "event" in fields:
                yield fields["event"], fields.get("data", "")
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


EVENT_READ_TIMEOUT_S = 5.0
"""Silence on a job's event stream after which :meth:`Stack.wait_for` looks at the service processes
and follows the stream again (the stack's ingest sends a keep-alive every second)."""


@dataclass
class Stack:
    nats_url: str
    work_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    services: dict[str, ServiceProcess] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "RELISTEN_NATS_URL": self.nats_url,
                "RELISTEN_INGEST_PORT": str(self.port),
                "RELISTEN_DATA_DIR": str(self.work_dir),
                "RELISTEN_ACK_WAIT_S": "8",
                "RELISTEN_HEARTBEAT_S": "2",
                "RELISTEN_RETRY_BACKOFF_S": "0.5",
                "RELISTEN_INGEST_EVENTS_HEARTBEAT_S": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def start(self, names: tuple[str, ...]) -> Stack:
        env = self.env()
        for name in names:
            service = ServiceProcess(name, env, self.work_dir / f"{name}.log")
            service.start()
            self.services[name] = service
        self.wait_ready()
        return self

    def wait_ready(self, timeout_s: float = 240.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"ingest not ready after {timeout_s} s; logs in {self.work_dir}")

    def stop(self) -> None:
        for service in self.services.values():
            service.stop()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        """Stops whatever was started, also when starting failed half-way."""
        self.stop()

    def submit(self, recording: Recording, **form: str) -> dict[str, Any]:
        """Upload ``recording`` as a WAV file with ``form`` as the job's options; the 202 answer's body.

        Any other answer raises :class:`httpx.HTTPStatusError` carrying the answer's body.
        """
        response = httpx.post(
            f"{self.base_url}/v1/jobs",
            files={"file": (f"{recording.name}.wav", recording.wav_bytes(), "audio/wav")},
            data=form,
            timeout=60,
        )
        if response.status_code != 202:
            raise httpx.HTTPStatusError(
                f"upload of {recording.name}: HTTP {response.status_code}: {response.text[:2000]}",
                request=response.request,
                response=response,
            )
        body: dict[str, Any] = response.json()
        return body

    def wait_for(
        self,
        job_id: str,
        statuses: Collection[str] = ("completed", "failed"),
        *,
        timeout_s: float = 600.0,
    ) -> dict[str, Any]:
        """The job's view as soon as its status is one of ``statuses``.

        Follows the job's event stream (``GET /v1/jobs/{id}/events``) instead of polling: a poll loop
        fast enough to time a job to a twentieth of a second slowed the first pass by a fifth on a
        2-core machine (the poller, ingest and NATS answering it twenty times a second). Raises
        :class:`RuntimeError` when a service process exits meanwhile and :class:`TimeoutError` when
        time runs out, both with the services' logs.
        """
        deadline = time.monotonic() + timeout_s
        status = "unknown"
        while time.monotonic() < deadline:
            self._fail_if_a_service_exited(job_id, status)
            try:
                for event, data in self._events(job_id, deadline):
                    self._fail_if_a_service_exited(job_id, status)
                    if event in ("state", "status"):
                        status = str(json.loads(data)["status"])
                    elif event in ("completed", "failed"):
                        status = event
                    if status in statuses:
                        view = self.view(job_id)
                        if str(view["status"]) in statuses:
                            return view
            except httpx.ReadTimeout:
                continue  # quiet for a while: look at the processes, then follow again
            except httpx.HTTPError:
                time.sleep(1.0)  # a busy machine: the job goes on, ask again
        raise TimeoutError(f"job {job_id} still {status} after {timeout_s} s:\n{self.logs()}")

    def view(self, job_id: str) -> dict[str, Any]:
        """``GET /v1/jobs/{id}``."""
        response = httpx.get(f"{self.base_url}/v1/jobs/{job_id}", timeout=15)
        response.raise_for_status()
        view: dict[str, Any] = response.json()
        return view

    def _events(self, job_id: str, deadline: float) -> Iterator[tuple[str, str]]:
        """``(event, data)`` of the job's event stream until it ends, the deadline passes or nothing
        (not even a keep-alive) comes for a few seconds."""
        timeout = httpx.Timeout(15.0, read=EVENT_READ_TIMEOUT_S)
        with httpx.stream("GET", f"{self.base_url}/v1/jobs/{job_id}/events", timeout=timeout) as response:
            response.raise_for_status()
            for event in server_sent_events(response.iter_lines()):
                yield event
                if time.monotonic() > deadline:
                    return

    def _fail_if_a_service_exited(self, job_id: str, status: str) -> None:
        dead = [name for name, service in self.services.items() if service.exited()]
        if dead:
            raise RuntimeError(
                f"service(s) {', '.join(dead)} exited while job {job_id} was {status}:\n{self.logs()}"
            )

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds used so far by each running service process."""
        used = {name: service.cpu_seconds() for name, service in self.services.items()}
        return {name: seconds for name, seconds in used.items() if seconds is not None}

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}"
            for path in self.work_dir.glob("*.log")
        )


def stored_first_pass(nats_url: str, job_id: str) -> FirstPass:
    """The first pass the asr stored for ``job_id`` (words, segments, signals)."""
    import asyncio

    import msgspec
    import nats
    from relisten_contracts import DATA_BUCKET, FirstPass, first_pass_object

    async def read() -> FirstPass:
        nc = await nats.connect(nats_url)
        try:
            store = await nc.jetstream().object_store(DATA_BUCKET)
            stored = await store.get(first_pass_object(job_id))
            return msgspec.json.decode(stored.data or b"", type=FirstPass)
        finally:
            await nc.close()

    return asyncio.run(read())


def stream_events(
    nats_url: str, job_id: str | None = None, *, settle_s: float = 120.0
) -> list[tuple[str, Any]]:
    """Every event in the pipeline's stream with its subject, in order (of one job when ``job_id`` is
    given), read with an ordered consumer. Right after a node of a cluster restarts, the cluster may
    still be settling the stream's leadership and answer the consumer's creation with a timeout: it is
    asked again for up to ``settle_s``."""
    import asyncio

    import nats
    from relisten_contracts import STREAM_NAME, decode_event

    async def read() -> list[tuple[str, Any]]:
        nc = await nats.connect(servers=nats_url.split(","))
        try:
            deadline = time.monotonic() + settle_s
            while True:
                try:
                    sub = await nc.jetstream(timeout=10).subscribe(
                        ">", stream=STREAM_NAME, ordered_consumer=True
                    )
                    break
                except nats.errors.TimeoutError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(2)
            found: list[tuple[str, Any]] = []
            while True:
                try:
                    msg = await sub.next_msg(timeout=2)
                except nats.errors.TimeoutError:
                    return found
                event = decode_event(msg.data)
                if job_id is None or event.job_id == job_id:
                    found.append((msg.subject, event))
        finally:
            await nc.close()

    return asyncio.run(read())
