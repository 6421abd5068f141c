"""`relisten up` supervises its embedded nats-server: killed with SIGKILL in the middle of a job, it is
started again on the same port and store, the services reconnect, and the job completes exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
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
    nc = await nats.connect(nats_url)
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


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen[bytes], Stack, Path]]:
    """``relisten up`` as a real process with its own embedded nats-server."""
    data_dir = tmp_path_factory.mktemp("up")
    port, nats_port = free_port(), free_port()
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
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    stack.nats_url = f"nats://127.0.0.1:{nats_port}"
    try:
        stack.wait_ready()
        yield process, stack, out
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_a_killed_nats_server_is_restarted_and_the_job_completes_once(
    up: tuple[subprocess.Popen[bytes], Stack, Path],
) -> None:
    process, stack, out = up
    recording: Recording = next(
        r for r in long_form_recordings(include_sonnets=False) if r.name == "chapter-1688-142285"
    )
    (server,) = children_named(process.pid, "nats-server")
    job_id = str(stack.submit(recording)["id"])
    stack.wait_for(job_id, {"transcribing"}, timeout_s=120)

    os.kill(server, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while "restarted" not in out.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "restarted" in out.read_text(), out.read_text()
    (again,) = children_named(process.pid, "nats-server")
    assert again != server

    view = stack.wait_for(job_id, timeout_s=400)
    assert view["status"] == "completed", (view, out.read_text())
    subjects = asyncio.run(subjects_of(stack.nats_url, job_id))
    print(
        f"\nafter a SIGKILL of nats-server mid-job: {subjects.count(Subject.JOB_MERGED)} job.merged, "
        f"{subjects.count(Subject.WORDS_SCORED)} words.scored; supervisor said:\n{out.read_text()}"
    )
    assert subjects.count(Subject.JOB_CREATED) == 1
    assert subjects.count(Subject.WORDS_SCORED) == 1
    assert subjects.count(Subject.JOB_MERGED) == 1
    assert Subject.JOB_FAILED not in subjects
    assert process.poll() is None, "the supervisor keeps running"
