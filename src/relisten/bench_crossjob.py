"""Cross-job batching in the corrector: does decoding concurrent jobs' clips together pay on this machine?

``python -m relisten.bench_crossjob [--jobs 4] [--rounds 3] [--skip-stack]`` measures it twice, on the
validation part's recordings (the ``--jobs`` longest):

* **model**: each recording's real clips (its first pass decoded as the asr does, windows planned as
  the clipper plans them), re-decoded by the corrector's backend in one process, each job's call one
  after another (as today) and all jobs in one shared call
  (:meth:`~relisten_corrector.backends.FasterWhisperBackend.transcribe_together`), the two orders
  alternating over ``--rounds``; model seconds, and whether every clip heard the same words;
* **stack**: the services as real processes on a real nats-server, the ``--jobs`` recordings uploaded
  at once (total wall to the last completion, the corrector's CPU seconds, the jobs' second-pass
  seconds, WER) and then one at a time (per-job wall), for each variant of the corrector: off (one job
  at a time, no batcher), concurrent jobs without the batcher, and the batcher on. ``--asr-replicas``
  first-pass replicas (default: as many as jobs) make the jobs reach the corrector close together, as
  a scaled deployment does; with one, the first pass spaces them out and they rarely meet.

Speed lives here, not in tests. On a shared machine the numbers are only as good as the quiet around
them: the load average is printed with each part.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from relisten.bench import corpus_wer, resolve_model, served_audio
from relisten.dataset import SAMPLE_RATE, Recording, development_recordings

VARIANTS: dict[str, dict[str, str]] = {
    "off": {"RELISTEN_CORRECTOR_CONCURRENT_JOBS": "1", "RELISTEN_CORRECTOR_BATCH_LINGER_S": "0"},
    "concurrent, no batcher": {
        "RELISTEN_CORRECTOR_CONCURRENT_JOBS": "4",
        "RELISTEN_CORRECTOR_BATCH_LINGER_S": "0",
    },
    "batcher on": {"RELISTEN_CORRECTOR_CONCURRENT_JOBS": "4", "RELISTEN_CORRECTOR_BATCH_LINGER_S": "0.1"},
}


def load_average() -> str:
    return Path("/proc/loadavg").read_text().strip()


# --- the model alone ---------------------------------------------------------------------------------


@dataclass
class ModelPart:
    jobs: int
    clips: int
    audio_s: float
    chunks_alone: int
    one_by_one_s: list[float] = field(default_factory=list)
    together_s: list[float] = field(default_factory=list)
    same_words: bool = True
    words_differing: float = 0.0
    """Word error rate between the shared call's words and each job's own call's (the most of any round)."""
    repacked_s: list[float] = field(default_factory=list)
    """All jobs' clips packed together into fewer chunks (one requester of all the clips)."""
    words_differing_repacked: float = 0.0
    chunks_together: int = 0
    chunk_lengths_s: list[list[float]] = field(default_factory=list)
    load_before: str = ""
    load_after: str = ""

    @property
    def ratio(self) -> float:
        """Together / one by one, over all rounds (total seconds)."""
        return sum(self.together_s) / sum(self.one_by_one_s) if self.one_by_one_s else float("nan")


def job_clips(recordings: Sequence[Recording]) -> tuple[list[list[np.ndarray]], list[str]]:
    """Each recording's clips as the pipeline cuts them, and its language."""
    from relisten_asr.settings import AsrSettings
    from relisten_clipper.domain import ClipPolicy, find_windows, to_sample_range
    from relisten_clipper.settings import ClipperSettings

    from relisten.replay import decode_first_passes

    first_passes = decode_first_passes(recordings, AsrSettings().first_pass_model)
    policy = ClipPolicy(**ClipperSettings().policy_fields())  # type: ignore[arg-type]
    clips: list[list[np.ndarray]] = []
    for recording, first in zip(recordings, first_passes, strict=True):
        audio = served_audio(recording)
        windows = find_windows(first.words, first.segments, first.duration_s, policy)
        ranges = [to_sample_range(w.start_s, w.end_s, SAMPLE_RATE, len(audio)) for w in windows]
        clips.append([audio[lo:hi] for lo, hi in ranges])
    return clips, [first.language for first in first_passes]


def measure_model(recordings: Sequence[Recording], rounds: int) -> ModelPart:
    from relisten_corrector.backends import FasterWhisperBackend
    from relisten_corrector.settings import CorrectorSettings

    clips, languages = job_clips(recordings)
    language = languages[0]
    backend = FasterWhisperBackend(CorrectorSettings(second_pass_model=resolve_model("bundled:base")))
    backend.load()
    part = ModelPart(
        jobs=len(clips),
        clips=sum(len(c) for c in clips),
        audio_s=sum(len(clip) for job in clips for clip in job) / SAMPLE_RATE,
        chunks_alone=sum(backend.chunk_count(job) for job in clips),
        chunks_together=backend.chunk_count([clip for job in clips for clip in job]),
        chunk_lengths_s=[[round(len(c) / SAMPLE_RATE, 1) for c in job] for job in clips],
        load_before=load_average(),
    )

    async def one_by_one() -> tuple[float, list[list[str]]]:
        started = time.perf_counter()
        heard = [
            [a.text for a in await backend.transcribe_many(job, prompt=None, language=language)]
            for job in clips
        ]
        return time.perf_counter() - started, heard

    async def together() -> tuple[float, list[list[str]]]:
        started = time.perf_counter()
        answers = await backend.transcribe_together(clips, prompt=None, language=language)
        return time.perf_counter() - started, [[a.text for a in job] for job in answers]

    async def repacked() -> tuple[float, list[list[str]]]:
        started = time.perf_counter()
        flat = [clip for job in clips for clip in job]
        answers = await backend.transcribe_many(flat, prompt=None, language=language)
        seconds = time.perf_counter() - started
        heard, at = [], 0
        for job in clips:
            heard.append([a.text for a in answers[at : at + len(job)]])
            at += len(job)
        return seconds, heard

    async def run() -> None:
        await one_by_one()  # warm-up
        for round_ in range(rounds):
            seconds_alone, alone = await one_by_one() if round_ % 2 == 0 else (0.0, [])
            seconds_together, shared = await together()
            seconds_repacked, mixed = await repacked()
            if round_ % 2:
                seconds_alone, alone = await one_by_one()
            part.one_by_one_s.append(seconds_alone)
            part.together_s.append(seconds_together)
            part.repacked_s.append(seconds_repacked)
            part.same_words = part.same_words and alone == shared
            part.words_differing = max(part.words_differing, _differing(alone, shared))
            part.words_differing_repacked = max(part.words_differing_repacked, _differing(alone, mixed))

    asyncio.run(run())
    part.load_after = load_average()
    return part


def _differing(reference: list[list[str]], hypothesis: list[list[str]]) -> float:
    return corpus_wer(
        [" ".join(job) or "-" for job in reference], [" ".join(job) or "-" for job in hypothesis]
    )


# --- the real stack ----------------------------------------------------------------------------------


@dataclass
class StackPart:
    variant: str
    env: dict[str, str]
    concurrent_wall_s: float = 0.0
    concurrent_completed: int = 0
    corrector_cpu_s: float = 0.0
    second_pass_s: float = 0.0
    wer: float = 0.0
    one_at_a_time_wall_s: list[float] = field(default_factory=list)
    one_at_a_time_second_pass_s: float = 0.0
    shared_calls: list[int] = field(default_factory=list)
    """Requests in each call the batcher shared between jobs (from the corrector's log)."""
    load_before: str = ""
    load_after: str = ""


def _second_pass_seconds(stack: Any, job_id: str) -> tuple[float, str]:
    transcript = httpx.get(f"{stack.base_url}/v1/jobs/{job_id}/transcript", timeout=30).json()
    return float(transcript["stats"]["second_pass_seconds"]), str(transcript["text"])


def measure_stack(
    recordings: Sequence[Recording], label: str, env: dict[str, str], asr_replicas: int, work: Path
) -> StackPart:
    from relisten_runtime.embedded import EmbeddedNats, free_port

    from relisten.services import WORKER_SERVICES
    from relisten.stack import Stack

    server = EmbeddedNats(work / "nats", port=free_port()).start(log_file=work / "nats.log")
    stack = Stack(server.url, work, extra_env=env)
    names = ["ingest"] + [
        f"{service}#{i}"
        for service in WORKER_SERVICES
        for i in range(1, (asr_replicas if service == "asr" else 1) + 1)
    ]
    part = StackPart(label, env, load_before=load_average())
    try:
        stack.start(tuple(names))
        warm = Recording("warm-up", recordings[0].audio[: 20 * SAMPLE_RATE], "")
        if stack.wait_for(str(stack.submit(warm)["id"]), timeout_s=900)["status"] != "completed":
            raise RuntimeError("warm-up failed")
        corrector = stack.services["corrector#1"]
        cpu_before = corrector.cpu_seconds() or 0.0
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=len(recordings)) as pool:
            ids = [str(answer["id"]) for answer in pool.map(stack.submit, recordings)]
        views = [stack.wait_for(job_id, timeout_s=3600) for job_id in ids]
        part.concurrent_wall_s = time.perf_counter() - started
        part.corrector_cpu_s = (corrector.cpu_seconds() or 0.0) - cpu_before
        part.concurrent_completed = sum(view["status"] == "completed" for view in views)
        texts = []
        for job_id in ids:
            seconds, text = _second_pass_seconds(stack, job_id)
            part.second_pass_s += seconds
            texts.append(text)
        part.wer = corpus_wer([r.reference for r in recordings], texts)
        for recording in recordings:
            started = time.perf_counter()
            job_id = str(stack.submit(recording)["id"])
            stack.wait_for(job_id, timeout_s=3600)
            part.one_at_a_time_wall_s.append(time.perf_counter() - started)
            part.one_at_a_time_second_pass_s += _second_pass_seconds(stack, job_id)[0]
        part.load_after = load_average()
        log = (work / "corrector#1.log").read_text(errors="replace")
        part.shared_calls = _shared_calls(log)
        return part
    finally:
        stack.stop()
        server.stop()


# --- a backlog at the corrector -----------------------------------------------------------------------


@dataclass
class BacklogPart:
    variant: str
    env: dict[str, str]
    drain_wall_s: float = 0.0
    """From the corrector's start to the last job's completion, its model load excluded."""
    model_load_s: float = 0.0
    corrector_cpu_s: float = 0.0
    second_pass_s: float = 0.0
    completed: int = 0
    wer: float = 0.0
    shared_calls: list[int] = field(default_factory=list)
    load_before: str = ""
    load_after: str = ""


async def _clips_ready_count(nats_url: str) -> int:
    import nats
    from relisten_contracts import STREAM_NAME, Subject

    nc = await nats.connect(nats_url)
    try:
        info = await nc.jetstream().stream_info(STREAM_NAME, subjects_filter=Subject.CLIPS_READY)
        return int((info.state.subjects or {}).get(Subject.CLIPS_READY, 0))
    finally:
        await nc.close()


def measure_backlog(
    recordings: Sequence[Recording], label: str, env: dict[str, str], work: Path
) -> BacklogPart:
    """The jobs' clips all waiting for the corrector (as after a restart, or behind a scaled-out first
    pass), then the corrector started: how long it takes to drain them. Here jobs surely meet."""
    from relisten_runtime.embedded import EmbeddedNats, free_port

    from relisten.stack import Stack

    server = EmbeddedNats(work / "nats", port=free_port()).start(log_file=work / "nats.log")
    stack = Stack(server.url, work, extra_env=env)
    part = BacklogPart(label, env, load_before=load_average())
    try:
        stack.start(("ingest", "asr#1", "clipper#1", "merger#1", "notifier#1"))
        with ThreadPoolExecutor(max_workers=len(recordings)) as pool:
            ids = [str(answer["id"]) for answer in pool.map(stack.submit, recordings)]
        deadline = time.monotonic() + 1800
        while asyncio.run(_clips_ready_count(server.url)) < len(recordings):
            if time.monotonic() > deadline:
                raise TimeoutError("the first passes did not all finish")
            time.sleep(0.5)
        started = time.perf_counter()
        stack.start(("corrector#1",))
        views = [stack.wait_for(job_id, timeout_s=1800) for job_id in ids]
        wall = time.perf_counter() - started
        log = (work / "corrector#1.log").read_text(errors="replace")
        loaded = re.search(r"loaded faster-whisper:\S+ in ([0-9.]+) s", log)
        part.model_load_s = float(loaded.group(1)) if loaded else 0.0
        part.drain_wall_s = wall - part.model_load_s
        part.corrector_cpu_s = stack.services["corrector#1"].cpu_seconds() or 0.0
        part.completed = sum(view["status"] == "completed" for view in views)
        texts = []
        for job_id in ids:
            seconds, text = _second_pass_seconds(stack, job_id)
            part.second_pass_s += seconds
            texts.append(text)
        part.wer = corpus_wer([r.reference for r in recordings], texts)
        part.shared_calls = _shared_calls(log)
        part.load_after = load_average()
        return part
    finally:
        stack.stop()
        server.stop()


def _shared_calls(log: str) -> list[int]:
    return [int(n) for n in re.findall(r"(\d+) requests \(\d+ chunks\) re-decoded in one call", log)]


def _variant_runs(args: argparse.Namespace, jobs: int) -> list[tuple[str, dict[str, str]]]:
    """The variants to measure, in turn forwards then backwards ``args.repeat`` times (to spread the
    machine's drift), each with its environment (concurrent jobs: as many as there are recordings)."""
    labels = args.variant or list(VARIANTS)
    runs = []
    for turn in range(args.repeat):
        for label in labels if turn % 2 == 0 else labels[::-1]:
            env = dict(VARIANTS[label])
            if env["RELISTEN_CORRECTOR_CONCURRENT_JOBS"] != "1":
                env["RELISTEN_CORRECTOR_CONCURRENT_JOBS"] = str(jobs)
            runs.append((label, env))
    return runs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m relisten.bench_crossjob", description=__doc__)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--asr-replicas", type=int, default=0, help="default: as many as --jobs")
    parser.add_argument("--skip-model", action="store_true")
    parser.add_argument("--skip-stack", action="store_true")
    parser.add_argument("--skip-backlog", action="store_true")
    parser.add_argument("--variant", action="append", choices=list(VARIANTS), help="default: all")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of every variant, in turn forwards and backwards"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    recordings = sorted(development_recordings(split="validation", short=True), key=lambda r: -r.duration_s)[
        : args.jobs
    ]
    print(
        f"{len(recordings)} validation recordings, {sum(r.duration_s for r in recordings):.0f} s: "
        + ", ".join(f"{r.name} ({r.duration_s:.0f} s)" for r in recordings),
        flush=True,
    )
    payload: dict[str, Any] = {"recordings": [r.name for r in recordings]}
    if not args.skip_model:
        model = measure_model(recordings, args.rounds)
        payload["model"] = asdict(model) | {"ratio": model.ratio}
        print(
            f"model: {model.jobs} jobs, {model.clips} clips, {model.audio_s:.1f} s of clips in "
            f"{model.chunks_alone} chunks; one job's call after another "
            f"{' '.join(f'{s:.2f}' for s in model.one_by_one_s)} s, all in one call "
            f"{' '.join(f'{s:.2f}' for s in model.together_s)} s: together/one-by-one {model.ratio:.2f}; "
            f"same words {model.same_words} (differing {100 * model.words_differing:.1f} %); "
            f"all clips repacked together ({model.chunks_together} chunks) "
            f"{' '.join(f'{s:.2f}' for s in model.repacked_s)} s: "
            f"{sum(model.repacked_s) / sum(model.one_by_one_s):.2f} (differing "
            f"{100 * model.words_differing_repacked:.1f} %); clip lengths {model.chunk_lengths_s}; load {model.load_before!r} -> {model.load_after!r}",
            flush=True,
        )
    if not args.skip_stack:
        parts = []
        for label, env in _variant_runs(args, len(recordings)):
            with tempfile.TemporaryDirectory(prefix="relisten-crossjob-") as scratch:
                part = measure_stack(
                    recordings, label, env, args.asr_replicas or len(recordings), Path(scratch)
                )
            parts.append(part)
            print(
                f"stack, {label}: {part.concurrent_completed}/{len(recordings)} at once in "
                f"{part.concurrent_wall_s:.1f} s, corrector CPU {part.corrector_cpu_s:.1f} s, jobs' second "
                f"pass {part.second_pass_s:.1f} s, WER {100 * part.wer:.2f} %; one at a time "
                f"{' '.join(f'{s:.1f}' for s in part.one_at_a_time_wall_s)} s "
                f"(sum {sum(part.one_at_a_time_wall_s):.1f} s, second pass "
                f"{part.one_at_a_time_second_pass_s:.1f} s); calls shared by jobs {part.shared_calls}; load {part.load_before!r} -> {part.load_after!r}",
                flush=True,
            )
        payload["stack"] = [asdict(part) for part in parts]
    if not args.skip_backlog:
        backlog = []
        for label, env in _variant_runs(args, len(recordings)):
            with tempfile.TemporaryDirectory(prefix="relisten-crossjob-") as scratch:
                drained = measure_backlog(recordings, label, env, Path(scratch))
            backlog.append(drained)
            print(
                f"backlog, {label}: {drained.completed}/{len(recordings)} drained in {drained.drain_wall_s:.1f} s "
                f"(model load {drained.model_load_s:.1f} s apart), corrector CPU {drained.corrector_cpu_s:.1f} s "
                f"(load included), jobs' second pass {drained.second_pass_s:.1f} s, WER {100 * drained.wer:.2f} %; "
                f"calls shared by jobs {drained.shared_calls}; load {drained.load_before!r} -> {drained.load_after!r}",
                flush=True,
            )
        payload["backlog"] = [asdict(part) for part in backlog]
    if args.json:
        args.json.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
