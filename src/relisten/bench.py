"""Accuracy and cost of relisten against its own two models, in one run on this machine.

``python -m relisten.bench`` (``make bench``) transcribes the development set's long-form recordings
(each LibriSpeech chapter with ten or more utterances, concatenated in id order with 0.6 s of silence,
plus the LibriVox sonnet readings; see ``relisten.dataset``) three ways:

(a) the first-pass model alone on the whole audio, in this process;
(b) the second-pass model alone on the whole audio, in this process;
(c) the full relisten pipeline: a nats-server and the six services as real processes, each recording
    uploaded over HTTP and its transcript read back.

(a) and (b) decode exactly the way the asr service decodes a whole recording (``relisten_asr``'s
engine, ``RELISTEN_ASR_*`` settings such as ``RELISTEN_ASR_BATCH_SIZE``), on the 16-bit audio the
pipeline stores, with the model loaded and warmed up beforehand. Compute is the decode's wall time
(``time.perf_counter``) and CPU time of this process (``time.process_time``, all threads). For (c),
compute is the pipeline's own model time (``first_pass_seconds + second_pass_seconds`` of each
transcript), wall is upload-to-completed per job (jobs run one at a time), and CPU is what the service
processes used between the start and end of each job (``/proc/<pid>/stat``).

``--second-pass-garbage`` adds (g): the pipeline again, its corrector pointed (``openai`` backend) at a
loopback server that answers every clip with confident, unrelated words. The merger's guards must
reject all of it: WER(g) must equal the WER of the same jobs' first pass and of (a).

``--split tuning|validation`` runs one part of the development material (``relisten.dataset``: split by
speaker; decide levers on validation only), ``--short`` adds the short LibriSpeech utterances joined per
speaker, ``--degraded tel,mp3,opus,speed0.9,speed1.1`` adds channel-degraded copies of every recording
made at run time. After the table the bench prints paired bootstrap 95 % intervals of WER differences
((c)-(a), (c)-(b), (b)-(a), each variant against (c)), resampling reference utterances together with
their degraded copies (``relisten.scoring``); a difference whose interval includes zero is "not a win".

WER is corpus-level (jiwer over all recordings: total errors over total reference words) after
``relisten.dataset.normalise_text`` on both sides: lower case; hyphens to spaces; typographic
apostrophes made plain; "mr"/"mrs"/"dr" spelt "mister"/"missus"/"doctor" as LibriSpeech spells them;
every character other than a-z, 0-9 and the apostrophe dropped; the numbers 1-10 written as words;
apostrophes at word edges stripped. Nothing else (no spelling variants, no larger numbers, no
contractions): such differences count as errors for every system alike.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from relisten.dataset import (
    DEFAULT_DATA_DIR,
    DEGRADATIONS,
    SAMPLE_RATE,
    Recording,
    development_recordings,
    normalise_text,
)
from relisten.scoring import Interval, TimedWord, UnitErrors, paired_bootstrap, unit_errors
from relisten.services import SERVICES
from relisten.stack import Stack, stored_first_pass

__all__ = ["GARBAGE_WORDS", "GarbageServer", "main", "served_audio"]

MODEL_SERVICES = ("asr", "corrector")
GARBAGE_WORDS: tuple[str, ...] = (
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "eiusmod",
    "tempor",
    "incididunt",
    "labore",
    "magna",
    "aliqua",
    "enim",
    "minim",
    "veniam",
    "quis",
    "nostrud",
    "exercitation",
    "ullamco",
    "laboris",
    "nisi",
    "aliquip",
    "commodo",
    "consequat",
)
"""What the garbage second pass says, whatever it hears: no word of it is English speech."""


# --- the garbage second pass -----------------------------------------------------------------------


class _GarbageHandler(BaseHTTPRequestHandler):
    server: _GarbageHTTPServer

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        count = self.server.words_per_answer
        self.server.answered += 1
        offset = self.server.answered % len(GARBAGE_WORDS)
        chosen = [GARBAGE_WORDS[(offset + i) % len(GARBAGE_WORDS)] for i in range(count)]
        body = json.dumps(
            {
                "task": "transcribe",
                "language": "en",
                "text": " ".join(chosen),
                "words": [
                    {"word": word, "start": 0.3 * i, "end": 0.3 * i + 0.25, "probability": 0.99}
                    for i, word in enumerate(chosen)
                ],
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


class _GarbageHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    answered = 0
    words_per_answer = 8


class GarbageServer:
    """A loopback OpenAI-compatible ``/v1/audio/transcriptions`` server that answers every request with
    confident words unrelated to the audio (probability 0.99, so only the drift guard can stop them).

    Use as a context manager; ``url`` is what ``RELISTEN_CORRECTOR_BASE_URL`` should be.
    """

    def __init__(self, words_per_answer: int = 8) -> None:
        self._server = _GarbageHTTPServer(("127.0.0.1", 0), _GarbageHandler)
        self._server.words_per_answer = words_per_answer
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def answered(self) -> int:
        return self._server.answered

    def __enter__(self) -> GarbageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


# --- results ---------------------------------------------------------------------------------------


@dataclass
class RecordingResult:
    name: str
    duration_s: float
    hypothesis: str
    wer: float
    compute_s: float
    """Model time: decode wall time for (a)/(b); first + second pass seconds for the pipeline."""
    wall_s: float
    cpu_s: float | None = None
    first_pass_s: float = 0.0
    second_pass_s: float = 0.0
    redecoded_s: float = 0.0
    words_flagged: int = 0
    clips: int = 0
    accepted: int = 0
    rejected: int = 0
    unresolved: int = 0
    replaced_words: int = 0
    first_pass_text: str | None = None
    first_pass_wer: float | None = None
    error: str | None = None
    words: list[TimedWord] = field(default_factory=list)
    """The hypothesis's words with times (scored per reference utterance for the intervals)."""


@dataclass
class SystemResult:
    key: str
    label: str
    pipeline: bool
    recordings: list[RecordingResult] = field(default_factory=list)
    cpu_by_service: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def total(self, name: str) -> float:
        return float(sum(getattr(r, name) or 0.0 for r in self.recordings))

    @property
    def cpu_s(self) -> float | None:
        if any(r.cpu_s is None for r in self.recordings):
            return None
        return self.total("cpu_s")

    @property
    def model_cpu_s(self) -> float | None:
        """CPU of the processes running models: this process for (a)/(b); asr + corrector for (c)."""
        if not self.pipeline:
            return self.cpu_s
        if not self.cpu_by_service:
            return None
        return sum(self.cpu_by_service.get(name, 0.0) for name in MODEL_SERVICES)


def corpus_wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Total word errors over total reference words, both sides through ``normalise_text``."""
    import jiwer

    refs = [normalise_text(text) for text in references]
    hyps = [normalise_text(text) for text in hypotheses]
    kept = [(r, h) for r, h in zip(refs, hyps, strict=True) if r]
    if not kept:
        return 0.0
    return float(jiwer.wer([r for r, _ in kept], [h for _, h in kept]))


def recording_wer(reference: str, hypothesis: str) -> float:
    return corpus_wer([reference], [hypothesis])


# --- (a) and (b): one model on the whole audio, in this process -------------------------------------


def served_audio(recording: Recording) -> np.ndarray:
    """The audio exactly as the pipeline stores it (16-bit PCM) and its first pass decodes it."""
    pcm = (np.clip(recording.audio, -1.0, 1.0) * 32767).astype("<i2")
    samples: np.ndarray = pcm.astype(np.float32) / 32768.0
    return samples


def resolve_model(spec: str, cache_dir: Path | None = None) -> str:
    """A model spec any faster-whisper user of this repository understands: the bundled models become
    their directories, anything else (size, hub id, directory) is passed through."""
    from relisten_speech.models import default_model_cache_dir
    from relisten_speech.models import resolve_model as resolve_model_dir

    return resolve_model_dir(spec, cache_dir or default_model_cache_dir())


def short_name(spec: str) -> str:
    return spec.removeprefix("bundled:").rstrip("/").rsplit("/", 1)[-1]


def run_whole_audio(
    key: str,
    label: str,
    spec: str,
    recordings: Sequence[Recording],
    *,
    batch_size: int | None,
    console: Any,
) -> SystemResult:
    """Decode every recording with one faster-whisper model the way the asr service does."""
    from relisten_asr.engines import FasterWhisperEngine
    from relisten_asr.settings import AsrSettings

    overrides: dict[str, Any] = {"first_pass_model": resolve_model(spec)}
    if batch_size is not None:
        overrides["batch_size"] = batch_size
    engine = FasterWhisperEngine(AsrSettings(**overrides))
    started = time.perf_counter()
    engine.load()
    result = SystemResult(key, label, pipeline=False)
    result.notes.append(f"model loaded in {time.perf_counter() - started:.1f} s (not counted)")

    async def decode_all() -> None:
        warm = served_audio(recordings[0])[: 10 * SAMPLE_RATE]
        await engine.transcribe(warm, language=None, prompt=None)
        for recording in recordings:
            audio = served_audio(recording)
            wall, cpu = time.perf_counter(), time.process_time()
            first = await engine.transcribe(audio, language=None, prompt=None)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            text = " ".join(word.word.strip() for word in first.words)
            result.recordings.append(
                RecordingResult(
                    name=recording.name,
                    duration_s=recording.duration_s,
                    hypothesis=text,
                    wer=recording_wer(recording.reference, text),
                    compute_s=wall,
                    wall_s=wall,
                    cpu_s=cpu,
                    words=[(w.start, w.end, w.word.strip()) for w in first.words],
                )
            )
            console.print(f"  {key} {recording.name}: {wall:.1f} s, WER {result.recordings[-1].wer:.3f}")

    asyncio.run(decode_all())
    asyncio.run(engine.aclose())
    return result


def run_whole_audio_remote(
    key: str, label: str, recordings: Sequence[Recording], *, backend: str, base_url: str, model: str | None
) -> SystemResult:
    """(b) for a second pass that is a server (vLLM chat, OpenAI-compatible): whole recordings sent
    through the corrector's own backend (the chat backend cuts them into <= 30 s pieces at pauses)."""
    from relisten_corrector.backends import build_backend
    from relisten_corrector.settings import CorrectorSettings

    settings = CorrectorSettings(backend=backend, base_url=base_url, model=model)
    result = SystemResult(key, label, pipeline=False)
    result.notes.append("remote model: CPU time is the server's and is not measured")

    async def decode_all() -> None:
        client = build_backend(settings)
        try:
            for recording in recordings:
                started = time.perf_counter()
                answer = await client.transcribe(served_audio(recording), prompt=None, language=None)
                wall = time.perf_counter() - started
                result.recordings.append(
                    RecordingResult(
                        name=recording.name,
                        duration_s=recording.duration_s,
                        hypothesis=answer.text,
                        wer=recording_wer(recording.reference, answer.text),
                        compute_s=wall,
                        wall_s=wall,
                        words=[(w.start, w.end, w.word.strip()) for w in answer.words or ()],
                    )
                )
        finally:
            await client.aclose()

    asyncio.run(decode_all())
    return result


# --- (c): the pipeline through the real services ---------------------------------------------------


def _get_json(client: httpx.Client, path: str, attempts: int = 5) -> Any:
    for attempt in range(attempts):
        try:
            response = client.get(path, timeout=30)
            response.raise_for_status()
            return response.json()
        except httpx.HTTPError:
            if attempt == attempts - 1:
                raise
            time.sleep(2.0)
    raise AssertionError("unreachable")


def run_pipeline(
    key: str,
    label: str,
    recordings: Sequence[Recording],
    *,
    env: dict[str, str],
    form: dict[str, str],
    console: Any,
    keep_dir: Path | None = None,
    job_timeout_s: float = 1800.0,
) -> SystemResult:
    """Start a nats-server and the six services, run the recordings one job at a time, stop it all."""
    from relisten_runtime.embedded import EmbeddedNats, free_port

    from relisten.stack import process_cpu_seconds

    result = SystemResult(key, label, pipeline=True)
    with tempfile.TemporaryDirectory(prefix="relisten-bench-") as scratch:
        work = Path(keep_dir) if keep_dir else Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        server = EmbeddedNats(work / "nats", port=free_port())
        server.start(log_file=work / "nats.log")
        stack = Stack(server.url, work, extra_env=env)
        try:
            started = time.perf_counter()
            stack.start(SERVICES)
            with httpx.Client(base_url=stack.base_url, timeout=300) as client:
                # Warm-up job (not counted): every service connected, both models loaded and run once.
                warm = Recording("warm-up", recordings[0].audio[: 20 * SAMPLE_RATE], "")
                view = stack.wait_for(stack.submit(warm, **form)["id"], timeout_s=job_timeout_s)
                if view["status"] != "completed":
                    raise RuntimeError(f"warm-up job failed: {view}\n{stack.logs()}")
                result.notes.append(
                    f"services started and warmed up in {time.perf_counter() - started:.1f} s"
                )
                pids = {name: s.process.pid for name, s in stack.services.items() if s.process}
                for recording in recordings:
                    try:
                        done = _run_job(client, stack, recording, form, pids, result, job_timeout_s)
                    except (httpx.HTTPError, TimeoutError, OSError) as exc:
                        done = RecordingResult(
                            name=recording.name,
                            duration_s=recording.duration_s,
                            hypothesis="",
                            wer=recording_wer(recording.reference, ""),
                            compute_s=0.0,
                            wall_s=0.0,
                            error=f"{type(exc).__name__}: {exc}",
                        )
                    result.recordings.append(done)
                    done = result.recordings[-1]
                    console.print(
                        f"  {key} {recording.name}: {done.wall_s:.1f} s wall, model {done.compute_s:.1f} s, "
                        f"WER {done.wer:.3f} (first pass {done.first_pass_wer or 0:.3f}), "
                        f"{done.redecoded_s:.1f}/{done.duration_s:.0f} s re-decoded, "
                        f"{done.accepted}/{done.rejected}/{done.unresolved} acc/rej/unres"
                        + (f" ERROR {done.error}" if done.error else "")
                    )
            nats_cpu = process_cpu_seconds(server.process.pid) if server.process else None
            if nats_cpu is not None:
                result.notes.append(f"nats-server used {nats_cpu:.1f} s CPU over the whole run")
        finally:
            stack.stop()
            server.stop()
    return result


def _run_job(
    client: httpx.Client,
    stack: Stack,
    recording: Recording,
    form: dict[str, str],
    pids: dict[str, int],
    result: SystemResult,
    job_timeout_s: float,
) -> RecordingResult:
    from relisten.stack import process_cpu_seconds

    before = {name: process_cpu_seconds(pid) or 0.0 for name, pid in pids.items()}
    started = time.perf_counter()
    job_id = str(stack.submit(recording, **form)["id"])
    view = stack.wait_for(job_id, timeout_s=job_timeout_s)
    wall = time.perf_counter() - started
    after = {name: process_cpu_seconds(pid) or 0.0 for name, pid in pids.items()}
    used = {name: after[name] - before[name] for name in pids}
    for name, seconds in used.items():
        result.cpu_by_service[name] = result.cpu_by_service.get(name, 0.0) + seconds
    if view["status"] != "completed":
        error = view.get("error") or {}
        return RecordingResult(
            name=recording.name,
            duration_s=recording.duration_s,
            hypothesis="",
            wer=recording_wer(recording.reference, ""),
            compute_s=0.0,
            wall_s=wall,
            cpu_s=sum(used.values()),
            error=f"{error.get('code')}: {error.get('message')}",
        )
    transcript = _get_json(client, f"/v1/jobs/{job_id}/transcript")
    stats = transcript["stats"]
    first_text = " ".join(word.word.strip() for word in stored_first_pass(stack.nats_url, job_id).words)
    return RecordingResult(
        name=recording.name,
        duration_s=recording.duration_s,
        hypothesis=transcript["text"],
        wer=recording_wer(recording.reference, transcript["text"]),
        compute_s=stats["first_pass_seconds"] + stats["second_pass_seconds"],
        wall_s=wall,
        cpu_s=sum(used.values()),
        first_pass_s=stats["first_pass_seconds"],
        second_pass_s=stats["second_pass_seconds"],
        redecoded_s=stats["audio_redecoded_seconds"],
        words_flagged=stats["words_flagged"],
        clips=len(transcript["corrections"]),
        accepted=stats["corrections_accepted"],
        rejected=stats["corrections_rejected"],
        unresolved=stats.get("corrections_unresolved", 0),
        replaced_words=sum(word.get("source") == "second" for word in transcript["words"]),
        first_pass_text=first_text,
        first_pass_wer=recording_wer(recording.reference, first_text),
        words=[(float(w["start"]), float(w["end"]), str(w["word"]).strip()) for w in transcript["words"]],
    )


# --- report ----------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


@dataclass
class Report:
    date: str
    data_dir: str
    first_model: str
    second_model: str
    threshold: float | None
    env: dict[str, str]
    machine: dict[str, Any]
    audio_s: float
    recordings: list[str]
    references: dict[str, str]
    systems: list[SystemResult]
    checks: dict[str, bool] = field(default_factory=dict)
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    sources: dict[str, Recording] = field(default_factory=dict, repr=False)
    """The recordings by name (their reference utterances score the intervals)."""

    def system(self, key: str) -> SystemResult | None:
        return next((s for s in self.systems if s.key == key), None)

    def units(self, system: SystemResult) -> list[UnitErrors]:
        """``system``'s errors per reference utterance (the recording's whole text when a hypothesis
        has no word times)."""
        units: list[UnitErrors] = []
        for result in system.recordings:
            recording = self.sources.get(result.name) or Recording(
                result.name, np.zeros(0, np.float32), self.references[result.name]
            )
            if not result.words and result.hypothesis:
                recording = Recording(recording.name, recording.audio, recording.reference)
                units += unit_errors(recording, [(0.0, 0.0, result.hypothesis)])
            else:
                units += unit_errors(recording, result.words)
        return units

    def intervals(self) -> list[tuple[str, Interval]]:
        """Paired bootstrap intervals: (c)-(a), (c)-(b), (b)-(a) and each variant against (c)."""
        pairs = [("c", "a"), ("c", "b"), ("b", "a"), ("c", "a0"), ("c", "b0")]
        pairs += [(s.key, "c") for s in self.systems if s.key.startswith("c") and s.key != "c"]
        out = []
        for x, y in pairs:
            sx, sy = self.system(x), self.system(y)
            if sx is None or sy is None or [r.name for r in sx.recordings] != [r.name for r in sy.recordings]:
                continue
            out.append((f"WER({x}) - WER({y})", paired_bootstrap(self.units(sx), self.units(sy))))
        return out

    def wer(self, system: SystemResult) -> float:
        names = [r.name for r in system.recordings]
        return corpus_wer([self.references[n] for n in names], [r.hypothesis for r in system.recordings])

    def first_pass_wer(self, system: SystemResult) -> float | None:
        if not system.pipeline or any(r.first_pass_text is None for r in system.recordings):
            return None
        return corpus_wer(
            [self.references[r.name] for r in system.recordings],
            [r.first_pass_text or "" for r in system.recordings],
        )

    def ratios(self) -> dict[str, float]:
        whole, hier = self.system("b"), self.system("c")
        if whole is None or hier is None or not whole.recordings or not hier.recordings:
            return {}
        ratios = {
            "wer_c_over_b": _ratio(self.wer(hier), self.wer(whole)),
            "compute_c_over_b": _ratio(hier.total("compute_s"), whole.total("compute_s")),
            "wall_c_over_b": _ratio(hier.total("wall_s"), whole.total("wall_s")),
        }
        # Issue-level cost targets: tiny.en's first pass against base on everything, and what one
        # re-decoded second costs against one second of base on everything.
        ratios["first_pass_c_over_b"] = _ratio(hier.total("first_pass_s"), whole.total("compute_s"))
        whole_audio = sum(r.duration_s for r in whole.recordings)
        if hier.total("redecoded_s") > 0 and whole_audio > 0:
            ratios["redecoded_second_over_b_second"] = _ratio(
                hier.total("second_pass_s") / hier.total("redecoded_s"),
                whole.total("compute_s") / whole_audio,
            )
        if hier.model_cpu_s is not None and whole.cpu_s is not None:
            ratios["model_cpu_c_over_b"] = _ratio(hier.model_cpu_s, whole.cpu_s)
        if hier.cpu_s is not None and whole.cpu_s is not None:
            ratios["all_cpu_c_over_b"] = _ratio(hier.cpu_s, whole.cpu_s)
        return ratios

    def rows(self) -> list[dict[str, str]]:
        rows = []
        for system in self.systems:
            audio = sum(r.duration_s for r in system.recordings)
            pipeline = system.pipeline
            first_wer = self.first_pass_wer(system)
            rows.append(
                {
                    "system": system.label,
                    "WER": f"{100 * self.wer(system):.2f} %",
                    "first pass WER": f"{100 * first_wer:.2f} %" if first_wer is not None else "",
                    "model compute s": f"{system.total('compute_s'):.1f}",
                    "wall s": f"{system.total('wall_s'):.1f}",
                    "model CPU s": _maybe(system.model_cpu_s),
                    "all CPU s": _maybe(system.cpu_s) if pipeline else "",
                    "re-decoded": f"{100 * system.total('redecoded_s') / audio:.1f} %"
                    if pipeline and audio
                    else "",
                    "clips acc/rej/unres": (
                        f"{system.total('clips'):.0f}: {system.total('accepted'):.0f}/"
                        f"{system.total('rejected'):.0f}/{system.total('unresolved'):.0f}"
                    )
                    if pipeline
                    else "",
                    "words replaced": f"{system.total('replaced_words'):.0f}" if pipeline else "",
                }
            )
        return rows

    def to_json(self) -> dict[str, Any]:
        return {
            "date": self.date,
            "data_dir": self.data_dir,
            "first_model": self.first_model,
            "second_model": self.second_model,
            "threshold": self.threshold,
            "env": self.env,
            "machine": self.machine,
            "audio_s": self.audio_s,
            "recordings": self.recordings,
            "normalisation": NORMALISATION,
            "systems": [
                {
                    "key": s.key,
                    "label": s.label,
                    "wer": self.wer(s),
                    "first_pass_wer": self.first_pass_wer(s),
                    "compute_s": s.total("compute_s"),
                    "wall_s": s.total("wall_s"),
                    "cpu_s": s.cpu_s,
                    "model_cpu_s": s.model_cpu_s,
                    "cpu_by_service": s.cpu_by_service,
                    "redecoded_s": s.total("redecoded_s"),
                    "notes": s.notes,
                    "per_recording": [asdict(r) for r in s.recordings],
                }
                for s in self.systems
            ],
            "ratios": self.ratios(),
            "intervals": {
                name: {"difference": i.difference, "low": i.low, "high": i.high, "verdict": i.verdict}
                for name, i in self.intervals()
            },
            "checks": self.checks,
            "settings": self.settings,
        }

    def to_markdown(self) -> str:
        rows = self.rows()
        lines = [
            f"# relisten benchmark, {self.date}",
            "",
            f"- models: first pass `{self.first_model}`, second pass `{self.second_model}`",
            f"- data: {len(self.recordings)} long-form recordings, {self.audio_s:.0f} s ({self.data_dir})",
            f"- machine: {self.machine['cpus']} CPUs, {self.machine['cpu_model']}, {self.machine['platform']}",
            f"- threshold: {self.threshold if self.threshold is not None else 'service default'}",
        ]
        if self.env:
            lines.append("- settings: " + ", ".join(f"`{k}={v}`" for k, v in sorted(self.env.items())))
        lines += ["", *_markdown_table(rows), ""]
        ratios = self.ratios()
        if ratios:
            lines.append("Ratios: " + ", ".join(f"{k} = {v:.2f}" for k, v in ratios.items()))
        for name, ok in self.checks.items():
            lines.append(f"- check {name}: {'pass' if ok else 'FAIL'}")
        intervals = self.intervals()
        if intervals:
            lines += [
                "",
                "Paired bootstrap 95 % intervals (utterances resampled with their degraded copies):",
                "",
            ]
            lines += [f"- {name}: {interval.text()}" for name, interval in intervals]
        lines += ["", "Per recording (WER %):", ""]
        header = ["recording", "s", *[s.key for s in self.systems]]
        per = []
        for name in self.recordings:
            cells = [
                name,
                f"{next(r.duration_s for s in self.systems for r in s.recordings if r.name == name):.0f}",
            ]
            for system in self.systems:
                found = next((r for r in system.recordings if r.name == name), None)
                cells.append(f"{100 * found.wer:.1f}" if found else "")
            per.append(dict(zip(header, cells, strict=True)))
        lines += _markdown_table(per)
        lines += ["", f"Scoring: {NORMALISATION}", ""]
        if self.settings:
            lines += ["Service settings in effect:", ""]
            for service, values in self.settings.items():
                lines.append(f"- {service}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
            lines.append("")
        return "\n".join(lines)


NORMALISATION = (
    "corpus-level WER (jiwer) after relisten.dataset.normalise_text on reference and hypothesis: lower "
    "case, hyphens to spaces, typographic apostrophes plain, mr/mrs/dr -> mister/missus/doctor, every "
    "character but a-z 0-9 and ' dropped, 1-10 as words, apostrophes at word edges stripped"
)


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def _maybe(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def _markdown_table(rows: list[dict[str, str]]) -> list[str]:
    if not rows:
        return []
    columns = [c for c in rows[0] if any(row[c] for row in rows)]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    lines += ["| " + " | ".join(row[c] for c in columns) + " |" for row in rows]
    return lines


def print_report(report: Report, console: Any) -> None:
    from rich.table import Table

    rows = report.rows()
    table = Table(
        title=f"relisten bench: {short_name(report.first_model)} then {short_name(report.second_model)}, "
        f"{len(report.recordings)} recordings, {report.audio_s:.0f} s of audio"
    )
    columns = [c for c in rows[0] if any(row[c] for row in rows)]
    for column in columns:
        table.add_column(column, justify="left" if column == "system" else "right")
    for row in rows:
        table.add_row(*(row[c] for c in columns))
    console.print(table)
    for name, value in report.ratios().items():
        console.print(f"  {name}: [bold]{value:.2f}")
    for name, ok in report.checks.items():
        console.print(f"  check {name}: " + ("[green]pass" if ok else "[red]FAIL"))
    for name, interval in report.intervals():
        console.print(f"  {name}: {interval.text()} (paired bootstrap 95 %, {interval.units} utterances)")
    for system in report.systems:
        for note in system.notes:
            console.print(f"  ({system.key}) {note}")
        if system.pipeline and system.cpu_by_service:
            spent = ", ".join(f"{k} {v:.1f}" for k, v in sorted(system.cpu_by_service.items()))
            console.print(f"  ({system.key}) CPU s by service: {spent}")
    console.print(f"  scoring: {NORMALISATION}")


# --- command line ----------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m relisten.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="development set directory")
    parser.add_argument(
        "--first-model",
        default=os.environ.get("RELISTEN_ASR_FIRST_PASS_MODEL", "bundled:tiny.en"),
        help="first-pass faster-whisper model: bundled:tiny.en, bundled:base, a size, hub id or directory",
    )
    parser.add_argument(
        "--second-model",
        default=os.environ.get("RELISTEN_CORRECTOR_SECOND_PASS_MODEL", "bundled:base"),
        help="second-pass model: a faster-whisper model as above, or the remote model name with "
        "--second-backend vllm/openai",
    )
    parser.add_argument(
        "--second-backend",
        choices=["faster-whisper", "vllm", "openai"],
        default="faster-whisper",
        help="how the corrector runs the second pass (vllm/openai need --second-base-url)",
    )
    parser.add_argument("--second-base-url", help="the second-pass server of the vllm/openai backends")
    parser.add_argument(
        "--threshold", type=float, help="confidence threshold sent with every job (default: the service's)"
    )
    parser.add_argument("--limit", type=int, help="only the first N recordings (by name)")
    parser.add_argument(
        "--joined",
        action="store_true",
        help="join the recordings into one long recording (2 s of silence between them), as an "
        "hour-long upload would be: per-job fixed costs (one second-pass chunk at least) then weigh "
        "as they would on long audio",
    )
    parser.add_argument("--recordings", help="comma-separated recording names to run (instead of all)")
    parser.add_argument(
        "--split",
        choices=["tuning", "validation"],
        help="only this part of the development material (split by speaker; decide on validation)",
    )
    parser.add_argument(
        "--short", action="store_true", help="also the short LibriSpeech utterances, joined per speaker"
    )
    parser.add_argument(
        "--degraded",
        default="",
        help=f"also channel-degraded copies of every recording, comma-separated: {', '.join(DEGRADATIONS)}",
    )
    parser.add_argument(
        "--systems",
        default="a,b,c",
        help="which systems to run, comma-separated: a (first model alone), b (second model alone), "
        "c (pipeline), g (pipeline with a garbage second pass), a0/b0 (a/b decoding sequentially)",
    )
    parser.add_argument(
        "--second-pass-garbage",
        action="store_true",
        help="also run (g): the pipeline with a second pass that answers unrelated text; its WER must "
        "equal the first pass's",
    )
    parser.add_argument(
        "--sequential-baselines",
        action="store_true",
        help="also run (a0) and (b0): both models alone decoding sequentially (RELISTEN_ASR_BATCH_SIZE=0), "
        "for reference; the ratios stay against (b)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="LABEL:KEY=VALUE,...",
        help="also run the pipeline with these settings on top (c1, c2, ... in the table), to measure "
        "one lever at a time in the same run; repeatable",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the services and the in-process decodes (e.g. RELISTEN_CLIPPER_HALF_WINDOW_S=0)",
    )
    parser.add_argument(
        "--output", action="append", type=Path, default=[], help="write results (.md or .json); repeatable"
    )
    parser.add_argument("--keep-dir", type=Path, help="keep the services' logs and NATS store here")
    parser.add_argument(
        "--no-languages",
        action="store_true",
        help="skip the languages part (per-language error rate and language identification on the "
        "non-English fixtures, relisten.multilingual)",
    )
    return parser


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through ``finally``: the services and nats-server stop


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    parser = _parser()
    args = parser.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 200)
    env = _assignments(args.env, parser)
    variants = _variants(args.variant, parser)
    os.environ.update(env)  # the in-process decodes read the same RELISTEN_ASR_* settings as the services
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if args.second_pass_garbage and "g" not in systems:
        systems.append("g")
    if args.sequential_baselines:
        systems += [key for key in ("a0", "b0") if key not in systems]
    unknown = set(systems) - {"a", "b", "c", "g", "a0", "b0"}
    if unknown:
        console.print(f"[red]unknown systems: {', '.join(sorted(unknown))}")
        return 2

    recordings = development_recordings(
        args.data_dir,
        names=[name.strip() for name in args.recordings.split(",")] if args.recordings else None,
        limit=args.limit,
        join=args.joined,
        split=args.split,
        short=args.short,
        degraded=[kind.strip() for kind in args.degraded.split(",") if kind.strip()],
    )
    if not recordings:
        console.print(f"[red]no long-form recordings in {args.data_dir}")
        return 2
    audio_s = sum(r.duration_s for r in recordings)
    console.print(
        f"{len(recordings)} recordings, {audio_s:.0f} s: {', '.join(r.name for r in recordings)}; "
        f"models {args.first_model} then {args.second_model} ({args.second_backend})"
    )

    form = {} if args.threshold is None else {"confidence_threshold": str(args.threshold)}
    pipeline_env = dict(env)
    pipeline_env["RELISTEN_ASR_FIRST_PASS_MODEL"] = _service_model(args.first_model, "bundled:tiny.en")
    pipeline_env["RELISTEN_CORRECTOR_BACKEND"] = args.second_backend
    if args.second_backend == "faster-whisper":
        pipeline_env["RELISTEN_CORRECTOR_SECOND_PASS_MODEL"] = _service_model(
            args.second_model, "bundled:base"
        )
    else:
        if not args.second_base_url:
            console.print("[red]--second-backend vllm/openai needs --second-base-url")
            return 2
        pipeline_env["RELISTEN_CORRECTOR_BASE_URL"] = args.second_base_url
        pipeline_env["RELISTEN_CORRECTOR_MODEL"] = args.second_model
    first_label, second_label = short_name(args.first_model), short_name(args.second_model)

    results: list[SystemResult] = []
    mode = _decoding_mode(None)
    if "a" in systems:
        console.print(f"(a) {first_label} alone on the whole audio")
        results.append(
            run_whole_audio(
                "a",
                f"(a) {first_label} alone, {mode}",
                args.first_model,
                recordings,
                batch_size=None,
                console=console,
            )
        )
    if "a0" in systems:
        console.print(f"(a0) {first_label} alone on the whole audio, sequential")
        results.append(
            run_whole_audio(
                "a0",
                f"(a0) {first_label} alone, {_decoding_mode(0)}",
                args.first_model,
                recordings,
                batch_size=0,
                console=console,
            )
        )
    if "b" in systems:
        console.print(f"(b) {second_label} alone on the whole audio")
        if args.second_backend == "faster-whisper":
            results.append(
                run_whole_audio(
                    "b",
                    f"(b) {second_label} alone, {mode}",
                    args.second_model,
                    recordings,
                    batch_size=None,
                    console=console,
                )
            )
        else:
            results.append(
                run_whole_audio_remote(
                    "b",
                    f"(b) {second_label} alone",
                    recordings,
                    backend=args.second_backend,
                    base_url=args.second_base_url,
                    model=args.second_model,
                )
            )
    if "b0" in systems and args.second_backend == "faster-whisper":
        console.print(f"(b0) {second_label} alone on the whole audio, sequential")
        results.append(
            run_whole_audio(
                "b0",
                f"(b0) {second_label} alone, {_decoding_mode(0)}",
                args.second_model,
                recordings,
                batch_size=0,
                console=console,
            )
        )
    if "c" in systems:
        console.print(f"(c) relisten: {first_label} then {second_label} on the flagged windows")
        results.append(
            run_pipeline(
                "c",
                f"(c) relisten {first_label} + {second_label}",
                recordings,
                env=pipeline_env,
                form=form,
                console=console,
                keep_dir=args.keep_dir / "c" if args.keep_dir else None,
            )
        )
    for number, (label, assignments) in enumerate(variants, start=1):
        console.print(f"(c{number}) relisten variant {label}: {assignments}")
        results.append(
            run_pipeline(
                f"c{number}",
                f"(c{number}) {label}",
                recordings,
                env=pipeline_env | assignments,
                form=form,
                console=console,
                keep_dir=args.keep_dir / f"c{number}" if args.keep_dir else None,
            )
        )
    checks: dict[str, bool] = {}
    if "g" in systems:
        console.print("(g) relisten with a second pass answering unrelated text")
        with GarbageServer() as garbage:
            garbage_env = dict(pipeline_env)
            garbage_env.pop("RELISTEN_CORRECTOR_SECOND_PASS_MODEL", None)
            garbage_env |= {
                "RELISTEN_CORRECTOR_BACKEND": "openai",
                "RELISTEN_CORRECTOR_BASE_URL": garbage.url,
                "RELISTEN_CORRECTOR_MAX_ATTEMPTS": "1",
            }
            guarded = run_pipeline(
                "g",
                f"(g) relisten {first_label} + garbage",
                recordings,
                env=garbage_env,
                form=form,
                console=console,
                keep_dir=args.keep_dir / "g" if args.keep_dir else None,
            )
            guarded.notes.append(f"the garbage server answered {garbage.answered} requests")
        results.append(guarded)

    references = {r.name: r.reference for r in recordings}
    report = Report(
        date=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        data_dir=str(args.data_dir),
        first_model=args.first_model,
        second_model=args.second_model,
        threshold=args.threshold,
        env=env,
        machine=machine(),
        audio_s=audio_s,
        recordings=[r.name for r in recordings],
        references=references,
        systems=results,
        sources={r.name: r for r in recordings},
    )
    for system in results:
        if system.pipeline:
            checks[f"({system.key}) every job completed"] = all(r.error is None for r in system.recordings)
    guarded_result = report.system("g")
    if guarded_result is not None:
        first_wer = report.first_pass_wer(guarded_result)
        checks["(g) WER equals its own first pass's"] = first_wer is not None and _same(
            report.wer(guarded_result), first_wer
        )
        checks["(g) no second-pass word kept"] = guarded_result.total("replaced_words") == 0
        alone = report.system("a")
        if alone is not None:
            checks["(g) WER equals (a)'s"] = _same(report.wer(guarded_result), report.wer(alone))
    report.checks = checks
    report.settings = service_settings(pipeline_env)
    print_report(report, console)
    languages = "" if args.no_languages else languages_part(console)
    for path in args.output:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".json":
            path.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
        else:
            path.write_text(report.to_markdown() + languages, encoding="utf-8")
        console.print(f"wrote {path}")
    return 0 if all(checks.values()) else 1


def languages_part(console: Any) -> str:
    """Per-language error rates and language identification (``relisten.multilingual``: the asr's own
    router and models, in this process, no language named), as markdown."""
    from relisten import multilingual

    console.print("\n[bold]Languages[/] (tests/fixtures/multilingual, no language named)")
    started = time.perf_counter()
    outcomes = asyncio.run(multilingual.evaluate(multilingual.clips()))
    table = multilingual.report(outcomes)
    console.print(table, markup=False, highlight=False)
    console.print(f"({len(outcomes)} clips in {time.perf_counter() - started:.0f} s)")
    return f"\n## Languages\n\n{table}\n"


def _assignments(items: Sequence[str], parser: argparse.ArgumentParser) -> dict[str, str]:
    """``KEY=VALUE`` items as a mapping; anything else stops the run with a usage error."""
    malformed = [item for item in items if "=" not in item]
    if malformed:
        parser.error(f"expected KEY=VALUE, got {', '.join(map(repr, malformed))}")
    return dict(item.split("=", 1) for item in items)


def _variants(items: Sequence[str], parser: argparse.ArgumentParser) -> list[tuple[str, dict[str, str]]]:
    """``LABEL:KEY=VALUE,...`` items as (label, settings); a malformed one stops the run."""
    return [
        (label, _assignments([item for item in assignments.split(",") if item.strip()], parser))
        for label, _, assignments in (variant.partition(":") for variant in items)
    ]


def _decoding_mode(batch_size: int | None) -> str:
    from relisten_asr.settings import AsrSettings

    size = AsrSettings().batch_size if batch_size is None else batch_size
    return f"batched ({size})" if size > 0 else "sequential"


def service_settings(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The settings the model-facing services start with under ``env`` (what produced the numbers):
    each service's own fields, without addresses and secrets."""
    from relisten_asr.settings import AsrSettings
    from relisten_clipper.settings import ClipperSettings
    from relisten_corrector.settings import CorrectorSettings
    from relisten_merger.settings import MergerSettings
    from relisten_runtime.settings import CommonSettings

    common = set(CommonSettings.model_fields)
    hidden = {"api_key", "base_url", "model_cache_dir", "timeout_s", "max_attempts", "backoff_s"}
    with environment(env):
        return {
            name: {
                key: value
                for key, value in settings_class().model_dump().items()
                if key not in common and key not in hidden
            }
            for name, settings_class in (
                ("asr", AsrSettings),
                ("clipper", ClipperSettings),
                ("corrector", CorrectorSettings),
                ("merger", MergerSettings),
            )
        }


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in ``os.environ`` for the duration of the block, everything as it was afterwards
    (settings classes read the environment when they are built)."""
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _same(a: float, b: float) -> bool:
    return abs(a - b) < 1e-9


def _service_model(spec: str, native: str) -> str:
    """The spec itself when the service knows it, else the directory it resolves to."""
    return spec if spec == native or not spec.startswith("bundled:") else resolve_model(spec)


if __name__ == "__main__":
    sys.exit(main())
