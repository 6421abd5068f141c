"""Audio of a realtime session as it arrives: decoding the input formats, resampling to 16 kHz in a
stream, and an energy voice activity detector with OpenAI's ``server_vad`` parameters. Pure (numpy).

Formats (``session.audio.input.format``): ``audio/pcm`` (signed 16-bit little-endian mono) at 24 kHz,
OpenAI's only rate, or 16 kHz; ``audio/pcmu`` and ``audio/pcma`` (G.711 mu-law / A-law, 8 kHz). Every
format becomes 16 kHz pcm16, the rate the models hear and the jobs store.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Final, Literal

import numpy as np
from relisten_runtime.audio import frame_levels

SAMPLE_RATE: Final = 16000
FRAME_S: Final = 0.02
"""The VAD decides per 20 ms frame."""
FRAME: Final = int(SAMPLE_RATE * FRAME_S)


def _mulaw_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _alaw_table() -> np.ndarray:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << (exponent - 1))
    return np.where(sign != 0, magnitude, -magnitude).astype(np.int16)


MULAW: Final = _mulaw_table()
ALAW: Final = _alaw_table()

InputFormat = Literal["audio/pcm", "audio/pcmu", "audio/pcma"]


@dataclass(frozen=True)
class AudioFormat:
    type: InputFormat = "audio/pcm"
    rate: int = 24000

    @property
    def bytes_per_sample(self) -> int:
        return 2 if self.type == "audio/pcm" else 1

    def decode(self, data: bytes) -> np.ndarray:
        """Samples (int16) at ``rate``; :class:`ValueError` on a partial sample."""
        if self.type == "audio/pcm":
            if len(data) % 2:
                raise ValueError("audio/pcm needs whole 16-bit samples (an even number of bytes)")
            return np.frombuffer(data, dtype="<i2").astype(np.int16)
        table = MULAW if self.type == "audio/pcmu" else ALAW
        return table[np.frombuffer(data, dtype=np.uint8)]


def _lowpass(taps: int, cutoff: float) -> np.ndarray:
    """A Hamming-windowed sinc low-pass, ``cutoff`` in cycles per sample."""
    n = np.arange(taps) - (taps - 1) / 2
    kernel: np.ndarray = 2 * cutoff * np.sinc(2 * cutoff * n) * np.hamming(taps)
    return kernel.astype(np.float64)


class Resampler:
    """Rational resampling (``up``/``down``) of a stream, chunk by chunk, with the same output as
    resampling the whole: zero-stuffing, one low-pass, decimation. The filter's history is kept
    between chunks, so chunk boundaries leave no clicks."""

    def __init__(self, rate_in: int, rate_out: int = SAMPLE_RATE, taps_per_phase: int = 16) -> None:
        common = math.gcd(rate_in, rate_out)
        self.up = rate_out // common
        self.down = rate_in // common
        self.passthrough = self.up == self.down == 1
        taps = taps_per_phase * max(self.up, self.down) + 1
        self.filter = _lowpass(taps, 0.45 / max(self.up, self.down)) * self.up
        self._history = np.zeros(taps - 1)
        self._position = 0
        """Upsampled samples consumed so far."""

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        if self.passthrough:
            return samples.astype(np.int16)
        stuffed = np.zeros(len(samples) * self.up)
        stuffed[:: self.up] = samples
        joined = np.concatenate([self._history, stuffed])
        filtered = np.convolve(joined, self.filter, mode="valid")
        offset = (-self._position) % self.down
        out = filtered[offset :: self.down]
        self._position += len(stuffed)
        self._history = joined[len(joined) - len(self._history) :]
        return np.clip(np.round(out), -32768, 32767).astype(np.int16)


# --- voice activity ------------------------------------------------------------------------------


def level_dbfs(frame: np.ndarray) -> float:
    """RMS level of int16 samples in dB below full scale (-120 for digital silence)."""
    if len(frame) == 0:
        return -120.0
    return float(frame_levels(frame.astype(np.float32) / 32768.0, SAMPLE_RATE, len(frame) / SAMPLE_RATE)[0])


def threshold_dbfs(threshold: float) -> float:
    """OpenAI's ``threshold`` (0..1, default 0.5: higher needs louder speech) as a level: 0.5 is
    -45 dBFS, each 0.1 moves it by 4 dB (0 is -65 dBFS, 1 is -25 dBFS). Clean speech at a normal
    recording level sits around -30 to -20 dBFS, a quiet room below -55."""
    return -65.0 + 40.0 * min(max(threshold, 0.0), 1.0)


@dataclass(frozen=True)
class VadSettings:
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    min_speech_ms: int = 60
    """Speech must last this long before it counts (a click or a cough is not a turn)."""
    noise_margin_db: float = 10.0
    """A frame is speech only if it is also this far above the running noise floor (a steady hum
    louder than the threshold is not speech)."""


@dataclass(frozen=True)
class SpeechStarted:
    sample: int
    """Where the turn's audio begins (the prefix padding included), in session samples."""


@dataclass(frozen=True)
class SpeechStopped:
    sample: int
    """Where the turn's audio ends (after the silence that ended it), in session samples."""


VadEvent = SpeechStarted | SpeechStopped


DIGITAL_SILENCE_DBFS: Final = -90.0
"""Frames quieter than this are zeros or nearly (a muted input, a gap in joined audio): they say
nothing about the room's noise."""
ROOM_WINDOW_S: Final = 10.0
ROOM_PERCENTILE: Final = 10.0
ROOM_MIN_S: Final = 0.5
"""The room's level, which a turn's start must rise above: the 10th percentile of the levels of the last
10 s of frames that are not digitally silent (speech has pauses and dips between syllables at the
room's level, so a low percentile finds the room under speech), once 0.5 s of them were heard; never
more than the threshold plus the margin, so a sound that loud may always start a turn."""


class RollingLevels:
    """The last ``size`` levels, kept sorted too, so that a percentile of them costs an index rather
    than a sort per frame (the VAD asks for one every 20 ms of every session, on the event loop)."""

    def __init__(self, size: int) -> None:
        self._order: deque[float] = deque(maxlen=size)
        self._sorted: list[float] = []

    def __len__(self) -> int:
        return len(self._order)

    def add(self, level: float) -> None:
        if len(self._order) == self._order.maxlen:
            del self._sorted[bisect.bisect_left(self._sorted, self._order[0])]
        self._order.append(level)
        bisect.insort(self._sorted, level)

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile, interpolated between neighbours as ``numpy.percentile`` does."""
        ordered = self._sorted
        position = q / 100 * (len(ordered) - 1)
        low = int(position)
        if low + 1 >= len(ordered):
            return ordered[low]
        fraction = position - low
        a, b = ordered[low], ordered[low + 1]
        # numpy's own interpolation, from the nearer side
        return b - (b - a) * (1 - fraction) if fraction >= 0.5 else a + (b - a) * fraction


@dataclass
class EnergyVad:
    """Frame energy against a threshold and the noise floor; speech starts after ``min_speech_ms``
    of speech frames, stops after ``silence_duration_ms`` of non-speech frames.

    A frame is speech when it is louder than the threshold and ``noise_margin_db`` above the running
    noise floor, which follows quiet frames quickly and loud ones very slowly. To start a turn it
    must also be that far above the room's level (:data:`ROOM_PERCENTILE`): the floor drops to
    digital silence in a muted or joined gap and then takes the hiss or breath that comes on before a
    sentence for speech, which would put the turn's start (and its ``audio_start_ms``, and the moment
    its first partial pass is asked for) up to a second before the first word. Only starts are
    judged against the room: a turn still ends after ``silence_duration_ms`` below the floor, so
    turns are cut where they were.

    ``feed`` takes 16 kHz samples in order and returns the starts and stops they caused, with
    positions on the session's timeline (samples since the session began).
    """

    settings: VadSettings = field(default_factory=VadSettings)
    position: int = 0
    """Samples of whole frames judged so far."""
    in_speech: bool = False
    noise_floor_db: float = -70.0
    room_db: float = -120.0
    """The room's level (:data:`ROOM_PERCENTILE`); -120 until it is known."""
    _pending: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int16))
    _speech_run: int = 0
    _silence_run: int = 0
    _recent: RollingLevels = field(default_factory=lambda: RollingLevels(round(ROOM_WINDOW_S / FRAME_S)))

    def _judge(self, level: float) -> tuple[bool, bool]:
        """Whether a frame at ``level`` is speech, and whether it may start a turn."""
        loud = level >= threshold_dbfs(self.settings.threshold)
        above_floor = level >= self.noise_floor_db + self.settings.noise_margin_db
        # The floor follows quiet frames quickly and loud ones very slowly, so speech barely lifts it.
        rate = 0.2 if level < self.noise_floor_db else 0.002
        self.noise_floor_db += rate * (level - self.noise_floor_db)
        if level >= DIGITAL_SILENCE_DBFS:
            self._recent.add(level)
            if len(self._recent) >= ROOM_MIN_S / FRAME_S:
                self.room_db = min(
                    self._recent.percentile(ROOM_PERCENTILE),
                    threshold_dbfs(self.settings.threshold) + self.settings.noise_margin_db,
                )
        speech = loud and above_floor
        return speech, speech and level >= self.room_db + self.settings.noise_margin_db

    def feed(self, samples: np.ndarray) -> list[VadEvent]:
        events: list[VadEvent] = []
        joined = np.concatenate([self._pending, samples.astype(np.int16)])
        whole = len(joined) // FRAME * FRAME
        self._pending = joined[whole:]
        start_frames = max(1, round(self.settings.min_speech_ms / 1000 / FRAME_S))
        stop_frames = max(1, round(self.settings.silence_duration_ms / 1000 / FRAME_S))
        padding = int(self.settings.prefix_padding_ms / 1000 * SAMPLE_RATE)
        levels = frame_levels(joined[:whole].astype(np.float32) / 32768.0, SAMPLE_RATE, FRAME / SAMPLE_RATE)
        for level in levels:
            speech, starts = self._judge(float(level))
            self.position += FRAME
            if not self.in_speech:
                self._speech_run = self._speech_run + 1 if starts else 0
                if self._speech_run >= start_frames:
                    self.in_speech = True
                    self._silence_run = 0
                    onset = self.position - self._speech_run * FRAME
                    events.append(SpeechStarted(max(0, onset - padding)))
            else:
                self._silence_run = 0 if speech else self._silence_run + 1
                if self._silence_run >= stop_frames:
                    self.in_speech = False
                    self._speech_run = 0
                    events.append(SpeechStopped(self.position))
        return events

    def reset(self) -> None:
        """Forget the speech in progress (the buffer was cleared or committed by the client)."""
        self.in_speech = False
        self._speech_run = 0
        self._silence_run = 0


def quietest_cut(samples: np.ndarray, search: int) -> int:
    """Where to split audio that must be cut (a turn at its length limit): the start of the quietest
    frame among the last ``search`` samples, so the cut falls in a pause when there is one."""
    low = max(0, len(samples) - search)
    best, best_level = len(samples), float("inf")
    for at in range(low, len(samples) - FRAME + 1, FRAME // 2):
        level = level_dbfs(samples[at : at + FRAME])
        if level < best_level:
            best, best_level = at, level
    return best
