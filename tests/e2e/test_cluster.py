"""A small cluster, for real: three nats-server processes on loopback as one JetStream cluster (every
stream, KV bucket and Object Store with 3 replicas), two replicas of every worker service, jobs of real
speech submitted concurrently. While they run, the node leading the stream is killed (SIGKILL) and later
started again on its store, and one replica of each worker service is killed as the jobs reach its
stage. Every job must complete exactly once: one transcript, one ``job.merged``, one callback (the
notifier delivers at least once under a stable ``webhook-id``, which receivers deduplicate on, so one
means one distinct ``webhook-id``; raw POSTs are counted too), no ``job.failed``, none stuck.

``RELISTEN_CLUSTER_JOBS`` sets the number of jobs: a handful in ``make test``, 20 in ``make chaos``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import cycle, islice
from pathlib import Path

import httpx
import nats
import nats.errors
import pytest
from relisten_contracts import STREAM_NAME, Subject
from relisten_runtime.embedded import (
    EmbeddedNats,
    cluster_nodes,
    free_port,
    servers_url,
    start_all,
    wait_for_jetstream,
)

from relisten.dataset import DEFAULT_DATA_DIR, Recording, decode, load_manifest
from relisten.health import problems
from relisten.services import SERVICES, WORKER_SERVICES
from relisten.stack import Stack, stream_events
from tests.e2e.test_failures import Receiver

pytestmark = [pytest.mark.e2e, pytest.mark.nats]

JOBS = int(os.environ.get("RELISTEN_CLUSTER_JOBS", "4"))
NODES = 3
STAGES = ("queued", "transcribing", "correcting", "merging", "completed")
KILL_WHEN = {"asr": "transcribing", "clipper": "correcting", "corrector": "correcting", "merger": "merging"}
"""When the first job reaches this stage, the second replica of the service is killed (the notifier's
when the first job completes): each dies while its stage has work, not idle before it starts."""


def shortest_utterances(count: int) -> list[Recording]:
    """``count`` recordings: the shortest single utterances of the development set (cycled when more
    are asked for than there are; each upload is still its own job)."""
    items = [item for item in load_manifest() if str(item.get("subset", "")).startswith("librispeech")]
    decoded = [
        Recording(str(i["id"]), decode(DEFAULT_DATA_DIR / str(i["audio"])), str(i["reference"]))
        for i in items
    ]
    decoded.sort(key=lambda r: r.duration_s)
    usable = [r for r in decoded if r.duration_s >= 3.0][: max(count, 1)]
    return list(islice(cycle(usable), count))


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[EmbeddedNats]]:
    root = tmp_path_factory.mktemp("cluster")
    running = cluster_nodes(root, [free_port() for _ in range(NODES)], [free_port() for _ in range(NODES)])
    start_all(running, root)
    try:
        wait_for_jetstream(servers_url(running))
        yield running
    finally:
        for node in running:
            node.stop()


async def stream_state(url: str) -> tuple[str | None, dict[str, bool]]:
    """The stream's leader and, for each other replica, whether it is current."""
    nc = await nats.connect(servers=url.split(","))
    try:
        info = await nc.jetstream(timeout=10).stream_info(STREAM_NAME)
        cluster = info.cluster
        if cluster is None:
            return None, {}
        return cluster.leader, {str(peer.name): bool(peer.current) for peer in cluster.replicas or []}
    finally:
        await nc.close()


def wait_until_consuming(stack: Stack, names: list[str], timeout_s: float = 300.0) -> None:
    """Every worker replica has loaded what it needs and consumes (its log says so)."""
    deadline = time.monotonic() + timeout_s
    waiting = list(names)
    while waiting and time.monotonic() < deadline:
        waiting = [n for n in waiting if "worker consuming from" not in _log(stack, n)]
        time.sleep(0.5)
    assert not waiting, f"{waiting} never started consuming:\n{stack.logs()}"


def wait_for_any(stack: Stack, job_ids: list[str], stage: str, timeout_s: float = 600.0) -> None:
    """Until some job has reached ``stage`` or gone beyond it (failed counts as beyond everything)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for job_id in job_ids:
            try:
                status = str(stack.view(job_id)["status"])
            except httpx.HTTPError:
                # Ingest reads the view from KV, whose leader may be on the node just killed: the
                # read waits out the election. The job goes on; ask again.
                continue
            if status == "failed" or (status in STAGES and STAGES.index(status) >= STAGES.index(stage)):
                return
        time.sleep(0.3)
    raise TimeoutError(f"no job reached {stage} in {timeout_s} s:\n{stack.logs()}")


def _log(stack: Stack, name: str) -> str:
    path: Path = stack.services[name].log_path
    return path.read_text(errors="replace") if path.exists() else ""


def test_every_job_completes_once_through_a_node_and_a_replica_of_each_service_dying(
    nodes: list[EmbeddedNats], tmp_path_factory: pytest.TempPathFactory
) -> None:
    url = servers_url(nodes)
    callbacks = Receiver(204, {})
    stack = Stack(url, tmp_path_factory.mktemp("cluster-stack"), extra_env={"RELISTEN_STREAM_REPLICAS": "3"})
    workers = [f"{service}#{i}" for service in WORKER_SERVICES for i in (1, 2)]
    try:
        stack.start(("ingest", *workers))
        wait_until_consuming(stack, workers)
        for service in SERVICES:
            assert asyncio.run(problems(service, url)) == [], f"relisten health {service}"

        recordings = shortest_utterances(JOBS)
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(
                pool.map(
                    lambda r: stack.submit(r[1], callback_url=f"{callbacks.url}/hook/{r[0]}"),
                    enumerate(recordings),
                )
            )
        job_ids = [str(answer["id"]) for answer in answers]

        # Chaos: as soon as the work is under way the stream leader's node dies, and one replica of
        # each worker service dies as the jobs reach its stage, none with a chance to clean up.
        wait_for_any(stack, job_ids, "transcribing")
        leader, _ = asyncio.run(stream_state(url))
        killed = next(node for node in nodes if node.name == leader)
        killed.kill()
        for stage in ("transcribing", "correcting", "merging", "completed"):
            wait_for_any(stack, job_ids, stage)
            for service in [s for s in WORKER_SERVICES if KILL_WHEN.get(s, "completed") == stage]:
                stack.services.pop(f"{service}#2").kill()
            if stage == "completed":
                killed.start()  # back on its store: it catches up from the others
        views = [stack.wait_for(job_id, timeout_s=600) for job_id in job_ids]

        deadline = time.monotonic() + 60
        while len(callbacks.requests) < JOBS and time.monotonic() < deadline:
            time.sleep(0.5)
        events: dict[str, Counter[str]] = {}
        for subject, event in stream_events(url):
            events.setdefault(event.job_id, Counter())[subject] += 1
        transcripts = [
            httpx.get(f"{stack.base_url}/v1/jobs/{job_id}/transcript", timeout=30).status_code
            for job_id in job_ids
        ]
        deliveries = {
            (json.loads(body)["data"]["job_id"], {k.lower(): v for k, v in headers.items()}["webhook-id"])
            for _, headers, body in callbacks.requests
        }
        notified = Counter(job_id for job_id, _ in deliveries)
        caught_up = False
        deadline = time.monotonic() + 60
        while not caught_up and time.monotonic() < deadline:
            _, replicas = asyncio.run(stream_state(url))
            caught_up = replicas.get(str(killed.name), False) or (
                replicas != {} and killed.name not in replicas and all(replicas.values())
            )
            time.sleep(1)

        completed = sum(view["status"] == "completed" for view in views)
        merged = [events.get(job_id, Counter())[Subject.JOB_MERGED] for job_id in job_ids]
        failed = sum(events.get(job_id, Counter())[Subject.JOB_FAILED] for job_id in job_ids)
        print(
            f"\ncluster of {NODES} nodes (killed {leader}, the stream leader, then restarted it), "
            f"2 replicas of each worker (one of each killed): {JOBS} jobs of "
            f"{sum(r.duration_s for r in recordings):.0f} s of speech; completed {completed}, "
            f"transcripts {transcripts.count(200)}, job.merged {sum(merged)} (per job {sorted(set(merged))}), "
            f"job.failed {failed}, callbacks {len(deliveries)} distinct (per job "
            f"{sorted(set(notified[j] for j in job_ids))}; {len(callbacks.requests)} POSTs), "
            f"restarted node current {caught_up}"
        )
        assert completed == JOBS, [view for view in views if view["status"] != "completed"]
        assert transcripts == [200] * JOBS
        assert merged == [1] * JOBS
        assert failed == 0
        assert [notified[job_id] for job_id in job_ids] == [1] * JOBS, callbacks.requests
        assert len(callbacks.requests) >= JOBS
        assert caught_up, "the restarted node rejoined the stream's replicas"
    finally:
        stack.stop()
        callbacks.close()
