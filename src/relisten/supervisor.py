"""`relisten up`: the embedded default on one machine.

Starts nats-server (unless ``RELISTEN_NATS_URL`` points elsewhere) — one server, or with
``nats_cluster=3`` three of them on loopback as one JetStream cluster — and one process per service
replica. It supervises all of them: a service replica or a nats-server that dies is started again (the
server on the same port and store directory, so JetStream recovers what it had accepted), with
exponential backoff; Ctrl-C stops the services, then NATS.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from relisten_runtime.addresses import without_credentials
from relisten_runtime.embedded import (
    EmbeddedNats,
    cluster_nodes,
    servers_url,
    start_all,
    wait_for_jetstream,
)

from relisten.services import SERVICES

DEFAULT_SYNC_INTERVAL = "always"
"""JetStream fsyncs every write on the servers ``relisten up`` starts: they all run on this one host,
so no replica elsewhere covers for a host crash (see the README's durability notes)."""

STABLE_AFTER_S = 60.0
"""A process that ran this long before dying is restarted at once; one that keeps dying backs off."""


@dataclass
class Backoff:
    """When to start a dead process again: 1 s, 2 s, 4 s ... up to ``max_s``, reset once it has run for
    :data:`STABLE_AFTER_S`."""

    max_s: float = 30.0
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = 0.0

    def started(self) -> None:
        self.started_at = time.monotonic()
        self.next_start = 0.0

    def schedule(self) -> float:
        """Note a death; the delay before the next start."""
        now = time.monotonic()
        self.restarts = 0 if now - self.started_at > STABLE_AFTER_S else self.restarts + 1
        delay = min(2.0 ** (self.restarts - 1) if self.restarts else 0.5, self.max_s)
        self.next_start = now + delay
        return delay

    def pending(self) -> bool:
        return self.next_start != 0.0

    def due(self) -> bool:
        return self.pending() and time.monotonic() >= self.next_start


@dataclass
class Child:
    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    backoff: Backoff = field(default_factory=Backoff)

    def start(self) -> None:
        log_file = open(self.log_path, "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            self.command, env=self.env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        log_file.close()
        self.backoff.started()

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


def parse_replicas(text: str) -> dict[str, int]:
    """``"asr=2,corrector=2"`` as ``{"asr": 2, "corrector": 2}``; raises ValueError on anything else."""
    replicas: dict[str, int] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, count = item.partition("=")
        name = name.strip()
        if not sep or name not in SERVICES:
            raise ValueError(
                f"{item!r}: expected <service>=<count> with a service among {', '.join(SERVICES)}"
            )
        try:
            replicas[name] = int(count)
        except ValueError:
            raise ValueError(f"{item!r}: the count must be a whole number") from None
        if replicas[name] < 1 or replicas[name] > 32:
            raise ValueError(f"{item!r}: between 1 and 32 replicas")
    return replicas


def embedded_nodes(
    data_dir: Path, nats_port: int, size: int, sync_interval: str | None = DEFAULT_SYNC_INTERVAL
) -> list[EmbeddedNats]:
    """The nats-server(s) ``relisten up`` runs: one on ``nats_port`` with its store in
    ``data_dir/nats``, or ``size`` cluster nodes on ``nats_port``, ``nats_port + 1``, ... routing on
    ``nats_port + 2000``, ... (4222 → 6222, the usual pair), stores in ``data_dir/nats/node-<i>``."""
    if size < 1:
        raise ValueError("at least one NATS node")
    if size == 1:
        return [EmbeddedNats(data_dir / "nats", port=nats_port, name="nats", sync_interval=sync_interval)]
    return cluster_nodes(
        data_dir / "nats",
        [nats_port + i for i in range(size)],
        [nats_port + 2000 + i for i in range(size)],
        sync_interval=sync_interval,
    )


@dataclass
class SupervisedNats:
    """One embedded nats-server that is started again, on the same port and store, when it dies."""

    node: EmbeddedNats
    log_path: Path
    backoff: Backoff = field(default_factory=lambda: Backoff(max_s=10.0))

    def check(self, say: Callable[[str], None]) -> None:
        """Called in the supervision loop: notice a death, start it again when the backoff allows."""
        if self.node.running():
            return
        if not self.backoff.pending():
            code = self.node.exit_code()
            delay = self.backoff.schedule()
            say(
                f"nats-server {self.node.name} ({self.node.url}) exited with {code}; restarting in {delay:g} s"
            )
            return
        if self.backoff.due():
            try:
                self.node.start(log_file=self.log_path)
            except TimeoutError:
                self.node.stop()
                delay = self.backoff.schedule()
                say(f"nats-server {self.node.name} did not come back; trying again in {delay:g} s")
                return
            self.backoff.started()
            say(f"nats-server {self.node.name} restarted on {self.node.url} (pid {self.node.pid})")


def run_stack(
    data_dir: Path,
    port: int,
    nats_port: int,
    replicas: dict[str, int] | None = None,
    nats_cluster: int = 1,
    sync_interval: str | None = DEFAULT_SYNC_INTERVAL,
) -> int:
    """Run NATS and the services until interrupted; returns the exit code."""
    data_dir.mkdir(parents=True, exist_ok=True)
    logs = data_dir / "logs"
    logs.mkdir(exist_ok=True)
    env = dict(os.environ)
    env.setdefault("RELISTEN_DATA_DIR", str(data_dir))
    env["RELISTEN_INGEST_PORT"] = str(port)

    def say(line: str) -> None:
        print(line, flush=True)

    nats: list[SupervisedNats] = []
    if not env.get("RELISTEN_NATS_URL"):
        nodes = embedded_nodes(data_dir, nats_port, nats_cluster, sync_interval)
        start_all(nodes, logs)
        nats = [SupervisedNats(node, logs / f"nats-{node.name}.log") for node in nodes]
        for server in nats:
            server.backoff.started()
        env["RELISTEN_NATS_URL"] = servers_url(nodes)
        if nats_cluster > 1:
            # Every stream, KV bucket and Object Store on all nodes: one node may die and nothing is lost.
            env["RELISTEN_STREAM_REPLICAS"] = str(nats_cluster)
        wait_for_jetstream(env["RELISTEN_NATS_URL"])
        kind = f"a {nats_cluster}-node JetStream cluster" if nats_cluster > 1 else "JetStream"
        say(
            f"nats-server ({kind}, store {data_dir / 'nats'}, sync {sync_interval or 'default'}) on {env['RELISTEN_NATS_URL']}"
        )
    else:
        say(f"using NATS at {without_credentials(env['RELISTEN_NATS_URL'])}")
        if nats_cluster > 1:
            say("RELISTEN_NATS_URL is set: --nats-cluster is ignored (that cluster is not started here)")

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
    say(f"relisten is starting: API and web page on http://127.0.0.1:{port} (logs in {logs})")
    try:
        while not stopping:
            time.sleep(0.5)
            for server in nats:
                server.check(say)
            supervise_children(children, say)
    finally:
        say("stopping relisten ...")
        for child in children:
            child.stop()
        # The workers drain for up to RELISTEN_SHUTDOWN_GRACE_S before handing events back: wait for that.
        grace_s = float(env.get("RELISTEN_SHUTDOWN_GRACE_S") or 20.0)
        for child in children:
            child.wait(grace_s + 15)
        for server in nats:
            server.node.stop()
    return 0


def supervise_children(children: Sequence[Child], say: Callable[[str], None]) -> None:
    for child in children:
        if child.process is None or child.process.poll() is None:
            continue
        if not child.backoff.pending():
            delay = child.backoff.schedule()
            say(f"{child.name} exited with {child.process.returncode}; restarting in {delay:g} s")
        elif child.backoff.due():
            child.start()
