"""Capacity: how many jobs and audio-seconds per minute this machine finishes, with 1 and 2 replicas of
asr and corrector, and which service the CPU goes to (the bottleneck).

``python -m relisten.capacity [--jobs 10] [--replicas 1 2]`` starts a nats-server and the services as
real processes for each replica count, warms them up with one job, then submits ``--jobs`` long-form
recordings of the development set at once (a backlog, as under load) and times them until the last one
completes. It samples ``/metrics`` every 2 s for the backlog and the queue depth, reads each process's
CPU seconds, and prints a table plus the load average (on a shared machine the numbers are only as
good as the quiet around them).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from itertools import cycle, islice
from pathlib import Path

import httpx
from relisten_runtime.embedded import EmbeddedNats, free_port

from relisten.dataset import SAMPLE_RATE, Recording, long_form_recordings
from relisten.services import WORKER_SERVICES
from relisten.stack import Stack, process_cpu_seconds

SCALED = ("asr", "corrector")


@dataclass
class CapacityResult:
    replicas: int
    jobs: int
    audio_s: float
    wall_s: float
    completed: int
    cpu_s: dict[str, float] = field(default_factory=dict)
    max_backlog_audio_s: float = 0.0
    max_queue_depth: dict[str, float] = field(default_factory=dict)
    load_before: str = ""
    load_after: str = ""

    @property
    def jobs_per_minute(self) -> float:
        return 60.0 * self.completed / self.wall_s if self.wall_s else 0.0

    @property
    def audio_s_per_minute(self) -> float:
        return 60.0 * self.audio_s / self.wall_s if self.wall_s else 0.0


def _metrics(base_url: str) -> tuple[float, dict[str, float]]:
    """Backlog audio-seconds and queue depth per consumer, read from ``/metrics``."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    backlog, depth = 0.0, {}
    for family in text_string_to_metric_families(text):
        if family.name == "relisten_backlog_audio_seconds":
            backlog = float(family.samples[0].value)
        elif family.name == "relisten_queue_depth":
            for sample in family.samples:
                depth[sample.labels["consumer"]] = float(sample.value)
    return backlog, depth


def measure(replicas: int, recordings: list[Recording], work: Path, threads: int = 0) -> CapacityResult:
    """One measurement; ``threads`` > 0 sets each asr and corrector replica's model threads."""
    server = EmbeddedNats(work / "nats", port=free_port()).start(log_file=work / "nats.log")
    env = {"RELISTEN_ASR_CPU_THREADS": str(threads), "RELISTEN_CORRECTOR_CPU_THREADS": str(threads)}
    stack = Stack(server.url, work, extra_env=env if threads else {})
    names = ["ingest"] + [
        f"{service}#{i}"
        for service in WORKER_SERVICES
        for i in range(1, (replicas if service in SCALED else 1) + 1)
    ]
    try:
        stack.start(tuple(names))
        warm = Recording("warm-up", recordings[0].audio[: 20 * SAMPLE_RATE], "")
        view = stack.wait_for(str(stack.submit(warm)["id"]), timeout_s=900)
        if view["status"] != "completed":
            raise RuntimeError(f"warm-up failed: {view}")
        cpu_before = {n: s.cpu_seconds() or 0.0 for n, s in stack.services.items()}
        result = CapacityResult(
            replicas,
            len(recordings),
            sum(r.duration_s for r in recordings),
            0.0,
            0,
            load_before=Path("/proc/loadavg").read_text().strip(),
        )
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.wait(2.0):
                try:
                    backlog, depth = _metrics(stack.base_url)
                except httpx.HTTPError:
                    continue
                result.max_backlog_audio_s = max(result.max_backlog_audio_s, backlog)
                for consumer, value in depth.items():
                    result.max_queue_depth[consumer] = max(result.max_queue_depth.get(consumer, 0.0), value)

        sampler = threading.Thread(target=sample, daemon=True)
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=8) as pool:
            ids = [str(a["id"]) for a in pool.map(stack.submit, recordings)]
        sampler.start()
        views = [stack.wait_for(job_id, timeout_s=3600) for job_id in ids]
        result.wall_s = time.perf_counter() - started
        sampling.set()
        sampler.join()
        result.completed = sum(v["status"] == "completed" for v in views)
        for name, service in stack.services.items():
            used = service.cpu_seconds()
            if used is not None:
                key = name.split("#")[0]
                result.cpu_s[key] = result.cpu_s.get(key, 0.0) + used - cpu_before.get(name, 0.0)
        nats_cpu = process_cpu_seconds(server.process.pid) if server.process else None
        if nats_cpu is not None:
            result.cpu_s["nats-server"] = nats_cpu
        result.load_after = Path("/proc/loadavg").read_text().strip()
        return result
    finally:
        stack.stop()
        server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m relisten.capacity", description=__doc__)
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--split-threads",
        action="store_true",
        help="give each asr and corrector replica cores/replicas model threads (instead of one per core each)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    recordings = list(islice(cycle(long_form_recordings(include_sonnets=False)), args.jobs))
    cores = len(os.sched_getaffinity(0))
    results = []
    for replicas in args.replicas:
        with tempfile.TemporaryDirectory(prefix="relisten-capacity-") as scratch:
            threads = max(1, cores // replicas) if args.split_threads else 0
            result = measure(replicas, recordings, Path(scratch), threads)
        results.append(result)
        busiest = max((k for k in result.cpu_s if k != "nats-server"), key=lambda k: result.cpu_s[k])
        print(
            f"{replicas} replica(s) of asr and corrector ({threads or 'auto'} threads each), {cores} cores: {result.completed}/{result.jobs} jobs, "
            f"{result.audio_s:.0f} s of audio in {result.wall_s:.0f} s = {result.jobs_per_minute:.2f} jobs/min, "
            f"{result.audio_s_per_minute:.0f} audio-s/min ({result.audio_s_per_minute / cores:.0f} per core); "
            f"CPU s per service { ({k: round(v) for k, v in sorted(result.cpu_s.items())}) }, busiest {busiest}; "
            f"max backlog {result.max_backlog_audio_s:.0f} s, max queue depth {result.max_queue_depth}; "
            f"load average before {result.load_before!r}, after {result.load_after!r}",
            flush=True,
        )
    if args.json:
        payload = [
            asdict(r)
            | {
                "jobs_per_minute": r.jobs_per_minute,
                "audio_s_per_minute": r.audio_s_per_minute,
                "cores": cores,
            }
            for r in results
        ]
        args.json.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
