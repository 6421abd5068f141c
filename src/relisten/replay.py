"""Replay the pipeline's decisions in one process, to sweep clipper, corrector and merger settings fast.

``python -m relisten.replay --variant LABEL:KEY=VALUE,... [--variant ...]`` decodes each recording's
first pass once, the way the asr service does, and then, for the defaults and for each variant, runs
the code the services run on it: the clipper's ``find_windows``, the corrector's batched faster-whisper
backend on the cut clips, and the merger's ``merge``. Each variant's ``RELISTEN_*`` values are in the
environment while the services' own settings classes are built, so a setting means here what it means
in a service. No NATS and no HTTP: a sweep over the development set takes minutes instead of the
benchmark's quarter of an hour per pipeline run, and it gives the same WER as the pipeline
(docs/benchmark.md). The seconds it prints are the second pass's alone; ``make bench`` remains the
measure of what the whole system costs.

Two simplifications, both exact for the development set: a job's clips are decoded in one batched call
(the corrector splits them into calls of ``RELISTEN_CORRECTOR_BATCH_AUDIO_S``, 240 s by default), and
settings of the first pass (``RELISTEN_ASR_*``) apply to all variants alike (``--env``). With
``RELISTEN_CORRECTOR_PACK_CLIPS=false`` each clip is decoded on its own, prompted with the first-pass
text before it, as the corrector does then.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relisten_contracts import ClipResult, FirstPass, TranscriptWord, Window

from relisten.bench import _assignments, _variants, corpus_wer, environment, resolve_model, served_audio
from relisten.dataset import DEFAULT_DATA_DIR, SAMPLE_RATE, Recording, development_recordings

__all__ = ["Outcome", "Replayed", "decode_first_passes", "main", "replay", "windows_to_merge"]


@dataclass(frozen=True)
class Replayed:
    """One recording through the replay: its windows, the second pass's answers and the merged words."""

    name: str
    windows: tuple[Window, ...]
    results: dict[int, ClipResult]
    words: tuple[TranscriptWord, ...]
    second_pass_s: float


@dataclass(frozen=True)
class Outcome:
    label: str
    wer: float
    first_pass_wer: float
    clips: int
    accepted: int
    redecoded_s: float
    duration_s: float
    second_pass_s: float
    words_decoded: int
    recordings: tuple[Replayed, ...] = ()

    @property
    def redecoded_fraction(self) -> float:
        return self.redecoded_s / self.duration_s if self.duration_s else 0.0


def decode_first_passes(recordings: Sequence[Recording], model_spec: str) -> list[FirstPass]:
    """Each recording's first pass, decoded as the asr service decodes (its settings from the environment)."""
    from relisten_asr.engines import FasterWhisperEngine
    from relisten_asr.settings import AsrSettings

    engine = FasterWhisperEngine(AsrSettings(first_pass_model=resolve_model(model_spec)))

    async def decode_all() -> list[FirstPass]:
        try:
            return [
                await engine.transcribe(served_audio(recording), language=None, prompt=None)
                for recording in recordings
            ]
        finally:
            await engine.aclose()

    return asyncio.run(decode_all())


def windows_to_merge(
    windows: Sequence[Window], ranges: Sequence[tuple[int, int]], sample_rate: int = SAMPLE_RATE
) -> list[Window]:
    """What the merger knows of each clip (its handler reads the same from the clip plan): the clipper's
    window with the clip's sample-exact edges."""
    return [
        dataclasses.replace(window, index=index, start_s=lo / sample_rate, end_s=hi / sample_rate)
        for index, (window, (lo, hi)) in enumerate(zip(windows, ranges, strict=True))
    ]


def replay(
    label: str,
    recordings: Sequence[Recording],
    first_passes: Sequence[FirstPass],
    settings: Mapping[str, str],
    *,
    threshold: float | None = None,
    answers: dict[tuple[Any, ...], tuple[list[Any], float]] | None = None,
) -> Outcome:
    """The pipeline's windows, second pass and merge over ``first_passes``, under ``settings``.

    ``answers``, when given, keeps each job's second-pass answers keyed by the recording, its clips (which of them are stretches decoded whole) and
    the corrector's settings: a later call whose windows and corrector are the same (a merger-only
    variant) reuses them instead of decoding again (same clips packed the same way, same answers)."""
    import dataclasses
    import time

    from relisten_asr.settings import AsrSettings
    from relisten_clipper.domain import ClipPolicy, context_prompt, find_windows, to_sample_range
    from relisten_clipper.settings import ClipperSettings
    from relisten_contracts.calibration import calibrated, default_calibration
    from relisten_corrector.backends import FasterWhisperBackend
    from relisten_corrector.handlers import answered, second_pass_prompt
    from relisten_corrector.settings import CorrectorSettings
    from relisten_merger.domain import MergePolicy, merge, transcript_text
    from relisten_merger.settings import MergerSettings

    with environment(settings):
        if AsrSettings().calibrate_probability:
            # What the asr handler does to each first pass when the setting is on.
            first_passes = [calibrated(first, default_calibration()) for first in first_passes]
        policy = ClipPolicy(**ClipperSettings().policy_fields())  # type: ignore[arg-type]
        merge_policy = MergePolicy(**MergerSettings().policy_fields())  # type: ignore[arg-type]
        corrector = CorrectorSettings()
        backend = FasterWhisperBackend(corrector)
    corrector_key = corrector.model_dump_json()
    if threshold is not None:
        policy = dataclasses.replace(policy, threshold=threshold)
    if answers is None:
        answers = {}

    async def second_pass(
        clips: list[Any], prompts: list[str], wholes: list[bool], language: str
    ) -> tuple[list[Any], float]:
        started = time.perf_counter()
        decoded: dict[int, Any] = {}
        # What the corrector does: the stretches re-heard whole apart from the windows.
        whole = [index for index in range(len(clips)) if wholes[index]]
        if whole:
            answers, _ = await backend.transcribe_whole(
                [clips[i] for i in whole], prompt=None, language=language
            )
            decoded.update(zip(whole, answers, strict=True))
        rest = [index for index in range(len(clips)) if not wholes[index]]
        if not corrector.pack_clips:
            # What the corrector does unpacked: one call per clip, prompted with the text before it.
            for index in rest:
                decoded[index] = await backend.transcribe(
                    clips[index], prompt=second_pass_prompt(None, prompts[index]), language=language
                )
        elif rest:
            answers = await backend.transcribe_many([clips[i] for i in rest], prompt=None, language=language)
            decoded.update(zip(rest, answers, strict=True))
        return [decoded[index] for index in range(len(clips))], time.perf_counter() - started

    hypotheses: list[str] = []
    replayed: list[Replayed] = []
    clips_total = accepted = words_decoded = 0
    redecoded_s = second_pass_s = 0.0
    for recording, first in zip(recordings, first_passes, strict=True):
        audio = served_audio(recording)
        windows = find_windows(first.words, first.segments, first.duration_s, policy)
        ranges = [to_sample_range(w.start_s, w.end_s, SAMPLE_RATE, len(audio)) for w in windows]
        key = (recording.name, tuple(ranges), tuple(w.whole for w in windows), first.language, corrector_key)
        if key not in answers:
            backend.load()
            prompts = [context_prompt(first.words, window, policy.context_chars) for window in windows]
            answers[key] = asyncio.run(
                second_pass(
                    [audio[lo:hi] for lo, hi in ranges], prompts, [w.whole for w in windows], first.language
                )
            )
        clip_answers, seconds = answers[key]
        results = {
            index: answered(index, backend.name, answer, lo / SAMPLE_RATE, (hi - lo) / SAMPLE_RATE, 0.0)
            for index, ((lo, hi), answer) in enumerate(zip(ranges, clip_answers, strict=True))
        }
        merge_windows = windows_to_merge(windows, ranges)
        words, corrections = merge(first, merge_windows, results, merge_policy)
        hypotheses.append(transcript_text(words))
        replayed.append(Replayed(recording.name, tuple(windows), results, tuple(words), seconds))
        clips_total += len(windows)
        accepted += sum(correction.status == "accepted" for correction in corrections)
        words_decoded += sum(len(answer.words or ()) for answer in clip_answers)
        redecoded_s += sum(hi - lo for lo, hi in ranges) / SAMPLE_RATE
        second_pass_s += seconds
    asyncio.run(backend.aclose())
    references = [recording.reference for recording in recordings]
    return Outcome(
        label=label,
        wer=corpus_wer(references, hypotheses),
        first_pass_wer=corpus_wer(
            references, [" ".join(w.word for w in first.words) for first in first_passes]
        ),
        clips=clips_total,
        accepted=accepted,
        redecoded_s=redecoded_s,
        duration_s=sum(recording.duration_s for recording in recordings),
        second_pass_s=second_pass_s,
        words_decoded=words_decoded,
        recordings=tuple(replayed),
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m relisten.replay",
        description="Replay the clipper, the second pass and the merger in one process over cached first "
        "passes, once with the defaults and once per --variant; prints WER and second-pass cost.",
    )
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="development set directory")
    parser.add_argument("--joined", action="store_true", help="the recordings as one long recording")
    parser.add_argument("--limit", type=int, default=0, help="only the first N recordings (by name)")
    parser.add_argument("--first-model", default="bundled:tiny.en", help="first-pass faster-whisper model")
    parser.add_argument("--second-model", default="bundled:base", help="second-pass faster-whisper model")
    parser.add_argument("--threshold", type=float, default=None, help="per-job confidence threshold")
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="settings for every run (repeatable)"
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="LABEL:KEY=VALUE,...",
        help="also replay with these settings on top (repeatable)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console
    from rich.table import Table

    parser = _parser()
    args = parser.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 160)
    common = _assignments(args.env, parser)
    common.setdefault("RELISTEN_CORRECTOR_SECOND_PASS_MODEL", args.second_model)
    runs = [("defaults", common)] + [
        (label, {**common, **settings}) for label, settings in _variants(args.variant, parser)
    ]
    recordings = development_recordings(args.data_dir, limit=args.limit, join=args.joined)
    if not recordings:
        console.print(f"[red]no long-form recordings in {args.data_dir}")
        return 2
    console.print(f"first pass of {len(recordings)} recordings with {args.first_model} ...")
    with environment(common):
        first_passes = decode_first_passes(recordings, args.first_model)
    table = Table(title=f"replay: {args.first_model} then {args.second_model}")
    for column in (
        "run",
        "WER",
        "first pass WER",
        "clips (accepted)",
        "re-decoded",
        "second pass s",
        "words decoded",
    ):
        table.add_column(column)
    for label, settings in runs:
        outcome = replay(label, recordings, first_passes, settings, threshold=args.threshold)
        table.add_row(
            outcome.label,
            f"{outcome.wer:.2%}",
            f"{outcome.first_pass_wer:.2%}",
            f"{outcome.clips} ({outcome.accepted})",
            f"{outcome.redecoded_fraction:.1%}",
            f"{outcome.second_pass_s:.1f}",
            str(outcome.words_decoded),
        )
        console.print(
            f"  {label}: WER {outcome.wer:.2%}, {outcome.clips} clips, {outcome.second_pass_s:.1f} s"
        )
    console.print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
