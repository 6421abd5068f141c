"""The yardstick: every reference system and the pipeline, same run, scored per split with intervals.

``python -m relisten.yardstick`` decodes the development material (``relisten.dataset``: long-form
chapters, sonnets and short speakers, each with its channel-degraded copies) in this process and prints,
for the tuning and the validation part separately:

* each model alone the way faster-whisper users run it: ``WhisperModel.transcribe`` (sequential
  long-form) and ``BatchedInferencePipeline`` (batch 8), both ``word_timestamps=True``, ``language="en"``,
  beam 5, the asr service's compute type and threads;
* each model alone through relisten's own asr engine (``relisten_asr.engines``, its settings from the
  environment): what ``correction=off`` gives;
* the pipeline: relisten's asr first pass, then the clipper, the corrector's batched second pass and
  the merger replayed in process (``relisten.replay``; the same code and settings as the services);
* the per-recording router line: sending a fraction f of whole recordings to the second model and the
  rest to the first costs ``(1-f) C(a) + f C(b)`` and expects ``(1-f) WER(a) + f WER(b)`` (errors add
  up); the line is read at the pipeline's own compute;
* each ``--variant`` replayed the same way; a variant that sets a first-pass decode setting
  (``RELISTEN_ASR_BATCH_SIZE``, ``RELISTEN_ASR_VAD_THRESHOLD``, ...) decodes its own first passes (cached
  like the others) and is also shown as that first pass alone (``a:LABEL``, compared with (a));
* the oracle bound of the pipeline's windows: each window, in turn, takes whichever of the merged words,
  the first pass's words or the second pass's whole answer has the fewest errors against the reference
  (greedy over windows). No merger decision can beat it with these windows and answers.

With ``--time-first-pass`` every recording's first pass is decoded once more, uncached, with the defaults
and with each variant that changes it, the settings taking turns recording by recording, and their
model seconds are printed side by side per channel: on a shared machine, the cost of a first-pass lever
is a ratio from one such run, not a difference between cached decodes timed in different minutes.

Intervals are paired bootstrap 95 % intervals of WER differences (``relisten.scoring``), resampling
reference utterances together with their degraded copies; one whose interval includes zero is "not a
win". Decodes are cached per recording, model and settings under ``var/yardstick-cache`` (first passes
are decoded once, then sweeps are cheap). Compute is each decode's wall time in this process
(``FirstPass.seconds``; the second pass's decode time for the pipeline): on a shared machine the
seconds, and so the router line, move with the load; WER does not. ``make bench`` (the real services)
remains the measure of per-job wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from relisten_contracts import FirstPass, Word

from relisten.bench import _assignments, _variants, environment, resolve_model, served_audio
from relisten.dataset import DEGRADATIONS, Recording, development_recordings, split_of
from relisten.replay import Outcome, Replayed, replay
from relisten.scoring import Interval, TimedWord, UnitErrors, paired_bootstrap, unit_errors, wer_of

__all__ = ["System", "cached_decodes", "main", "oracle_words", "router_wer"]

DEFAULT_CACHE = Path(__file__).resolve().parents[2] / "var" / "yardstick-cache"


@dataclass
class System:
    """One system's words per recording and the compute it spent."""

    key: str
    label: str
    words: dict[str, list[TimedWord]]
    seconds: dict[str, float]

    def units(self, recordings: Sequence[Recording]) -> list[UnitErrors]:
        return [u for r in recordings for u in unit_errors(r, self.words.get(r.name, []))]

    def compute(self, recordings: Sequence[Recording]) -> float:
        return sum(self.seconds.get(r.name, 0.0) for r in recordings)


def _timed(words: Sequence[Any]) -> list[TimedWord]:
    return [(float(w.start), float(w.end), str(w.word).strip()) for w in words]


# --- decodes, cached ---------------------------------------------------------------------------------


DECODE_SETTINGS = (
    "engine",
    "first_pass_model",
    "device",
    "compute_type",
    "beam_size",
    "vad_filter",
    "condition_on_previous_text",
    "batch_size",
    "recover_unheard_speech",
)
"""The asr settings a decode depends on (the cache key holds these, not addresses or later switches)."""
LATER_DECODE_SETTINGS = {
    "vad_threshold": 0.5,
    "vad_fallback_threshold": 0.0,
    "vad_fallback_ratio": 0.8,
    "encoder_padding_s": 30.0,
}
"""Decode settings added after the cache's first entries, each with the value that decodes as before
it existed: they join the key only when set otherwise, so decodes cached before them stay valid."""


def decodes_first_pass(settings: dict[str, str]) -> bool:
    """Whether a variant's settings change the first pass's decode (then it is decoded, and cached,
    under them; otherwise the variant replays the defaults' first passes)."""
    return any(
        key.lower().removeprefix("relisten_asr_") in DECODE_SETTINGS + tuple(LATER_DECODE_SETTINGS)
        for key in settings
        if key.upper().startswith("RELISTEN_ASR_")
    )


def _key(recording: Recording, system: str, settings: dict[str, Any]) -> str:
    digest = hashlib.sha1(recording.audio.tobytes())
    relevant = {k: v for k, v in settings.items() if k in DECODE_SETTINGS}
    relevant |= {
        k: settings[k] for k, default in LATER_DECODE_SETTINGS.items() if settings.get(k, default) != default
    }
    digest.update(json.dumps({"system": system, **relevant}, sort_keys=True, default=str).encode())
    return f"{system}-{recording.name.replace('~', '_')}-{digest.hexdigest()[:12]}.json"


def cached_decodes(
    recordings: Sequence[Recording],
    system: str,
    settings: dict[str, Any],
    decode: Callable[[Sequence[Recording]], list[FirstPass]],
    cache_dir: Path,
    console: Any,
) -> list[FirstPass]:
    """``decode`` of the recordings not decoded before under ``system`` and ``settings``; the others
    from the cache (a decode is a pure function of audio, model and settings; only its seconds vary)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    paths = [cache_dir / _key(r, system, settings) for r in recordings]
    missing = [r for r, path in zip(recordings, paths, strict=True) if not path.exists()]
    if missing:
        console.print(f"  {system}: decoding {len(missing)} of {len(recordings)} recordings ...")
        for recording, first in zip(missing, decode(missing), strict=True):
            path = cache_dir / _key(recording, system, settings)
            path.write_bytes(msgspec.json.encode(first))
    return [msgspec.json.decode(path.read_bytes(), type=FirstPass) for path in paths]


def asr_decode(model_spec: str) -> Callable[[Sequence[Recording]], list[FirstPass]]:
    """Decode through relisten's asr engine (its settings from the environment)."""

    def run(recordings: Sequence[Recording]) -> list[FirstPass]:
        from relisten_asr.engines import FasterWhisperEngine
        from relisten_asr.settings import AsrSettings

        engine = FasterWhisperEngine(AsrSettings(first_pass_model=resolve_model(model_spec)))

        async def decode_all() -> list[FirstPass]:
            try:
                await engine.transcribe(served_audio(recordings[0])[:160000], language=None, prompt=None)
                return [
                    await engine.transcribe(served_audio(r), language=None, prompt=None) for r in recordings
                ]
            finally:
                await engine.aclose()

        return asyncio.run(decode_all())

    return run


def user_decode(model_spec: str, *, batched: bool) -> Callable[[Sequence[Recording]], list[FirstPass]]:
    """Decode the way a faster-whisper user does: ``WhisperModel.transcribe`` or
    ``BatchedInferencePipeline.transcribe`` (batch 8), word timestamps, English, the defaults otherwise."""

    def run(recordings: Sequence[Recording]) -> list[FirstPass]:
        from faster_whisper import BatchedInferencePipeline, WhisperModel
        from relisten_asr.settings import AsrSettings
        from relisten_speech.settings import model_cpu_threads

        settings = AsrSettings()
        model = WhisperModel(
            resolve_model(model_spec),
            device=settings.device,
            compute_type=settings.compute_type,
            cpu_threads=model_cpu_threads(settings.cpu_threads),
        )
        pipeline = BatchedInferencePipeline(model) if batched else None

        def once(audio: np.ndarray) -> tuple[list[Word], float]:
            started = time.perf_counter()
            if pipeline is not None:
                segments, _ = pipeline.transcribe(audio, batch_size=8, language="en", word_timestamps=True)
            else:
                segments, _ = model.transcribe(audio, language="en", word_timestamps=True)
            words = [
                Word(word=w.word, start=float(w.start), end=float(w.end), probability=float(w.probability))
                for segment in segments
                for w in segment.words or ()
            ]
            return words, time.perf_counter() - started

        once(served_audio(recordings[0])[:160000])  # warm-up, not counted
        out = []
        for recording in recordings:
            words, seconds = once(served_audio(recording))
            out.append(
                FirstPass(
                    language="en",
                    duration_s=recording.duration_s,
                    words=words,
                    segments=[],
                    engine=f"faster-whisper {'batched' if batched else 'sequential'} {model_spec}",
                    seconds=seconds,
                )
            )
        return out

    return run


def time_first_passes(
    recordings: Sequence[Recording], model_spec: str, settings: dict[str, dict[str, str]]
) -> dict[str, dict[str, float]]:
    """Each recording's first-pass model seconds under each of ``settings`` (label: ``RELISTEN_*`` values),
    decoded in one process, recording by recording, the settings taking turns in alternating order, so
    that a changing load falls on all of them alike. Not cached: these decodes exist to be timed."""
    from relisten_asr.engines import FasterWhisperEngine
    from relisten_asr.settings import AsrSettings

    engines = {}
    for label, values in settings.items():
        with environment(values):
            engines[label] = FasterWhisperEngine(AsrSettings(first_pass_model=resolve_model(model_spec)))
    seconds: dict[str, dict[str, float]] = {label: {} for label in engines}

    async def decode_all() -> None:
        try:
            for engine in engines.values():  # warm-up, not counted
                await engine.transcribe(served_audio(recordings[0])[:160000], language=None, prompt=None)
            for index, recording in enumerate(recordings):
                audio = served_audio(recording)
                order = list(engines) if index % 2 == 0 else list(reversed(engines))
                for label in order:
                    first = await engines[label].transcribe(audio, language=None, prompt=None)
                    seconds[label][recording.name] = first.seconds
        finally:
            for engine in engines.values():
                await engine.aclose()

    asyncio.run(decode_all())
    return seconds


def print_first_pass_times(
    seconds: dict[str, dict[str, float]], recordings: Sequence[Recording], console: Any
) -> dict[str, Any]:
    """The timed first passes per part and channel, as ratios to the first setting (the defaults)."""
    from rich.table import Table

    labels = list(seconds)
    data: dict[str, Any] = {}
    for part in ("tuning", "validation"):
        chosen = [r for r in recordings if split_of(r) == part]
        if not chosen:
            continue
        table = Table(title=f"{part}: first-pass model seconds, same run, ratio to {labels[0]}")
        table.add_column("channel")
        for label in labels:
            table.add_column(label, justify="right")
        kinds = sorted({r.name.partition("~")[2] for r in chosen})
        for kind in [*kinds, None]:
            group = [r for r in chosen if kind is None or r.name.partition("~")[2] == kind]
            totals = {label: sum(seconds[label][r.name] for r in group) for label in labels}
            name = "all" if kind is None else kind or "original"
            data[f"{part}/{name}"] = totals
            table.add_row(
                name,
                *(
                    f"{totals[label]:.1f} s"
                    + (f" x{totals[label] / totals[labels[0]]:.2f}" if i and totals[labels[0]] else "")
                    for i, label in enumerate(labels)
                ),
            )
        console.print(table)
    return data


# --- router line and oracle --------------------------------------------------------------------------


def router_wer(wer_a: float, compute_a: float, wer_b: float, compute_b: float, compute: float) -> float:
    """WER expected from routing whole recordings to the first model or the second at random, at
    ``compute`` (the line between the two models, clamped to its ends)."""
    if compute_b == compute_a:
        return min(wer_a, wer_b)
    fraction = min(1.0, max(0.0, (compute - compute_a) / (compute_b - compute_a)))
    return wer_a + fraction * (wer_b - wer_a)


def oracle_words(recording: Recording, first: FirstPass, replayed: Replayed) -> list[TimedWord]:
    """The pipeline's words with each window, in turn, taking whichever of the merged words, the first
    pass's words or the second pass's whole answer has the fewest errors against the reference (greedy
    over windows in time order; never worse than the pipeline)."""
    merged = _timed(replayed.words)
    windows = replayed.windows

    def inside(word: TimedWord, index: int) -> bool:
        return windows[index].start_s <= (word[0] + word[1]) / 2 < windows[index].end_s

    outside = [w for w in merged if not any(inside(w, i) for i in range(len(windows)))]
    options: list[list[list[TimedWord]]] = []
    for index, window in enumerate(windows):
        answer = replayed.results.get(index)
        options.append(
            [
                [w for w in merged if inside(w, index)],
                _timed(first.words[window.word_first : window.word_last]),
                _timed(answer.words) if answer is not None and answer.words is not None else [],
            ]
        )

    def words_with(choice: Sequence[int]) -> list[TimedWord]:
        chosen = [w for index, pick in enumerate(choice) for w in options[index][pick]]
        return sorted(outside + chosen, key=lambda w: (w[0] + w[1]) / 2)

    def errors(choice: Sequence[int]) -> int:
        return sum(u.errors for u in unit_errors(recording, words_with(choice)))

    choice = [0] * len(windows)
    best = errors(choice)
    for index in range(len(windows)):
        for pick in (1, 2):
            trial = [*choice[:index], pick, *choice[index + 1 :]]
            score = errors(trial)
            if score < best:
                choice, best = trial, score
    return words_with(choice)


# --- the run -----------------------------------------------------------------------------------------


def _row(
    system: System, recordings: Sequence[Recording], audio_s: float, extra: str = ""
) -> tuple[str, str, str, str, str]:
    units = system.units(recordings)
    compute = system.compute(recordings)
    return (
        system.label,
        f"{wer_of(units):.2%}",
        f"{compute:.1f}" if compute else "",
        f"{compute / audio_s:.3f}" if compute and audio_s else "",
        extra,
    )


def report(
    systems: dict[str, System],
    recordings: Sequence[Recording],
    outcome: Outcome | None,
    title: str,
    console: Any,
    variant_outcomes: Mapping[str, Outcome] | None = None,
) -> dict[str, Any]:
    """Print one part's table and intervals (``variant_outcomes``: each variant's replay, by label, in
    the order given); return them as data."""
    from rich.table import Table

    variants = list(variant_outcomes or {})

    audio_s = sum(r.duration_s for r in recordings)
    # Systems decoded on only some recordings (faster-whisper users' runs: original audio) show where whole.
    systems = {k: s for k, s in systems.items() if all(r.name in s.words for r in recordings)}
    table = Table(title=f"{title}: {len(recordings)} recordings, {audio_s:.0f} s")
    for column in ("system", "WER", "compute s", "x real time", "notes"):
        table.add_column(column, justify="left" if column in ("system", "notes") else "right")
    data: dict[str, Any] = {"audio_s": audio_s, "systems": {}, "intervals": {}}
    for key, system in systems.items():
        row = _row(system, recordings, audio_s)
        table.add_row(*row)
        data["systems"][key] = {"label": system.label, "wer": wer_of(system.units(recordings))}
        data["systems"][key]["compute_s"] = system.compute(recordings)
    a, b, c = systems.get("a"), systems.get("b"), systems.get("c")
    if a is not None and b is not None and c is not None:
        wer_a, wer_b = wer_of(a.units(recordings)), wer_of(b.units(recordings))
        wer_c = wer_of(c.units(recordings))
        line = router_wer(wer_a, a.compute(recordings), wer_b, b.compute(recordings), c.compute(recordings))
        table.add_row(
            "router line at (c)'s compute",
            f"{line:.2%}",
            f"{c.compute(recordings):.1f}",
            "",
            "below the line" if wer_c < line else "NOT below the line",
        )
        target = wer_b + 0.25 * (wer_a - wer_b)
        table.add_row("target WER(b) + 0.25 (WER(a) - WER(b))", f"{target:.2%}", "", "", "")
        data["router_wer_at_c"] = line
        data["target_wer"] = target
    names = {x.name for x in recordings}
    for label, replayed in [("(c)", outcome), *(variant_outcomes or {}).items()]:
        if replayed is None:
            continue
        kept = [r for r in replayed.recordings if r.name in names]
        redecoded = sum(w.end_s - w.start_s for r in kept for w in r.windows)
        whole = sum(w.end_s - w.start_s for r in kept for w in r.windows if w.whole)
        console.print(
            f"  {title}: {label} re-decoded {redecoded / audio_s:.1%} of the audio"
            + (f" ({whole / audio_s:.1%} in whole stretches)" if whole else "")
            + f", second pass {sum(r.second_pass_s for r in kept):.1f} s"
        )
    console.print(table)
    console.print(
        "  compute s: each cached decode's own seconds (the run that decoded it), the pipeline's second pass "
        "from this run; on a loaded machine they are not comparable across runs, WER is"
    )
    kinds = sorted({r.name.partition("~")[2] for r in recordings})
    if len(kinds) > 1:
        by_kind = Table(title=f"{title}: WER by channel")
        by_kind.add_column("channel")
        shown = [
            k for k in ("a", "b", "c", "oracle", *variants, *(f"a:{v}" for v in variants)) if k in systems
        ]
        for key in shown:
            by_kind.add_column(key, justify="right")
        data["by_channel"] = {}
        for kind in kinds:
            part = [r for r in recordings if r.name.partition("~")[2] == kind]
            wers = {key: wer_of(systems[key].units(part)) for key in shown}
            data["by_channel"][kind or "original"] = wers
            by_kind.add_row(kind or "original", *(f"{wers[key]:.2%}" for key in shown))
        console.print(by_kind)
    pairs = [("c", "a"), ("c", "b"), ("b", "a"), ("oracle", "c")]
    pairs += [("c", k) for k in ("a-seq", "a-batched", "b-seq", "b-batched")]
    pairs += [(k, "c") for k in variants]
    pairs += [(f"a:{k}", "a") for k in variants]
    for x, y in pairs:
        if x in systems and y in systems:
            interval: Interval = paired_bootstrap(systems[x].units(recordings), systems[y].units(recordings))
            console.print(f"  WER({x}) - WER({y}): {interval.text()}, {interval.units} utterances")
            data["intervals"][f"{x}-{y}"] = {
                "difference": interval.difference,
                "low": interval.low,
                "high": interval.high,
                "verdict": interval.verdict,
            }
    return data


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m relisten.yardstick",
        description="Reference systems, the pipeline (replayed), the router line and the windows' oracle, "
        "per tuning/validation part, with paired bootstrap intervals.",
    )
    parser.add_argument("--first-model", default="bundled:tiny.en")
    parser.add_argument("--second-model", default="bundled:base")
    parser.add_argument("--split", choices=["tuning", "validation"], help="only this part (default: both)")
    parser.add_argument(
        "--degraded", default=",".join(DEGRADATIONS), help="degraded copies to add ('' for none)"
    )
    parser.add_argument("--no-short", action="store_true", help="without the short utterances per speaker")
    parser.add_argument(
        "--users",
        action="store_true",
        help="also both models as faster-whisper users run them, on the original audio (4 more decodes)",
    )
    parser.add_argument(
        "--users-on-copies", action="store_true", help="with --users, decode the degraded copies too"
    )
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--variant", action="append", default=[], metavar="LABEL:KEY=VALUE,...")
    parser.add_argument("--output", type=Path, help="write the tables' data as JSON")
    parser.add_argument(
        "--time-first-pass",
        action="store_true",
        help="also decode every recording's first pass again, uncached, with the defaults and with each "
        "variant that changes the first pass, taking turns, and print their model seconds side by side "
        "(the cost of a first-pass lever, measured in one run)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    parser = _parser()
    args = parser.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 160)
    common = _assignments(args.env, parser)
    common.setdefault("RELISTEN_CORRECTOR_SECOND_PASS_MODEL", args.second_model)
    variants = _variants(args.variant, parser)
    recordings = development_recordings(
        split=args.split,
        short=not args.no_short,
        degraded=[k.strip() for k in args.degraded.split(",") if k.strip()],
    )
    console.print(f"{len(recordings)} recordings, {sum(r.duration_s for r in recordings):.0f} s")
    systems: dict[str, System] = {}

    def add(
        key: str, label: str, firsts: Sequence[FirstPass], decoded: Sequence[Recording] = recordings
    ) -> None:
        systems[key] = System(
            key,
            label,
            {r.name: _timed(f.words) for r, f in zip(decoded, firsts, strict=True)},
            {r.name: f.seconds for r, f in zip(decoded, firsts, strict=True)},
        )

    with environment(common):
        from relisten_asr.settings import AsrSettings

        asr = AsrSettings().model_dump(mode="json", exclude={"api_key"})
        firsts = cached_decodes(
            recordings, f"asr-{args.first_model}", asr, asr_decode(args.first_model), args.cache_dir, console
        )
        seconds = cached_decodes(
            recordings,
            f"asr-{args.second_model}",
            asr,
            asr_decode(args.second_model),
            args.cache_dir,
            console,
        )
        add("a", f"(a) {args.first_model} alone, relisten asr (correction=off)", firsts)
        add("b", f"(b) {args.second_model} alone, relisten asr (correction=off)", seconds)
        if args.users:
            # On the original audio only (four more decodes of everything would take the machine for long).
            originals = [r for r in recordings if args.users_on_copies or "~" not in r.name]
            for spec, letter in ((args.first_model, "a"), (args.second_model, "b")):
                for batched in (False, True):
                    mode = "batched" if batched else "seq"
                    decoded = cached_decodes(
                        originals,
                        f"user-{mode}-{spec}",
                        {"compute_type": asr["compute_type"]},
                        user_decode(spec, batched=batched),
                        args.cache_dir,
                        console,
                    )
                    label = f"({letter}) {spec} alone, faster-whisper {mode}"
                    add(f"{letter}-{mode}", label, decoded, originals)
    console.print("replaying the pipeline over the first passes ...")
    answers: dict[tuple[Any, ...], tuple[list[Any], float]] = {}
    outcome = replay("defaults", recordings, firsts, common, answers=answers)
    by_name = {r.name: r for r in outcome.recordings}
    systems["c"] = System(
        "c",
        "(c) relisten (first pass, then windows re-decoded, merged)",
        {name: _timed(r.words) for name, r in by_name.items()},
        {r.name: f.seconds + by_name[r.name].second_pass_s for r, f in zip(recordings, firsts, strict=True)},
    )
    systems["oracle"] = System(
        "oracle",
        "oracle of (c)'s windows (each takes whichever pass was right)",
        {r.name: oracle_words(r, f, by_name[r.name]) for r, f in zip(recordings, firsts, strict=True)},
        dict(systems["c"].seconds),
    )
    variant_outcomes: dict[str, Outcome] = {}
    for label, settings in variants:
        own_firsts = firsts
        if decodes_first_pass(settings):
            with environment({**common, **settings}):
                from relisten_asr.settings import AsrSettings

                varied_asr = AsrSettings().model_dump(mode="json", exclude={"api_key"})
                own_firsts = cached_decodes(
                    recordings,
                    f"asr-{args.first_model}",
                    varied_asr,
                    asr_decode(args.first_model),
                    args.cache_dir,
                    console,
                )
            add(f"a:{label}", f"(a) {args.first_model} alone, variant {label}", own_firsts)
        varied = replay(label, recordings, own_firsts, {**common, **settings}, answers=answers)
        variant_outcomes[label] = varied
        named = {r.name: r for r in varied.recordings}
        systems[label] = System(
            label,
            f"(c) variant {label}",
            {name: _timed(r.words) for name, r in named.items()},
            {
                r.name: f.seconds + named[r.name].second_pass_s
                for r, f in zip(recordings, own_firsts, strict=True)
            },
        )
    out: dict[str, Any] = {}
    parts = [args.split] if args.split else ["tuning", "validation"]
    for part in parts:
        chosen = [r for r in recordings if split_of(r) == part]
        out[part] = report(systems, chosen, outcome, part, console, variant_outcomes)
        clean = [r for r in chosen if "~" not in r.name]
        if len(clean) != len(chosen):
            out[f"{part} (original audio only)"] = report(
                systems, clean, outcome, f"{part}, original audio only", console, variant_outcomes
            )
    if args.time_first_pass:
        timed = {"defaults": common} | {
            label: {**common, **settings} for label, settings in variants if decodes_first_pass(settings)
        }
        load = os.getloadavg()[0]
        console.print(f"timing first passes: {', '.join(timed)} (load average {load:.1f}) ...")
        times = time_first_passes(recordings, args.first_model, timed)
        console.print(f"  load average at the end: {os.getloadavg()[0]:.1f}")
        out["first_pass_seconds"] = print_first_pass_times(times, recordings, console)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
