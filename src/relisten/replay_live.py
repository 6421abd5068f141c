"""Live transcription's accuracy, replayed in one process: ``python -m relisten.replay_live``.

``make bench-live`` measures a realtime session end to end at real-time pace (latency included), which
takes as long as the audio and runs a whole stack. The text a session completes does not depend on the
pace: it depends on where the server's VAD cuts turns, on each turn's final first pass (decoded with
the session audio before it) and on each turn's refinement. This replays exactly those, in one process
and as fast as the models decode: the server's own :class:`~relisten_ingest.realtime_audio.EnergyVad`
and length cap cut the recording into turns, the asr's :class:`~relisten_asr.live.LiveFirstPassResponder`
answers each turn's final first pass and the corrector's
:class:`~relisten_corrector.live.LiveRefineResponder` refines it, with the requests the realtime session
would send. For comparison it decodes every recording whole the same way (the whole recording as one
"turn": the file pipeline's first pass, refined with the same clip and merge policies).

It prints the WER of the completed turns and of the whole-recording decode, per recording and
corpus-level, with the paired bootstrap 95 % interval of their difference, for the tuning or the
validation part (``--split``); ``--variant LABEL:KEY=VALUE,...`` adds runs with ingest live settings
changed (``live_context_s``, ``live_refine_context_s``, ...), each against the defaults, so a lever
is tuned on one part and decided on the other.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from relisten_asr.engines import FasterWhisperEngine
from relisten_asr.live import LiveFirstPassResponder, live_responder
from relisten_asr.settings import AsrSettings
from relisten_contracts import FirstPass, TranscriptWord, Word
from relisten_contracts.live import LiveFirstPassRequest, LiveRefineRequest
from relisten_corrector.backends import FasterWhisperBackend
from relisten_corrector.live import LiveRefineResponder
from relisten_corrector.settings import CorrectorSettings
from relisten_ingest.realtime import (
    CUT_SEARCH_S,
    PREVIOUS_TURNS,
    context_start,
    session_budget,
)
from relisten_ingest.realtime_audio import EnergyVad, SpeechStarted, VadSettings, quietest_cut
from relisten_ingest.realtime_turns import plain_text
from relisten_ingest.settings import IngestSettings
from relisten_runtime.audio import pcm16_from_float

from relisten.bench import _variants
from relisten.bench_live import cut
from relisten.dataset import DEFAULT_DATA_DIR, Recording, development_recordings
from relisten.scoring import TimedWord, UnitErrors, paired_bootstrap, unit_errors, wer_of

SAMPLE_RATE = 16_000
CHUNK_S = 0.1
"""The client's append size: the VAD sees the audio as a real-time client sends it."""


def turns_of(audio: np.ndarray, vad: VadSettings, max_turn_s: float) -> list[tuple[int, int]]:
    """The turns a realtime session with server VAD cuts ``audio`` (float, 16 kHz) into: (start, end)
    sample pairs, as :class:`~relisten_ingest.realtime.RealtimeSession` cuts them (speech started /
    stopped, the length cap at the quietest point of the last seconds, the open turn at the end)."""
    pcm = np.frombuffer(pcm16_from_float(audio), dtype="<i2")
    detector = EnergyVad(vad)
    limit = int(max_turn_s * SAMPLE_RATE)
    turns: list[tuple[int, int]] = []
    start: int | None = None
    step = int(CHUNK_S * SAMPLE_RATE)
    for at in range(0, len(pcm), step):
        for change in detector.feed(pcm[at : at + step]):
            if isinstance(change, SpeechStarted):
                start = change.sample if start is None else start
            elif start is not None:
                turns.append((start, change.sample))
                start = None
        received = min(at + step, len(pcm))
        while start is not None and received - start >= limit:
            cut_at = start + max(
                quietest_cut(pcm[start : start + limit], int(CUT_SEARCH_S * SAMPLE_RATE)), SAMPLE_RATE
            )
            turns.append((start, cut_at))
            start = cut_at
    if start is not None and len(pcm) - start >= 0.1 * SAMPLE_RATE:
        turns.append((start, len(pcm)))
    return turns


def timed_words(words: Sequence[Word] | Sequence[TranscriptWord], offset_s: float) -> list[TimedWord]:
    """``words`` on the recording's timeline (``offset_s`` later), empty ones left out."""
    return [(w.start + offset_s, w.end + offset_s, w.word.strip()) for w in words if w.word.strip()]


async def turn_first_pass(
    asr: LiveFirstPassResponder, pcm: bytes, start: int, length: int, context_s: float, *, final: bool
) -> tuple[FirstPass | None, float]:
    """A first pass of a turn's first ``length`` samples (the turn starts at sample ``start`` of the
    session's ``pcm``) with up to ``context_s`` of the session audio before it, as a session asks for
    it (times relative to the turn), and the decode's wall time."""
    context_from = context_start(start, length, context_s)
    began = time.perf_counter()
    reply = await asr.answer(
        LiveFirstPassRequest(
            session_id="replay",
            turn_id=f"t{start}",
            audio=pcm[context_from * 2 : (start + length) * 2],
            context_s=(start - context_from) / SAMPLE_RATE,
            language="en",
            final=final,
        )
    )
    return reply.first_pass, time.perf_counter() - began


async def session_words(
    recording: Recording,
    asr: LiveFirstPassResponder,
    refiner: LiveRefineResponder | None,
    settings: IngestSettings,
) -> tuple[list[TimedWord], int]:
    """The completed turns' words of ``recording`` replayed as a realtime session (times on the
    recording's timeline), and its turn count."""
    pcm = pcm16_from_float(recording.audio)
    turns = turns_of(recording.audio, VadSettings(), settings.live_max_turn_s)
    words: list[TimedWord] = []
    texts: list[str] = []
    redecoded_s = 0.0
    for start, end in turns:
        audio = pcm[start * 2 : end * 2]
        first, _ = await turn_first_pass(asr, pcm, start, end - start, settings.live_context_s, final=True)
        if first is None:
            continue
        final: Sequence[Word] | Sequence[TranscriptWord] = first.words
        if refiner is not None and first.words:
            session_audio_s, session_redecoded_s = session_budget(
                end, redecoded_s, settings.live_session_budget
            )
            refined = await refiner.answer(
                LiveRefineRequest(
                    session_id="replay",
                    turn_id=f"t{start}",
                    audio=audio,
                    first_pass=first,
                    previous_text=" ".join(texts[-PREVIOUS_TURNS:]),
                    session_audio_s=session_audio_s,
                    session_redecoded_s=session_redecoded_s,
                )
            )
            if refined.error is None:
                final = refined.words
                redecoded_s += refined.audio_redecoded_seconds
        texts.append(plain_text(final))
        words.extend(timed_words(final, start / SAMPLE_RATE))
    return words, len(turns)


async def whole_words(
    recording: Recording, asr: LiveFirstPassResponder, refiner: LiveRefineResponder | None
) -> list[TimedWord]:
    """The recording decoded whole: its first pass, refined with the same policies."""
    pcm = pcm16_from_float(recording.audio)
    reply = await asr.answer(
        LiveFirstPassRequest(session_id="replay", turn_id="whole", audio=pcm, language="en", final=True)
    )
    first = reply.first_pass
    if first is None:
        return []
    if refiner is None:
        return timed_words(first.words, 0.0)
    refined = await refiner.answer(
        LiveRefineRequest(session_id="replay", turn_id="whole", audio=pcm, first_pass=first)
    )
    return timed_words(refined.words if refined.error is None else first.words, 0.0)


def replay_parser(prog: str, description: str | None, example_setting: str) -> argparse.ArgumentParser:
    """The options the replay tools share: which recordings, and ``--variant`` runs of ingest settings."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--split", choices=["tuning", "validation"], default="tuning")
    parser.add_argument("--recordings", type=int, default=0, help="first N recordings of the part (0: all)")
    parser.add_argument("--seconds", type=float, default=0.0, help="cut each recording to about this long")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help=f"LABEL:KEY=VALUE,... ingest settings (field names, e.g. {example_setting}) for another run",
    )
    return parser


def replay_recordings(args: argparse.Namespace, *, short: bool = False) -> list[Recording]:
    recordings = development_recordings(args.data_dir, split=args.split, limit=args.recordings, short=short)
    return [cut(r, args.seconds) for r in recordings] if args.seconds else recordings


def setting_runs(variants: Sequence[tuple[str, dict[str, str]]]) -> list[tuple[str, IngestSettings]]:
    """The defaults, then each variant's ingest settings (the defaults with its changes)."""
    base = IngestSettings()
    return [("defaults", base)] + [
        (label, IngestSettings.model_validate({**base.model_dump(), **changes}))
        for label, changes in variants
    ]


def loaded_asr(*, partial_lane: bool = False) -> LiveFirstPassResponder:
    """The asr's live responder as a replica builds it under the default settings, its model loaded."""
    settings = AsrSettings()
    engine = FasterWhisperEngine(settings)
    engine.load()
    if partial_lane:
        engine.load_partial_lane()
    return live_responder(settings, engine)


def _parser() -> argparse.ArgumentParser:
    parser = replay_parser("python -m relisten.replay_live", __doc__, "live_context_s=5")
    parser.add_argument("--short", action="store_true", help="also the short utterances joined per speaker")
    parser.add_argument(
        "--first-pass", action="store_true", help="also the first passes alone (whole and turn by turn)"
    )
    return parser


async def _main(args: argparse.Namespace) -> None:
    recordings = replay_recordings(args, short=args.short)
    asr = loaded_asr()
    backend = FasterWhisperBackend(CorrectorSettings())
    backend.load()
    refiner = LiveRefineResponder(backend, pack=True)
    runs = setting_runs(args.variants)
    base = runs[0][1]

    started = time.perf_counter()
    print(f"{args.split}: {len(recordings)} recordings, {sum(r.duration_s for r in recordings):.0f} s")
    whole = [unit_errors(r, await whole_words(r, asr, refiner)) for r in recordings]
    print(f"  whole recordings (first pass + refinement): {100 * wer_of(_flat(whole)):.2f} %")
    by_run: dict[str, list[list[UnitErrors]]] = {}
    if args.first_pass:
        alone = [unit_errors(r, await whole_words(r, asr, None)) for r in recordings]
        print(f"  whole recordings, first pass alone: {100 * wer_of(_flat(alone)):.2f} %")
        turns_alone = [unit_errors(r, (await session_words(r, asr, None, base))[0]) for r in recordings]
        print(f"  turns, first pass alone: {100 * wer_of(_flat(turns_alone)):.2f} %")
    for label, settings in runs:
        scored, turns = [], 0
        for recording in recordings:
            words, count = await session_words(recording, asr, refiner, settings)
            scored.append(unit_errors(recording, words))
            turns += count
        by_run[label] = scored
        print(f"  {label}: completed turns {100 * wer_of(_flat(scored)):.2f} % ({turns} turns)")
    print("per recording, WER % (whole / " + " / ".join(by_run) + "):")
    for index, recording in enumerate(recordings):
        cells = [wer_of(whole[index])] + [wer_of(scored[index]) for scored in by_run.values()]
        print(f"  {recording.name}: " + " / ".join(f"{100 * c:.1f}" for c in cells))
    for label, scored in by_run.items():
        print(f"{label} - whole: {paired_bootstrap(_flat(scored), _flat(whole)).text()}")
        if label != "defaults":
            print(f"{label} - defaults: {paired_bootstrap(_flat(scored), _flat(by_run['defaults'])).text()}")
    print(f"({time.perf_counter() - started:.0f} s)")


def _flat(per_recording: Sequence[Sequence[UnitErrors]]) -> list[UnitErrors]:
    return [unit for units in per_recording for unit in units]


def replay_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``argv`` parsed, with ``variants`` as (label, changes); a malformed variant stops the run."""
    args = parser.parse_args(argv)
    args.variants = _variants(args.variant, parser)
    return args


def main(argv: Sequence[str] | None = None) -> None:
    asyncio.run(_main(replay_args(_parser(), argv)))


if __name__ == "__main__":
    main()
