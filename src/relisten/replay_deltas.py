"""Live transcription's first deltas, replayed in one process: ``python -m relisten.replay_deltas``.

``make bench-live`` measures when a turn's first delta arrives, end to end at real-time pace, on a few
recordings: a run takes as long as its audio and its tail (the p90) rests on a handful of turns. The
moment a turn's first delta goes out depends on the schedule of its partial passes (after how much
speech the first is asked for, how often the next), on what each pass hears and on the rules that
decide which heard words are stable enough to send (:func:`relisten_ingest.realtime_turns.partial_delta`),
and on how long a pass takes. This replays exactly those on many more turns: the server's own VAD and
length cap cut each recording into turns (as :mod:`relisten.replay_live` does), the audio arrives in
the client's 0.1 s appends on an audio clock, a partial pass is asked for when the session would ask
for one (at most one in flight), it is decoded by the asr's :class:`~relisten_asr.live.LiveFirstPassResponder`
on its partial lane, and its reply lands on the audio clock after the decode's measured wall time. A
turn nothing was sent of before it ended gets its first delta from its final pass (the turn's end
plus that pass's decode time).

It prints, per run (the defaults, then each ``--variant`` of ingest settings), the first delta's
median and p90 after the turn's speech starts (the bench's measure: the VAD's start plus its prefix
padding), how many turns waited past 1 s, and the WER of the deltas alone (what a caption shows
before the turn completes) with the paired bootstrap interval against the defaults. The decode times
are this process's, with nothing else running: a real session shares the cores with the previous
turn's final pass and refinement, so its figures are higher; compare runs, not absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from relisten_asr.live import LiveFirstPassResponder
from relisten_contracts import Word
from relisten_ingest.realtime import partial_context_s
from relisten_ingest.realtime_audio import VadSettings
from relisten_ingest.realtime_turns import DeltaTracker, partial_delta
from relisten_ingest.settings import IngestSettings
from relisten_runtime.audio import pcm16_from_float

from relisten.bench_live import percentile
from relisten.dataset import Recording
from relisten.replay_live import (
    CHUNK_S,
    SAMPLE_RATE,
    loaded_asr,
    replay_args,
    replay_parser,
    replay_recordings,
    setting_runs,
    timed_words,
    turn_first_pass,
    turns_of,
)
from relisten.scoring import TimedWord, UnitErrors, paired_bootstrap, unit_errors, wer_of


@dataclass
class TurnDeltas:
    """How one replayed turn's deltas went."""

    first_delta_s: float
    """From the turn's speech start (its start plus the prefix padding) to its first delta."""
    partials: int
    """Partial passes whose reply landed while the turn was open."""
    from_final: bool
    """Nothing went out before the turn ended: its first delta came from the final pass."""
    capped: bool
    """The turn began where the length cap cut the one before it (speech went on)."""


@dataclass
class SessionDeltas:
    turns: list[TurnDeltas] = field(default_factory=list)
    words: list[TimedWord] = field(default_factory=list)
    """The deltas' words, on the recording's timeline."""
    partial_s: list[float] = field(default_factory=list)
    """Wall time of each partial pass."""


async def _heard(
    asr: LiveFirstPassResponder, pcm: bytes, start: int, length: int, context_s: float, *, final: bool
) -> tuple[list[Word], float]:
    """The words (turn times) of :func:`~relisten.replay_live.turn_first_pass`, and its wall time."""
    first, took = await turn_first_pass(asr, pcm, start, length, context_s, final=final)
    return ([] if first is None else list(first.words)), took


async def session_deltas(
    recording: Recording, asr: LiveFirstPassResponder, settings: IngestSettings
) -> SessionDeltas:
    """The deltas of ``recording`` replayed as a realtime session with server VAD."""
    vad = VadSettings()
    padding_s = vad.prefix_padding_ms / 1000
    pcm = pcm16_from_float(recording.audio)
    step = int(CHUNK_S * SAMPLE_RATE)
    out = SessionDeltas()
    previous_end = -1
    for start, end in turns_of(recording.audio, vad, settings.live_max_turn_s):
        capped = start == previous_end
        previous_end = end
        tracker = DeltaTracker()
        first_at: float | None = None
        partials = 0
        busy_until = 0.0
        partial_at = 0
        boundary = (start // step + 1) * step
        while boundary <= end:
            now = boundary / SAMPLE_RATE
            length = boundary - start
            boundary += step
            if now < busy_until:
                continue
            if length < (padding_s + settings.live_first_partial_s) * SAMPLE_RATE:
                continue
            if length - partial_at < settings.live_partial_interval_s * SAMPLE_RATE:
                continue
            partial_at = length
            context_s = partial_context_s(settings, tracker)
            heard, took = await _heard(asr, pcm, start, length, context_s, final=False)
            busy_until = now + took
            out.partial_s.append(took)
            if busy_until * SAMPLE_RATE >= end:
                break  # the turn ended before the reply landed: the session drops it
            partials += 1
            kept, new = partial_delta(
                tracker,
                heard,
                length / SAMPLE_RATE,
                length / SAMPLE_RATE - padding_s,
                settle_s=settings.live_settle_s,
                sure_probability=settings.live_sure_probability,
                first_delta_s=settings.live_first_delta_s,
            )
            if new:
                at = tracker.resumed_at
                out.words.extend(timed_words(kept[at : at + len(new)], start / SAMPLE_RATE))
                if first_at is None:
                    first_at = busy_until
        heard, took = await _heard(asr, pcm, start, end - start, settings.live_context_s, final=True)
        new = tracker.final([w.word for w in heard])
        if new:
            at = tracker.resumed_at
            out.words.extend(timed_words(heard[at : at + len(new)], start / SAMPLE_RATE))
        from_final = first_at is None
        if first_at is None:
            if not heard:
                continue  # nothing heard at all: the turn has no delta
            first_at = end / SAMPLE_RATE + took
        out.turns.append(
            TurnDeltas(first_at - (start / SAMPLE_RATE + padding_s), partials, from_final, capped)
        )
    return out


def _parser() -> argparse.ArgumentParser:
    return replay_parser("python -m relisten.replay_deltas", __doc__, "live_partial_interval_s=0.2")


def _summary(
    label: str, turns: Sequence[TurnDeltas], units: Sequence[UnitErrors], partial_s: Sequence[float]
) -> str:
    delays = [t.first_delta_s for t in turns]
    late = sum(d > 1.0 for d in delays)
    capped = [t.first_delta_s for t in turns if t.capped]
    return (
        f"  {label}: first delta median {percentile(delays, 50) or 0:.2f} s, p90 {percentile(delays, 90) or 0:.2f} s, "
        f"> 1 s {late}/{len(delays)} (capped turns {sum(d > 1.0 for d in capped)}/{len(capped)}), "
        f"from the final pass {sum(t.from_final for t in turns)}; deltas-only WER {100 * wer_of(units):.2f} %; "
        f"{len(partial_s)} partial passes, median {percentile(partial_s, 50) or 0:.3f} s"
    )


async def _main(args: argparse.Namespace) -> None:
    recordings = replay_recordings(args)
    asr = loaded_asr(partial_lane=True)
    runs = setting_runs(args.variants)
    began = time.perf_counter()
    print(f"{args.split}: {len(recordings)} recordings, {sum(r.duration_s for r in recordings):.0f} s")
    scored: dict[str, list[UnitErrors]] = {}
    for label, settings in runs:
        turns: list[TurnDeltas] = []
        units: list[UnitErrors] = []
        partial_s: list[float] = []
        for recording in recordings:
            replayed = await session_deltas(recording, asr, settings)
            turns.extend(replayed.turns)
            partial_s.extend(replayed.partial_s)
            units.extend(unit_errors(recording, replayed.words))
        scored[label] = units
        print(_summary(label, turns, units, partial_s), flush=True)
        if label != "defaults":
            print(f"    deltas WER {label} - defaults: {paired_bootstrap(units, scored['defaults']).text()}")
    print(f"({time.perf_counter() - began:.0f} s)")


def main(argv: Sequence[str] | None = None) -> None:
    asyncio.run(_main(replay_args(_parser(), argv)))


if __name__ == "__main__":
    main()
