"""Latency, accuracy and capacity of live transcription (``GET /v1/realtime``) on this machine.

``python -m relisten.bench_live`` (``make bench-live``) starts a nats-server and the six services as
real processes (as ``relisten.bench`` does), then:

1. streams each of a few real recordings (the validation part of the development set, see
   ``relisten.dataset.split_of``; each cut after the last utterance that ends within ``--seconds``)
   at real-time pace through :mod:`relisten.live_client`, one session at a time, and measures

   * **first delta**: per turn, from the moment the audio where speech starts was sent to the
     arrival of the turn's first ``.delta``. Speech starts ``prefix_padding_ms`` after the
     ``speech_started.audio_start_ms`` (which includes that padding);
   * **completed**: per turn, from the moment the audio where the speech of the turn ended was sent
     to the arrival of its ``.completed``. Speech ends ``silence_duration_ms`` before the
     ``speech_stopped.audio_end_ms`` (the server can only know a turn ended after that much
     silence): that wait is part of this figure, as a user sees it. Also reported from
     ``audio_end_ms`` itself (the server's own share). Turns cut at the server's length cap have no
     ``speech_stopped`` and are not in these figures;
   * **WER** of the deltas alone (what a caption shows before refinement) and of the completed turns,
     against the reference, corpus-level after ``relisten.dataset.normalise_text``;
   * **WER of the file pipeline** on the same audio, uploaded as an ordinary job in the same run;

2. ramps concurrent real-time streams, 1, 2, 3, ... (up to ``--max-streams``), each stream one of the
   recordings cut to ``--ramp-seconds``, and reports the largest count whose completed latency stays
   bounded: p90 at most ``--bound-s`` (3 s by default, twice the 1.5 s target), no turn failed, no
   ``relisten.session.degraded`` event, and the latency of the last third of the turns no more than
   1 s above that of the first third (a delay that grows with time is not sustained). The ramp
   stops at the first count that is not.

Times are ``time.monotonic`` in this process: the audio at position ``p`` counts as sent at
``start + p / speed`` (the client paces against its start time, so this holds within a few ms).
Numbers are printed, never asserted; on a 2-core machine shared with other work they are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from relisten.dataset import (
    DEFAULT_DATA_DIR,
    SAMPLE_RATE,
    Recording,
    Utterance,
    development_recordings,
)
from relisten.live_client import (
    LiveError,
    StreamResult,
    file_source,
    float_to_pcm24,
    realtime_url,
    stream_session,
)
from relisten.services import SERVICES
from relisten.stack import Stack

__all__ = ["SessionFigures", "cut", "figures", "main"]


@dataclass
class SessionFigures:
    """What one live session measured."""

    name: str
    audio_s: float
    turns: int
    first_delta_s: list[float] = field(default_factory=list)
    first_delta_from_word_s: list[float] = field(default_factory=list)
    """From the start of the turn's first word as its completed words time it (a check on the server's
    own ``audio_start_ms``, which the first figure starts from)."""
    completed_s: list[float] = field(default_factory=list)
    """From the end of the turn's speech (what a user waits)."""
    completed_after_vad_s: list[float] = field(default_factory=list)
    """From ``audio_end_ms``, where the VAD had heard enough silence (the server's own share)."""
    deltas_text: str = ""
    completed_text: str = ""
    failed_turns: int = 0
    degraded_events: int = 0
    errors: list[str] = field(default_factory=list)
    job_id: str | None = None
    per_turn: list[dict[str, float | None]] = field(default_factory=list)
    """Per turn (in order): where the server said its audio started and its speech stopped (``start_s``,
    ``end_s``; None for an end at the length cap) and its ``first_delta_s`` and ``completed_s``, to tell
    which turns the latencies belong to (``--json``)."""


def cut(recording: Recording, seconds: float) -> Recording:
    """``recording`` up to the end of the last utterance that ends within ``seconds`` (at least the
    first utterance), plus 0.3 s; its reference and utterances cut alike."""
    kept = [u for u in recording.utterances if u.end_s <= seconds] or list(recording.utterances[:1])
    end = min(len(recording.audio), int((kept[-1].end_s + 0.3) * SAMPLE_RATE))
    return Recording(
        recording.name,
        recording.audio[:end],
        " ".join(u.reference for u in kept),
        speaker=recording.speaker,
        utterances=tuple(Utterance(u.start_s, u.end_s, u.reference) for u in kept),
        subset=recording.subset,
    )


def vad_margins(session: dict[str, Any]) -> tuple[float, float]:
    """``(prefix_padding_s, silence_duration_s)`` of the session's server VAD, as the server echoed
    it in ``session.created``/``.updated`` (OpenAI's defaults, 300 and 500 ms, when it did not)."""
    audio = session.get("audio") or {}
    vad = (audio.get("input") or {}).get("turn_detection") or session.get("turn_detection") or {}
    return float(vad.get("prefix_padding_ms", 300)) / 1000, float(vad.get("silence_duration_ms", 500)) / 1000


def figures(name: str, result: StreamResult) -> SessionFigures:
    """The latencies and texts of one finished session."""
    session = result.session
    prefix_s, silence_s = vad_margins(session.session)
    out = SessionFigures(name, result.audio_s, len(session.turns), job_id=session.job_id)
    for turn in session.ordered:
        row: dict[str, float | None] = {
            "start_s": None if turn.audio_start_ms is None else turn.audio_start_ms / 1000,
            "end_s": None if turn.audio_end_ms is None else turn.audio_end_ms / 1000,
            "first_delta_s": None,
            "completed_s": None,
        }
        out.per_turn.append(row)
        if turn.first_delta_at is not None and turn.audio_start_ms is not None:
            speech_starts = turn.audio_start_ms / 1000 + prefix_s
            out.first_delta_s.append(turn.first_delta_at - result.sent_at(speech_starts))
            row["first_delta_s"] = out.first_delta_s[-1]
            if turn.words:
                first_word = float(turn.words[0]["start"])
                out.first_delta_from_word_s.append(turn.first_delta_at - result.sent_at(first_word))
        if turn.completed_at is not None and turn.audio_end_ms is not None:
            decided = turn.audio_end_ms / 1000
            out.completed_s.append(turn.completed_at - result.sent_at(decided - silence_s))
            row["completed_s"] = out.completed_s[-1]
            out.completed_after_vad_s.append(turn.completed_at - result.sent_at(decided))
        out.failed_turns += turn.failed is not None
    out.deltas_text = session.deltas_transcript()
    out.completed_text = session.transcript(completed_only=True)
    out.degraded_events = len(session.degraded)
    out.errors = [f"{e.get('code')}: {e.get('message')}" for e in session.fatal_errors]
    return out


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    return float(np.percentile(np.asarray(values), q))


def corpus_wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    from relisten.bench import corpus_wer as wer

    return wer(references, hypotheses)


async def live_session(
    url: str, recording: Recording, *, speed: float, api_key: str | None, timeout_s: float
) -> SessionFigures:
    pcm = float_to_pcm24(recording.audio, SAMPLE_RATE)
    try:
        result = await stream_session(
            url,
            file_source(pcm, speed=speed),
            api_key=api_key,
            language="en",
            speed=speed,
            drain_timeout_s=timeout_s,
        )
    except LiveError as exc:
        return SessionFigures(recording.name, recording.duration_s, 0, errors=[str(exc)])
    return figures(recording.name, result)


def file_pipeline_text(stack: Stack, recording: Recording, timeout_s: float) -> str:
    job = stack.submit(recording, language="en")
    view = stack.wait_for(str(job["id"]), timeout_s=timeout_s)
    if view["status"] != "completed":
        return ""
    answer = httpx.get(f"{stack.base_url}/v1/jobs/{job['id']}/transcript", timeout=60)
    answer.raise_for_status()
    return str(answer.json()["text"])


@dataclass
class RampStep:
    streams: int
    completed_median_s: float | None
    completed_p90_s: float | None
    first_delta_p90_s: float | None
    drift_s: float | None
    failed_turns: int
    degraded_events: int
    errors: int
    bounded: bool


def ramp_step(streams: int, sessions: list[SessionFigures], bound_s: float) -> RampStep:
    completed = [value for s in sessions for value in s.completed_s]
    # Growth of the delay over a session: last third of its turns against the first third.
    drifts = []
    for s in sessions:
        third = len(s.completed_s) // 3
        if third:
            drifts.append(
                statistics.median(s.completed_s[-third:]) - statistics.median(s.completed_s[:third])
            )
    drift = max(drifts) if drifts else None
    failed = sum(s.failed_turns for s in sessions)
    degraded = sum(s.degraded_events for s in sessions)
    errors = sum(len(s.errors) for s in sessions)
    p90 = percentile(completed, 90)
    bounded = (
        p90 is not None
        and p90 <= bound_s
        and not failed
        and not degraded
        and not errors
        and (drift is None or drift <= 1.0)
    )
    return RampStep(
        streams,
        percentile(completed, 50),
        p90,
        percentile([v for s in sessions for v in s.first_delta_s], 90),
        drift,
        failed,
        degraded,
        errors,
        bounded,
    )


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m relisten.bench_live",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--recordings", type=int, default=3, help="validation recordings streamed (first N)")
    parser.add_argument("--seconds", type=float, default=60.0, help="each recording cut to about this long")
    parser.add_argument("--speed", type=float, default=1.0, help="1 = real time (the figures assume it)")
    parser.add_argument("--max-streams", type=int, default=4, help="ramp up to this many concurrent streams")
    parser.add_argument("--ramp-seconds", type=float, default=60.0, help="length of each ramp stream")
    parser.add_argument("--bound-s", type=float, default=3.0, help="completed-latency p90 still 'bounded'")
    parser.add_argument("--timeout", type=float, default=300.0, help="per session and per file job")
    parser.add_argument("--url", help="a running relisten instead of starting one (no file pipeline then)")
    parser.add_argument("--api-key")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep-dir", type=Path, help="keep the services' logs and NATS store here")
    return parser


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through ``finally``: the services and nats-server stop


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console
    from rich.table import Table

    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    console = Console()
    recordings = [
        cut(r, args.seconds)
        for r in development_recordings(args.data_dir, split="validation", limit=args.recordings)
    ]
    console.print(
        f"[bold]live bench[/] on {len(recordings)} validation recordings "
        f"({sum(r.duration_s for r in recordings):.0f} s), speed {args.speed}"
    )
    with tempfile.TemporaryDirectory(prefix="relisten-bench-live-") as scratch:
        work = args.keep_dir or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        report = _run(args, recordings, work, console)
    sessions: list[SessionFigures] = report["sessions"]
    table = Table(title="Live sessions, one at a time, real time")
    for column in (
        "recording",
        "audio s",
        "turns",
        "first delta p50/p90 s",
        "completed p50/p90 s",
        "WER deltas",
        "WER completed",
        "WER file",
    ):
        table.add_column(column)
    for s, file_text, recording in zip(sessions, report["file_texts"], recordings, strict=True):
        table.add_row(
            s.name,
            f"{s.audio_s:.0f}",
            str(s.turns),
            f"{_fmt(percentile(s.first_delta_s, 50))} / {_fmt(percentile(s.first_delta_s, 90))}",
            f"{_fmt(percentile(s.completed_s, 50))} / {_fmt(percentile(s.completed_s, 90))}",
            f"{corpus_wer([recording.reference], [s.deltas_text]):.3f}",
            f"{corpus_wer([recording.reference], [s.completed_text]):.3f}",
            "-" if file_text is None else f"{corpus_wer([recording.reference], [file_text]):.3f}",
        )
    console.print(table)
    references = [r.reference for r in recordings]
    first = [v for s in sessions for v in s.first_delta_s]
    from_word = [v for s in sessions for v in s.first_delta_from_word_s]
    completed = [v for s in sessions for v in s.completed_s]
    after_vad = [v for s in sessions for v in s.completed_after_vad_s]
    summary: dict[str, Any] = {
        "completed_after_vad_median_s": percentile(after_vad, 50),
        "completed_after_vad_p90_s": percentile(after_vad, 90),
        "first_delta_median_s": percentile(first, 50),
        "first_delta_p90_s": percentile(first, 90),
        "first_delta_from_word_median_s": percentile(from_word, 50),
        "first_delta_from_word_p90_s": percentile(from_word, 90),
        "completed_median_s": percentile(completed, 50),
        "completed_p90_s": percentile(completed, 90),
        "wer_deltas": corpus_wer(references, [s.deltas_text for s in sessions]),
        "wer_completed": corpus_wer(references, [s.completed_text for s in sessions]),
        "wer_file": None
        if None in report["file_texts"]
        else corpus_wer(references, [str(t) for t in report["file_texts"]]),
        "turns": sum(s.turns for s in sessions),
        "failed_turns": sum(s.failed_turns for s in sessions),
        "degraded_events": sum(s.degraded_events for s in sessions),
        "errors": [e for s in sessions for e in s.errors],
    }
    console.print(
        f"first delta after speech starts: median {_fmt(summary['first_delta_median_s'])} s, "
        f"p90 {_fmt(summary['first_delta_p90_s'])} s (target <= 1.0 s); after the turn's first word "
        f"starts (its completed timing): median {_fmt(summary['first_delta_from_word_median_s'])} s, "
        f"p90 {_fmt(summary['first_delta_from_word_p90_s'])} s\n"
        f"completed after the turn ends:   median {_fmt(summary['completed_median_s'])} s, "
        f"p90 {_fmt(summary['completed_p90_s'])} s (target <= 1.5 s); after the VAD's end-of-turn "
        f"silence: median {_fmt(summary['completed_after_vad_median_s'])} s, "
        f"p90 {_fmt(summary['completed_after_vad_p90_s'])} s\n"
        f"WER: deltas only {summary['wer_deltas']:.4f}, completed turns {summary['wer_completed']:.4f}, "
        f"file pipeline {_fmt(summary['wer_file'], 4)} (target: completed within 0.005 of the file pipeline)\n"
        f"{summary['turns']} turns, {summary['failed_turns']} failed, {summary['degraded_events']} degraded events"
        + (f"; errors: {summary['errors']}" if summary["errors"] else "")
    )
    ramp: list[RampStep] = report["ramp"]
    if ramp:
        ramp_table = Table(title=f"Concurrent real-time streams ({args.ramp_seconds:.0f} s each)")
        for column in (
            "streams",
            "completed p50 s",
            "completed p90 s",
            "first delta p90 s",
            "drift s",
            "failed",
            "degraded",
            "bounded",
        ):
            ramp_table.add_column(column)
        for step in ramp:
            ramp_table.add_row(
                str(step.streams),
                _fmt(step.completed_median_s),
                _fmt(step.completed_p90_s),
                _fmt(step.first_delta_p90_s),
                _fmt(step.drift_s),
                str(step.failed_turns),
                str(step.degraded_events),
                "yes" if step.bounded else "no",
            )
        console.print(ramp_table)
        sustained = max((step.streams for step in ramp if step.bounded), default=0)
        console.print(
            f"sustained concurrent real-time streams: {sustained} (completed p90 <= {args.bound_s} s)"
        )
        summary["sustained_streams"] = sustained
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "summary": summary,
                    "sessions": [asdict(s) for s in sessions],
                    "ramp": [asdict(step) for step in ramp],
                },
                indent=2,
            )
        )
    return 0


def _run(args: argparse.Namespace, recordings: list[Recording], work: Path, console: Any) -> dict[str, Any]:
    if args.url:
        return _measure(args, recordings, args.url, None, console)
    from relisten_runtime.embedded import EmbeddedNats, free_port

    server = EmbeddedNats(work / "nats", port=free_port())
    server.start(log_file=work / "nats.log")
    stack = Stack(server.url, work)
    try:
        started = time.perf_counter()
        stack.start(SERVICES)
        # Warm-up (not counted): a file job and a short live session load and run both models.
        warm = cut(recordings[0], 8.0)
        file_pipeline_text(stack, warm, args.timeout)
        asyncio.run(
            live_session(realtime_url(stack.base_url), warm, speed=4.0, api_key=None, timeout_s=args.timeout)
        )
        console.print(f"services started and warmed up in {time.perf_counter() - started:.1f} s")
        return _measure(args, recordings, stack.base_url, stack, console)
    finally:
        stack.stop()
        server.stop()


def _measure(
    args: argparse.Namespace, recordings: list[Recording], base_url: str, stack: Stack | None, console: Any
) -> dict[str, Any]:
    url = realtime_url(base_url)
    sessions: list[SessionFigures] = []
    file_texts: list[str | None] = []
    for recording in recordings:
        figures_ = asyncio.run(
            live_session(url, recording, speed=args.speed, api_key=args.api_key, timeout_s=args.timeout)
        )
        sessions.append(figures_)
        console.print(
            f"  live {recording.name}: {figures_.turns} turns, first delta p90 "
            f"{_fmt(percentile(figures_.first_delta_s, 90))} s, completed p90 "
            f"{_fmt(percentile(figures_.completed_s, 90))} s"
            + (f" ERRORS {figures_.errors}" if figures_.errors else "")
        )
        file_texts.append(None if stack is None else file_pipeline_text(stack, recording, args.timeout))
    ramp: list[RampStep] = []
    for streams in range(1, args.max_streams + 1):
        chosen = [cut(recordings[i % len(recordings)], args.ramp_seconds) for i in range(streams)]

        async def together(chosen: list[Recording] = chosen) -> list[SessionFigures]:
            return list(
                await asyncio.gather(
                    *(
                        live_session(url, r, speed=args.speed, api_key=args.api_key, timeout_s=args.timeout)
                        for r in chosen
                    )
                )
            )

        step = ramp_step(streams, asyncio.run(together()), args.bound_s)
        ramp.append(step)
        console.print(
            f"  {streams} stream(s): completed p90 {_fmt(step.completed_p90_s)} s, drift {_fmt(step.drift_s)} s, "
            f"{step.failed_turns} failed, {step.degraded_events} degraded: {'bounded' if step.bounded else 'NOT bounded'}"
        )
        if not step.bounded:
            break
    return {"sessions": sessions, "file_texts": file_texts, "ramp": ramp}


if __name__ == "__main__":
    sys.exit(main())
