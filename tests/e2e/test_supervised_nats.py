"""`relisten up` supervises its embedded nats-server: killed with SIGKILL in the middle of a job, it is
started again on the same port and store, the services reconnect, and the job completes exactly once.
The same with ``--nats-cluster 3 --replicas asr=2``: one of the three nodes is killed."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import nats.errors
import pytest
from relisten_contracts import STREAM_NAME, Subject, decode_event
from relisten_runtime.embedded import free_port

from relisten.dataset import Recording, long_form_recordings
from relisten.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.nats]


def children_named(parent: int, command: str) -> list[int]:
    """Pids of the live child processes of ``parent`` whose command name is ``command`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        if name == command and int(fields[1]) == parent and fields[0] != "Z":
            found.append(int(entry.name))
    return found


async def subjects_of(nats_url: str, job_id: str) -> list[str]:
    nc = await nats.connect(servers=nats_url.split(","))
    try:
        sub = await nc.jetstream().subscribe(">", stream=STREAM_NAME, ordered_consumer=True)
        found: list[str] = []
        while True:
            try:
                msg = await sub.next_msg(timeout=1)
            except nats.errors.TimeoutError:
                return found
            if decode_event(msg.data).job_id == job_id:
                found.append(msg.subject)
    finally:
        await nc.close()


def children_running(parent: int, argument: str) -> int:
    """How many live children of ``parent`` have ``argument`` among their command-line arguments."""
    count = 0
    for pid in Path("/proc").iterdir():
        try:
            stat = (pid / "stat").read_text()
            arguments = (pid / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and argument.encode() in arguments:
            count += 1
    return count


def nats_ports(nodes: int) -> int:
    """A client port P such that P .. P+nodes-1 and, for a cluster, the route ports P+2000 .. are free
    (where `relisten up --nats-port P --nats-cluster N` puts them)."""
    for _ in range(50):
        base = free_port()
        wanted = [base + i for i in range(nodes)] + (
            [base + 2000 + i for i in range(nodes)] if nodes > 1 else []
        )
        try:
            for port in wanted:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no block of free ports")


async def stream_replicas(nats_url: str) -> int:
    nc = await nats.connect(servers=nats_url.split(","))
    try:
        return (await nc.jetstream().stream_info(STREAM_NAME)).config.num_replicas or 1
    finally:
        await nc.close()


@pytest.fixture(scope="module", params=[1, 3], ids=["one-server", "cluster-of-3"])
def up(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[subprocess.Popen[bytes], Stack, Path, int]]:
    """``relisten up`` as a real process with its own embedded nats-server(s)."""
    nodes: int = request.param
    data_dir = tmp_path_factory.mktemp("up")
    port, nats_port = free_port(), nats_ports(nodes)
    # The stack's environment (short ack wait and heartbeats), but no RELISTEN_NATS_URL: `up` embeds.
    stack = Stack("unused", data_dir, port=port)
    env = {key: value for key, value in stack.env().items() if key != "RELISTEN_NATS_URL"}
    out = data_dir / "up.out"
    with out.open("ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "relisten",
                "up",
                "--port",
                str(port),
                "--nats-port",
                str(nats_port),
                "--data-dir",
                str(data_dir),
                "--nats-cluster",
                str(nodes),
                "--replicas",
                f"asr={min(nodes, 2)}",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    stack.nats_url = ",".join(f"nats://127.0.0.1:{nats_port + i}" for i in range(nodes))
    try:
        stack.wait_ready()
        yield process, stack, out, nodes
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_a_killed_nats_server_is_restarted_and_the_job_completes_once(
    up: tuple[subprocess.Popen[bytes], Stack, Path, int],
) -> None:
    process, stack, out, nodes = up
    recording: Recording = next(
        r for r in long_form_recordings(include_sonnets=False) if r.name == "chapter-1688-142285"
    )
    servers = children_named(process.pid, "nats-server")
    assert len(servers) == nodes
    if nodes > 1:
        assert asyncio.run(stream_replicas(stack.nats_url)) == nodes
        assert children_running(process.pid, "asr") == 2, "--replicas asr=2"
    server = servers[0]
    job_id = str(stack.submit(recording)["id"])
    stack.wait_for(job_id, {"transcribing"}, timeout_s=120)

    os.kill(server, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while "restarted" not in out.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "restarted" in out.read_text(), out.read_text()
    again = children_named(process.pid, "nats-server")
    assert len(again) == nodes and server not in again

    view = stack.wait_for(job_id, timeout_s=400)
    assert view["status"] == "completed", (view, out.read_text())
    subjects = asyncio.run(subjects_of(stack.nats_url, job_id))
    print(
        f"\nafter a SIGKILL of one of {nodes} nats-server(s) mid-job: {subjects.count(Subject.JOB_MERGED)} job.merged, "
        f"{subjects.count(Subject.WORDS_SCORED)} words.scored; supervisor said:\n{out.read_text()}"
    )
    assert subjects.count(Subject.JOB_CREATED) == 1
    assert subjects.count(Subject.WORDS_SCORED) == 1
    assert subjects.count(Subject.JOB_MERGED) == 1
    assert Subject.JOB_FAILED not in subjects
    assert process.poll() is None, "the supervisor keeps running"
